# The fast segmentation recipe, for the fast twins of the paper configs
# (configs/mdeq/*-fast_*): Jacobian regularisation (weight 0.1 on 30% of
# the training forwards, one Hutchinson probe) keeps f contractive enough
# for 8 f evaluations forward (training and evaluation), and the backward
# solve starts from the forward Broyden's inverse-Jacobian estimate (SHINE)
# refined with 3 f evaluations, against the paper's 28 / 31. On the demo
# task (tools/benchmark_recipes.py, docs/speed.md) it trains at 1.37x
# HRNet-W18's step against 4.67x for the paper's budgets; a recipe, not a
# result reproduced at full scale. Lighter still, at a lower demo mIoU:
# configs/speed/mdeq-small_fast-lite.py (the loss on 10%, 7 evaluations
# forward in training, pure SHINE; 1.26x). After training,
# tools/train_solver.py fits a learned solver for evaluation at fewer
# evaluations still.
fast_segmentor = 'DEQEncoderDecoder'  # adds the backbone's loss_jac
fast_backbone = dict(
    jac_loss=dict(weight=0.1, freq=0.3, n_samples=1),
    solver_cfg=dict(max_iter=7),
    grad_cfg=dict(
        init='shine',
        solver_cfg=dict(max_iter=2, tol=1e-3, stop_mode='initial')))
