# The fast twin of mdeq-large_4xb32_cifar10.py (MDEQ-Large on CIFAR-10, with
# augmentation): the same data pipeline, schedule, batch and warm-up,
# trained with the fast recipe of configs/_base_/recipes/fast_cifar.py (a
# Jacobian loss, 9 / 8 f evaluations). mdeq-large-jr_1xb96_cifar10.py is
# locuslab/deq's "_reg" config whole (its batch, dropout and schedule); this
# twin changes only what makes it fast.
_base_ = ['./mdeq-large_4xb32_cifar10.py', '../_base_/recipes/fast_cifar.py']
model = dict(type=_base_.fast_classifier,  # noqa: F821
             backbone=_base_.fast_backbone)  # noqa: F821
