# The README's three-line change: mmseg's own HRNet-W18 FCN config with the
# HRNet backbone swapped for MDEQ-Small (everything else stays mmseg's).
_base_ = ['mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(pretrained=None,
             backbone=dict(_delete_=True, type='MDEQ', arch='small'),
             decode_head=dict(in_channels=[32, 64, 128, 256], channels=480))
