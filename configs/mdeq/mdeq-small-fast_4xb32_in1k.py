# The fast twin of mdeq-small_4xb32_in1k.py (MDEQ-Small on ImageNet): the same
# data pipeline, schedule and warm-up, trained with the fast recipe of
# configs/_base_/recipes/fast_cls.py: the Jacobian loss of locuslab/deq's
# ImageNet "_reg" configs and 14 / 14 f evaluations.
_base_ = ['./mdeq-small_4xb32_in1k.py', '../_base_/recipes/fast_cls.py']
model = dict(type=_base_.fast_classifier,  # noqa: F821
             backbone=_base_.fast_backbone)  # noqa: F821
