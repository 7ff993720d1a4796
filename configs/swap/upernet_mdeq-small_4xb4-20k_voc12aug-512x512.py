# mmseg's UPerNet (ResNet-50) on PASCAL VOC 2012 + SBD with MDEQ-Small as the
# backbone: swap_backbone rewires each head to read MDEQ's output at the stride
# it read the old backbone's, and clears the old pretrained weights. UPerHead
# reads the four outputs (strides 4 to 32, as ResNet's), the auxiliary FCN the
# stride-16 one.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-20k_voc12aug-512x512.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
from mdeq_mm.models import swap_backbone  # noqa: E402

model = swap_backbone(_base_.model, arch='small')  # noqa: F821
