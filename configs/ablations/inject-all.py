# Injection ablation: every branch gets its own projection of the stem
# features (baseline: the input enters the highest resolution only).
_base_ = ['./_base_demo.py']
model = dict(backbone=dict(inject='all'))
