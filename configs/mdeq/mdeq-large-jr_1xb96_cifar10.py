# MDEQ-Large on CIFAR-10 with Jacobian regularisation (Bai et al., ICML
# 2021; the JR settings of the reference's cls_mdeq_LARGE_reg.yaml): the
# Hutchinson estimate of ||J_f(z*)||_F^2 / D, weight 0.4, on 2% of the
# training forwards, lets the Broyden budgets drop from 19 / 21 f evaluations
# (forward / backward) to 9 / 8;
# dropout 0.22, non-affine post-fusion GroupNorm, batch 96 on one GPU,
# 16k warm-up iterations, the Jacobian loss switched off after epoch 90
# (90 x 521 iterations of 96 images).
_base_ = ['./mdeq-large_4xb32_cifar10.py']
model = dict(
    type='DEQImageClassifier',  # adds the backbone's loss_jac to the losses
    backbone=dict(
        dropout=0.22,
        post_gn_affine=False,
        jac_loss=dict(weight=0.4, freq=0.02, n_samples=2),
        solver_cfg=dict(max_iter=8),
        grad_cfg=dict(solver_cfg=dict(max_iter=7))))
train_dataloader = dict(batch_size=96)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=16000),
    dict(type='DEQJacobianScheduleHook', stop_iter=90 * 521),
    dict(type='DEQTelemetryHook', interval=50),
]
