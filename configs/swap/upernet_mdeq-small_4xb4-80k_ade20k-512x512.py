# mmseg's UPerNet (ResNet-50) on ADE20K with MDEQ-Small as the backbone;
# wired as configs/swap/upernet_mdeq-small_4xb2-40k_cityscapes-512x1024.py.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128, in_index=2))
