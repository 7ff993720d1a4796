# The fast classification recipe, for the fast twins of the paper's
# ImageNet configs (configs/mdeq/*-fast_*_in1k.py): the Jacobian
# regularisation of locuslab/deq's ImageNet "_reg" configs (weight 2.5 on
# 8% of the training forwards; [JR] reports 74.5% top-1 for MDEQ-Small at
# 14 f evaluations against 75.4% at 27) with 14 f evaluations forward and
# backward (weight 3.0 for MDEQ-Large and -XL, as locuslab/deq's MDEQ-Large
# "_reg" config). A recipe, not a result reproduced by mdeq_mm.
fast_classifier = 'DEQImageClassifier'  # adds the backbone's loss_jac
fast_backbone = dict(
    jac_loss=dict(weight=2.5, freq=0.08, n_samples=2),
    solver_cfg=dict(max_iter=13),
    grad_cfg=dict(solver_cfg=dict(max_iter=13)))
fast_backbone_large = dict(
    fast_backbone, jac_loss=dict(weight=3.0, freq=0.08, n_samples=2))
