# The speed comparison's common task: the segmentation demo data (64x128
# street scenes, 6 classes and void), batch 4, 200 iterations from scratch,
# the same data, schedule and head for every model. This base is MDEQ-Small
# (the reference's Cityscapes architecture, BN instead of SyncBN) with the
# reference's solver budgets: Broyden 28 f evaluations forward (stop at
# relative residual 1e-3), 31 backward; the first 60
# iterations train the weight-tied network unrolled 3 times (the warm-up).
# Run them side by side with `python tools/benchmark_recipes.py`.
_base_ = ['../demo/mdeq-demo_seg.py']
max_iters = 200
train_dataloader = dict(batch_size=4)
norm_cfg = dict(type='BN', requires_grad=True, momentum=0.01)
model = dict(
    backbone=dict(
        _delete_=True,
        type='MDEQ',
        arch='small',
        dropout=0.05,
        norm_cfg=norm_cfg,
        unrolled_depth=3,
        solver='broyden',
        solver_cfg=dict(max_iter=27, tol=1e-3, stop_mode='rel'),
        grad='ift',
        grad_cfg=dict(
            solver='broyden',
            solver_cfg=dict(max_iter=30, tol=1e-4, stop_mode='initial'))),
    decode_head=dict(in_channels=[32, 64, 128, 256], norm_cfg=norm_cfg))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    checkpoint=dict(interval=max_iters),
    visualization=dict(type='SegVisualizationHook', draw=False))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=60),
    dict(type='DEQTelemetryHook', interval=20),
    dict(type='RunStatsHook', interval=20),
]
