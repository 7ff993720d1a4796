# MDEQ-XL on Cityscapes (reference seg_mdeq_XL.yaml): channels 88-704,
# expansion 6, dropout 0.04, 768x1024 crops, 8 GPUs x 2 images, 500 epochs
# = 93k iterations, 40k warm-up, Broyden 27 / 27 f evaluations
# (forward / backward); 79,551,755 parameters.
_base_ = ['./mdeq-small_4xb3-124k_cityscapes-512x1024.py']
crop_size = (768, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='xl',
        dropout=0.04,
        solver_cfg=dict(max_iter=26),
        grad_cfg=dict(solver_cfg=dict(max_iter=26))),
    decode_head=dict(in_channels=[88, 176, 352, 704]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(weight_decay=3e-4))
max_iters = 93000
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=40000),
    dict(type='DEQTelemetryHook', interval=50),
]
