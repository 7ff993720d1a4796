# MDEQ-XL on ImageNet-1k (reference cls_mdeq_XL.yaml): channels 88-704,
# expansion 6, 8 GPUs x 24, weight decay 7e-5, 400k warm-up iterations
# unrolled 4 times, Broyden 28 / 28 f
# evaluations (forward / backward); 90,463,280 parameters.
_base_ = ['./mdeq-small_4xb32_in1k.py']
model = dict(
    backbone=dict(
        arch='xl',
        unrolled_depth=4,
        solver_cfg=dict(max_iter=27),
        grad_cfg=dict(solver_cfg=dict(max_iter=27))),
    neck=[
        dict(type='MDEQClsNeck', in_channels=(88, 176, 352, 704),
             head_channels=(32, 64, 128, 256), out_channels=2048),
        dict(type='GlobalAveragePooling'),
    ])
train_dataloader = dict(batch_size=24)
val_dataloader = dict(batch_size=24)
test_dataloader = dict(batch_size=24)
optim_wrapper = dict(optimizer=dict(weight_decay=7e-5))
auto_scale_lr = dict(base_batch_size=192)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=400000),
    dict(type='DEQTelemetryHook', interval=100),
]
