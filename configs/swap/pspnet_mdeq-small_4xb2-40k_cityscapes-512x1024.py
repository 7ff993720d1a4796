# mmseg's PSPNet (dilated ResNet-50, output stride 8) with MDEQ-Small as the
# backbone: the pyramid pooling at stride 8 as in the base config (MDEQ's
# second output, 64 channels), the auxiliary FCN on the stride-16 output.
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=64, in_index=1),
    auxiliary_head=dict(in_channels=128, in_index=2))
