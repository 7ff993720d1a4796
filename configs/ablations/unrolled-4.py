# Training ablation: as unrolled-2.py with the weight-tied network unrolled
# 4 times.
_base_ = ['./unrolled-2.py']
model = dict(backbone=dict(unrolled_depth=4))
