# mmseg's OCRNet (HRNet-W18) with MDEQ-Small as the backbone. Its two heads
# are a list in the base config, and mmengine cannot override a list with a
# dict: both heads are restated with MDEQ's channels (the auxiliary FCN's
# width is the sum of the concatenated scales, as in the base: 480).
_base_ = ['mmseg::ocrnet/ocrnet_hr18_4xb2-40k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
scales = dict(in_channels=[32, 64, 128, 256], in_index=(0, 1, 2, 3),
              input_transform='resize_concat')
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=[
        dict(type='FCNHead', channels=480, kernel_size=1, num_convs=1,
             concat_input=False, dropout_ratio=-1, num_classes=19,
             norm_cfg=norm_cfg, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                              loss_weight=0.4), **scales),
        dict(type='OCRHead', channels=512, ocr_channels=256,
             dropout_ratio=-1, num_classes=19, norm_cfg=norm_cfg,
             align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                              loss_weight=1.0), **scales),
    ])
