# The fast twin of mdeq-xl_8xb2-93k_cityscapes-768x1024.py (MDEQ-XL on
# Cityscapes): the same data pipeline, schedule and warm-up, trained with the
# fast recipe of configs/_base_/recipes/fast_seg.py: a Jacobian loss, 8 f
# evaluations forward and a SHINE backward refined with 3.
_base_ = [
    './mdeq-xl_8xb2-93k_cityscapes-768x1024.py',
    '../_base_/recipes/fast_seg.py'
]
model = dict(type=_base_.fast_segmentor,  # noqa: F821
             backbone=_base_.fast_backbone)  # noqa: F821
