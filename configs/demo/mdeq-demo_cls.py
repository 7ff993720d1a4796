# Demo: pretrain a narrow MDEQ (channels 16-128) on the synthetic
# ImageNet-layout data (4 classes, 64x64; train in class folders, val flat
# with meta/val.txt as ImageNet ships it) made by tools/demo.py, on CPU.
# Unrolled warm-up for the first half, then implicit (Broyden) training,
# with Jacobian regularisation (weight 0.3 on half of the iterations) and a
# backward budget of 17 f evaluations: without them 57% of the backward
# solves of the implicit phase fail and the forward residual stays at
# 0.08. Gradients are clipped: from the stem's N(0, 0.01) init the first
# 20 gradients have a mean norm of ~460, and their steps left the stem's
# weights with 3x the norm that segmentation training gives them; under
# BatchNorm that divides their effective learning rate in fine-tuning by ~9
# (fine-tuned mIoU 42.6 instead of 51.7, see README).
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
data_root = 'data/demo/imagenet'
arch = dict(base='small', num_channels=(16, 32, 64, 128), expansion=4)
max_iters = 400
backbone = dict(
    type='MDEQ',
    arch=arch,
    norm_cfg=dict(type='BN', requires_grad=True),
    unrolled_depth=4,
    jac_loss=dict(weight=0.3, freq=0.5),
    solver_cfg=dict(max_iter=8, tol=1e-3, stop_mode='rel'),
    grad_cfg=dict(
        solver='broyden',
        solver_cfg=dict(max_iter=16, tol=1e-3, stop_mode='initial')))
model = dict(
    type='DEQImageClassifier',  # adds the backbone's Jacobian loss
    data_preprocessor=dict(
        num_classes=4,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=backbone,
    neck=[
        dict(type='MDEQClsNeck', in_channels=(16, 32, 64, 128),
             head_channels=(8, 16, 32, 64), out_channels=256),
        dict(type='GlobalAveragePooling'),
    ],
    head=dict(
        type='LinearClsHead', num_classes=4, in_channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, )))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=20,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='val', ann_file='meta/val.txt',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-5,
                   nesterov=True),
    clip_grad=dict(max_norm=2.0))
param_scheduler = dict(type='CosineAnnealingLR', T_max=max_iters,
                       eta_min=1e-4, by_epoch=False)
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=max_iters // 2),
    dict(type='DEQTelemetryHook', interval=20),
    dict(type='RunStatsHook', interval=20),
]
randomness = dict(seed=0)
