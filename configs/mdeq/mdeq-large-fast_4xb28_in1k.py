# The fast twin of mdeq-large_4xb28_in1k.py (MDEQ-Large on ImageNet): the same
# data pipeline, schedule and warm-up, trained with the fast recipe of
# configs/_base_/recipes/fast_cls.py: the Jacobian loss of locuslab/deq's
# ImageNet "_reg" configs and 14 / 14 f evaluations (Jacobian weight 3.0, as
# the "_reg" config of MDEQ-Large).
_base_ = ['./mdeq-large_4xb28_in1k.py', '../_base_/recipes/fast_cls.py']
model = dict(type=_base_.fast_classifier,  # noqa: F821
             backbone=_base_.fast_backbone_large)  # noqa: F821
