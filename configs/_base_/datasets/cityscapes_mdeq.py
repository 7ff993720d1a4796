# Cityscapes as the reference trains it: random scale of the 2048x1024
# image by [0.5, 2.0] (reference: 0.5 + randint(16)/10, i.e. up to 2.1),
# random crop, horizontal flip; no photometric distortion, no class-ratio
# constraint on the crop (both are mmseg additions the reference lacks).
# Files are loaded by mdeq_mm's checked transforms, which name a truncated
# file, a label map of another size than its image, or raw label ids
# (*_gtFine_labelIds.png used as train ids) instead of failing later.
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
crop_size = (512, 1024)
load_annotations = dict(type='CheckedLoadAnnotations', num_classes=19)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    load_annotations,
    dict(
        type='RandomResize',
        scale=(2048, 1024),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    # annotations after Resize: metrics use the original resolution
    load_annotations,
    dict(type='PackSegInputs')
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ], [load_annotations], [dict(type='PackSegInputs')]
        ])
]
train_dataloader = dict(
    batch_size=3, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
