# The fast segmentation recipe, for the fast twins of the paper configs
# (configs/mdeq/*-fast_*): Jacobian regularisation (weight 0.1 on 30% of
# the training forwards, one Hutchinson probe) keeps f contractive enough
# for 8 f evaluations forward (training and evaluation) and 9 backward,
# against the paper's 28 / 31. The winner of tools/benchmark_recipes.py on
# the demo task (docs/speed.md), not a result reproduced at full scale.
# After training, tools/train_solver.py fits a learned solver for
# evaluation at fewer evaluations still.
fast_segmentor = 'DEQEncoderDecoder'  # adds the backbone's loss_jac
fast_backbone = dict(
    jac_loss=dict(weight=0.1, freq=0.3, n_samples=1),
    solver_cfg=dict(max_iter=7),
    grad_cfg=dict(solver_cfg=dict(max_iter=8, tol=1e-3)))
