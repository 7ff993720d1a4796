# MDEQ-Small on ImageNet-1k (reference cls_mdeq_SMALL.yaml): 4 GPUs x 32,
# SGD nesterov lr 0.05, weight decay 5e-5, cosine per iteration, 100 epochs,
# 500k warm-up iterations unrolled 5 times, then Broyden 26 / 27;
# 16,808,936 parameters. Data: data/imagenet/{train,val}/<wnid>/*.JPEG
# (ImageFolder layout, as the reference loads it) or mmpretrain's meta/ lists.
_base_ = [
    '../_base_/models/mdeq-small_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    '../_base_/schedules/cls_sgd_cosine_100e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_iters=500000),
    dict(type='DEQTelemetryHook', interval=100),
]
