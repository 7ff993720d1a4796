# MDEQ-Large on Cityscapes (reference seg_mdeq_LARGE.yaml): channels
# 80-640, expansion 5, dropout 0.03, weight decay 3e-4, 32k warm-up
# iterations, Broyden 27 f evaluations forward /
# 27 backward; 55,955,859 parameters.
_base_ = ['./mdeq-small_4xb3-124k_cityscapes-512x1024.py']
model = dict(
    backbone=dict(
        arch='large',
        dropout=0.03,
        solver_cfg=dict(max_iter=26),
        grad_cfg=dict(solver_cfg=dict(max_iter=26))),
    decode_head=dict(in_channels=[80, 160, 320, 640]))
optim_wrapper = dict(optimizer=dict(weight_decay=3e-4))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=32000),
    dict(type='DEQTelemetryHook', interval=50),
]
