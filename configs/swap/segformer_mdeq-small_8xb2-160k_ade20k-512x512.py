# mmseg's SegFormer (MiT-B0) on ADE20K with MDEQ-Small as the backbone:
# swap_backbone rewires each head to read MDEQ's output at the stride it read
# the old backbone's, and clears the old pretrained weights. The all-MLP head
# reads the four outputs (strides 4 to 32, as MiT's).
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
from mdeq_mm.models import swap_backbone  # noqa: E402

model = swap_backbone(_base_.model, arch='small')  # noqa: F821
