# mmseg's SegFormer (MiT-B0) with MDEQ-Small as the backbone: the all-MLP
# head takes MDEQ's four outputs (strides 4 to 32, as MiT's). _delete_
# drops MiT's settings and its pretrained init_cfg.
_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py'
]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=[32, 64, 128, 256]))
