# The fast twin of mdeq-tiny_2xb64_cifar10.py (MDEQ-Tiny on CIFAR-10): the
# same data pipeline, schedule and warm-up, trained with the fast recipe of
# configs/_base_/recipes/fast_cifar.py (a Jacobian loss, 9 / 8 f
# evaluations).
_base_ = ['./mdeq-tiny_2xb64_cifar10.py', '../_base_/recipes/fast_cifar.py']
model = dict(type=_base_.fast_classifier,  # noqa: F821
             backbone=_base_.fast_backbone)  # noqa: F821
