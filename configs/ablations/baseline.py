# The reference MDEQ: 4 scales (strides 4, 8, 16, 32), input injected into
# the highest resolution only, implicit training after an unrolled warm-up,
# evaluation by Broyden with the training budget.
_base_ = ['./_base_demo.py']
