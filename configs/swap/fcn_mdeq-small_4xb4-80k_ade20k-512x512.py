# mmseg's HRNet-W18 FCN on ADE20K with MDEQ-Small as the backbone:
# swap_backbone rewires each head to read MDEQ's output at the stride it read
# the old backbone's, and clears the old pretrained weights. The four scales
# concatenated (480 channels), as the README's swap.
_base_ = ['mmseg::hrnet/fcn_hr18_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
from mdeq_mm.models import swap_backbone  # noqa: E402

model = swap_backbone(_base_.model, arch='small')  # noqa: F821
