# MDEQ-Tiny on CIFAR-10 without augmentation (reference cls_mdeq_TINY.yaml):
# 2 branches of 24 channels, no stem downsampling and no injection conv,
# dropout 0.25, Adam lr 1e-3 weight decay 2.5e-6, cosine per iteration over
# 50 epochs, 3000 warm-up iterations unrolled 10 times, Broyden 23 / 25 f
# evaluations (forward / backward) with a relative stop; 158,986 parameters.
_base_ = [
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MDEQ',
        arch='tiny',
        dropout=0.25,
        unrolled_depth=10,
        solver_cfg=dict(max_iter=22, tol=1e-3, stop_mode='rel'),
        grad_cfg=dict(
            solver='broyden',
            solver_cfg=dict(max_iter=24, tol=1e-4, stop_mode='initial'))),
    neck=[
        dict(type='MDEQClsNeck', in_channels=(24, 24), head_channels=(8, 16),
             out_channels=200),
        dict(type='GlobalAveragePooling'),
    ],
    head=dict(
        type='LinearClsHead', num_classes=10, in_channels=200,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
# no augmentation (the reference's AUGMENT: False for TINY)
train_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32)
test_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(type='Adam', lr=1e-3, weight_decay=2.5e-6))
param_scheduler = dict(
    type='CosineAnnealingLR', T_max=50, eta_min=1e-6, by_epoch=True,
    convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=3000),
    dict(type='DEQTelemetryHook', interval=50),
]
