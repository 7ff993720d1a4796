# Demo: MDEQ segmentation on the synthetic Cityscapes-layout street scenes
# (64x128, 6 of the 19 classes and void regions, label ids converted to
# train ids by tools/dataset_converters/cityscapes.py) made by
# tools/demo.py, on CPU, from scratch. Jacobian regularisation (weight 0.1
# on half of the iterations) keeps f contractive: without it the demo
# model's forward solve stays at a relative residual of 0.39 at 9
# f evaluations (0.01 with it) for the same mIoU. Backward budget 17 f
# evaluations: with 9,
# the model fine-tuned from the classifier (whose f becomes less
# contractive late in training) had 2 backward fallbacks.
# See mdeq-demo_seg_finetune.py / _frozen.py for the transfer variants.
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
data_root = 'data/demo/cityscapes'
max_iters = 800
norm_cfg = dict(type='BN', requires_grad=True, momentum=0.01)
model = dict(
    type='DEQEncoderDecoder',  # adds the backbone's Jacobian loss
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=32,
        test_cfg=dict(size_divisor=32)),
    pretrained=None,
    backbone=dict(
        type='MDEQ',
        arch=dict(base='small', num_channels=(16, 32, 64, 128), expansion=4),
        norm_cfg=norm_cfg,
        unrolled_depth=4,
        jac_loss=dict(weight=0.1, freq=0.5),
        solver_cfg=dict(max_iter=8, tol=1e-3, stop_mode='rel'),
        grad_cfg=dict(
            solver='broyden',
            solver_cfg=dict(max_iter=16, tol=1e-3, stop_mode='initial'))),
    decode_head=dict(
        type='MDEQHead',
        in_channels=[16, 32, 64, 128],
        num_classes=19,
        norm_cfg=norm_cfg,
        # the mean over labelled pixels (void pixels are ignored)
        loss_decode=dict(type='WeightedCrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations', num_classes=19),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations', num_classes=19),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=2e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=max_iters // 3),
    dict(type='DEQTelemetryHook', interval=20),
    dict(type='RunStatsHook', interval=20),
]
randomness = dict(seed=0)
