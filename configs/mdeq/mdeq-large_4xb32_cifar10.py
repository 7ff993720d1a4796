# MDEQ-Large on CIFAR-10 with augmentation (reference cls_mdeq_LARGE.yaml):
# 4 branches 32-256 without stem downsampling, dropout 0.3, head widths
# 14-112 to 1680, Adam lr 1e-3 without weight decay, 220 epochs cosine,
# 20k warm-up iterations unrolled 10 times, Broyden 19 / 21 f
# evaluations (forward / backward);
# 11,098,398 parameters. Inputs must be multiples of 8 (32 is).
_base_ = ['./mdeq-tiny_2xb64_cifar10.py']
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, base='small', downsample_times=0),
        dropout=0.3,
        solver_cfg=dict(max_iter=18),
        grad_cfg=dict(solver_cfg=dict(max_iter=20))),
    neck=[
        dict(type='MDEQClsNeck', in_channels=(32, 64, 128, 256),
             head_channels=(14, 28, 56, 112), out_channels=1680),
        dict(type='GlobalAveragePooling'),
    ],
    head=dict(in_channels=1680))
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, weight_decay=0.0))
param_scheduler = dict(T_max=220)
train_cfg = dict(max_epochs=220)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=20000),
    dict(type='DEQTelemetryHook', interval=50),
]
