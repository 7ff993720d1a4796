# mmseg's OCRNet (HRNet-W18) on ADE20K with MDEQ-Small as the backbone:
# both heads restated as a list (a dict cannot override the base's list).
_base_ = ['mmseg::ocrnet/ocrnet_hr18_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
scales = dict(in_channels=[32, 64, 128, 256], in_index=(0, 1, 2, 3),
              input_transform='resize_concat')
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=[
        dict(type='FCNHead', channels=480, kernel_size=1, num_convs=1,
             concat_input=False, dropout_ratio=-1, num_classes=150,
             norm_cfg=norm_cfg, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                              loss_weight=0.4), **scales),
        dict(type='OCRHead', channels=512, ocr_channels=256,
             dropout_ratio=-1, num_classes=150, norm_cfg=norm_cfg,
             align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                              loss_weight=1.0), **scales),
    ])
