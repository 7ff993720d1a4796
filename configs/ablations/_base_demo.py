# Ablation base: the segmentation demo (demo data, MDEQ with channels
# 16-128, trained from scratch) shortened to 300 iterations so that a group
# runs in minutes on CPU, without the demo's Jacobian loss (the jacobian
# group adds it back) and with its first backward budget (9 f evaluations;
# the demo has 17). Each ablation config changes one thing.
_base_ = ['../demo/mdeq-demo_seg.py']
model = dict(
    type='EncoderDecoder',
    backbone=dict(
        jac_loss=None, grad_cfg=dict(solver_cfg=dict(max_iter=8))))
max_iters = 300
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=max_iters // 3),
    dict(type='DEQTelemetryHook', interval=20),
    dict(type='RunStatsHook', interval=20),
]
