# Scales ablation: only the scales at strides {4,8,16} (baseline: 4, 8, 16,
# 32). One scale is the single-stream DEQ.
_base_ = ['./_base_demo.py']
model = dict(
    backbone=dict(arch=dict(num_channels=(16, 32, 64), num_blocks=(1, 1, 1))),
    decode_head=dict(in_channels=[16, 32, 64]))
