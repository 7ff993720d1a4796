# MDEQ-Small on ImageNet-1k (reference cls_mdeq_SMALL.yaml): 4 GPUs x 32,
# SGD nesterov lr 0.05, weight decay 5e-5, cosine per iteration, 100 epochs,
# 500k warm-up iterations unrolled 5 times, then Broyden 27 / 28 f
# evaluations (forward / backward);
# 16,808,936 parameters. Data: data/imagenet/train/<wnid>/*.JPEG and
# data/imagenet/val/ either flat with meta/val.txt (as ImageNet ships it) or
# in class folders (as the reference loads it); mmpretrain's meta/train.txt
# is used when present. Images are loaded by mdeq_mm's checked transform
# (a truncated file is named, not decoded grey).
_base_ = [
    '../_base_/models/mdeq-small_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    '../_base_/schedules/cls_sgd_cosine_100e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=500000),
    dict(type='DEQTelemetryHook', interval=100),
]
