# mmseg's PSPNet (dilated ResNet-50) on PASCAL VOC 2012 + SBD with MDEQ-Small
# as the backbone: the pyramid pooling at stride 8 as in the base.
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=64, in_index=1),
    auxiliary_head=dict(in_channels=128, in_index=2))
