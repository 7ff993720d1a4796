# The fast CIFAR-10 recipe, for the fast twins of the paper's CIFAR configs
# (configs/mdeq/*-fast_*_cifar10.py): the Jacobian regularisation of
# locuslab/deq's CIFAR "_reg" config (weight 0.4 on 2% of the training
# forwards) and its budgets, 9 / 8 f evaluations forward / backward (the
# paper's: 19 / 21 for MDEQ-Large, 23 / 25 for MDEQ-Tiny). A recipe, not a
# result reproduced by mdeq_mm.
fast_classifier = 'DEQImageClassifier'  # adds the backbone's loss_jac
fast_backbone = dict(
    jac_loss=dict(weight=0.4, freq=0.02, n_samples=2),
    solver_cfg=dict(max_iter=8),
    grad_cfg=dict(solver_cfg=dict(max_iter=7)))
