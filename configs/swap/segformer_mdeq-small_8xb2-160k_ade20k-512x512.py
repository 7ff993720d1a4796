# mmseg's SegFormer (MiT-B0) on ADE20K with MDEQ-Small as the backbone:
# the all-MLP head takes the four outputs (strides 4 to 32, as MiT's).
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='MDEQ', arch='small'),
    decode_head=dict(in_channels=[32, 64, 128, 256]))
