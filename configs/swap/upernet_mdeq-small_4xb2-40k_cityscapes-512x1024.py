# mmseg's UPerNet (ResNet-50) with MDEQ-Small as the backbone. MDEQ's four
# outputs have ResNet's strides (4, 8, 16, 32) with 32, 64, 128, 256
# channels: UPerHead takes all four, the auxiliary FCN the stride-16 one
# (ResNet's third stage). pretrained=None: the base config's ResNet-50
# weights are not MDEQ's.
_base_ = ['mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128, in_index=2))
