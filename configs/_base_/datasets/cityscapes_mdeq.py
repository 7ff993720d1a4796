# Cityscapes as the reference trains it: random scale of the 2048x1024
# image by [0.5, 2.0] (reference: 0.5 + randint(16)/10, i.e. up to 2.1),
# random crop, horizontal flip; no photometric distortion, no class-ratio
# constraint on the crop (both are mmseg additions the reference lacks).
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
crop_size = (512, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 1024),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=3, dataset=dict(pipeline=train_pipeline))
