# mmseg's DeepLabV3+ (dilated ResNet-50, output stride 8) with MDEQ-Small
# as the backbone. The ASPP runs where the base config runs it, at stride 8
# (MDEQ's second output, 64 channels; in_index=3 would put it at stride
# 32), the decoder's low-level input is MDEQ's stride-4 output (32
# channels), the auxiliary FCN takes the stride-16 output.
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py'
]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=64, in_index=1, c1_in_channels=32),
    auxiliary_head=dict(in_channels=128, in_index=2))
