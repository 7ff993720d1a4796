# Training ablation: as unrolled-2.py with the weight-tied network unrolled
# 8 times.
_base_ = ['./unrolled-2.py']
model = dict(backbone=dict(unrolled_depth=8))
