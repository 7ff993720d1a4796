# mmseg's DeepLabV3+ (dilated ResNet-50) on ADE20K with MDEQ-Small as the
# backbone: the ASPP at stride 8 as in the base, the low-level input at
# stride 4 (see the Cityscapes config in this folder).
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'
]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=64, in_index=1, c1_in_channels=32),
    auxiliary_head=dict(in_channels=128, in_index=2))
