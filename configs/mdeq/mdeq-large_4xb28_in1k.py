# MDEQ-Large on ImageNet-1k: the locuslab/deq LARGE architecture (channels
# 80-640, expansion 5; 67,063,624 parameters with this head) with the
# locuslab/mdeq LARGE recipe: 4 GPUs x 28, weight decay 1e-4, 550k warm-up
# iterations unrolled 4 times, Broyden 25 / 25 f evaluations
# (forward / backward). (locuslab/mdeq's own
# cls_mdeq_LARGE.yaml carries the XL architecture; see mdeq-xl.)
_base_ = ['./mdeq-small_4xb32_in1k.py']
model = dict(
    backbone=dict(
        arch='large',
        unrolled_depth=4,
        solver_cfg=dict(max_iter=24),
        grad_cfg=dict(solver_cfg=dict(max_iter=24))),
    neck=[
        dict(type='MDEQClsNeck', in_channels=(80, 160, 320, 640),
             head_channels=(32, 64, 128, 256), out_channels=2048),
        dict(type='GlobalAveragePooling'),
    ])
train_dataloader = dict(batch_size=28)
val_dataloader = dict(batch_size=28)
test_dataloader = dict(batch_size=28)
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
auto_scale_lr = dict(base_batch_size=112)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=550000),
    dict(type='DEQTelemetryHook', interval=100),
]
