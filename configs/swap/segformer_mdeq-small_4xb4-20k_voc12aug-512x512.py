# SegFormer's all-MLP head on MDEQ-Small for PASCAL VOC 2012 + SBD (mmseg
# ships no SegFormer VOC config): the data, schedule length and runtime of
# mmseg's VOC configs (through the HRNet FCN one), the model and optimiser
# of its SegFormer ADE20K config with 21 classes.
_base_ = ['mmseg::hrnet/fcn_hr18_4xb4-20k_voc12aug-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    _delete_=True,
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
        seg_pad_val=255, size=(512, 512)),
    backbone=dict(type='MDEQ', arch='small'),
    decode_head=dict(
        type='SegformerHead', in_channels=[32, 64, 128, 256],
        in_index=[0, 1, 2, 3], channels=256, dropout_ratio=0.1,
        num_classes=21, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                         loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-05, betas=(0.9, 0.999),
                   weight_decay=0.01),
    paramwise_cfg=dict(custom_keys=dict(
        norm=dict(decay_mult=0.), head=dict(lr_mult=10.))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=20000,
         by_epoch=False)
]
