# mmseg's HRNet-W18 FCN on PASCAL VOC 2012 + SBD with MDEQ-Small as the
# backbone (the README's swap on another dataset): the four scales
# concatenated.
_base_ = ['mmseg::hrnet/fcn_hr18_4xb4-20k_voc12aug-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=480))
