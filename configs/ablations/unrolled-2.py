# Training ablation: the weight-tied network unrolled 2 times, trained with
# ordinary backprop and evaluated unrolled too (no solver anywhere); same
# optimiser and schedule as the baseline.
_base_ = ['./_base_demo.py']
model = dict(
    backbone=dict(mode='unrolled', unrolled_depth=2, unrolled_eval=True))
custom_hooks = [
    dict(type='DEQTelemetryHook', interval=20),
    dict(type='RunStatsHook', interval=20),
]
