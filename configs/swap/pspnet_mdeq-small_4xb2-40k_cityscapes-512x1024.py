# mmseg's PSPNet (dilated ResNet-50, output stride 8) on Cityscapes with MDEQ-
# Small as the backbone: swap_backbone rewires each head to read MDEQ's output
# at the stride it read the old backbone's, and clears the old pretrained
# weights. The pyramid pooling and the auxiliary FCN read stride 8, as on
# ResNet-D8 (MDEQ's 64-channel output).
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
from mdeq_mm.models import swap_backbone  # noqa: E402

model = swap_backbone(_base_.model, arch='small')  # noqa: F821
