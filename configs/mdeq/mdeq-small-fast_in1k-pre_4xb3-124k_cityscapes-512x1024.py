# The fast twin of mdeq-small_in1k-pre_4xb3-124k_cityscapes-512x1024.py (MDEQ-
# Small on Cityscapes from ImageNet weights): the same data pipeline, schedule
# and warm-up, trained with the fast recipe of
# configs/_base_/recipes/fast_seg.py: a Jacobian loss, 8 f evaluations forward
# and a SHINE backward refined with 3.
_base_ = [
    './mdeq-small_in1k-pre_4xb3-124k_cityscapes-512x1024.py',
    '../_base_/recipes/fast_seg.py'
]
model = dict(type=_base_.fast_segmentor,  # noqa: F821
             backbone=_base_.fast_backbone)  # noqa: F821
