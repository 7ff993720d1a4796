# MDEQ-Small for ImageNet: the reference's classification network
# (locuslab/mdeq experiments/imagenet/cls_mdeq_SMALL.yaml), 16,808,936 params.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MDEQ',
        arch='small',
        dropout=0.0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        unrolled_depth=5,
        solver='broyden',
        solver_cfg=dict(max_iter=26, tol=1e-3, stop_mode='rel'),
        grad='ift',
        grad_cfg=dict(
            solver='broyden',
            solver_cfg=dict(max_iter=27, tol=1e-4, stop_mode='initial'))),
    neck=[
        dict(
            type='MDEQClsNeck',
            in_channels=(32, 64, 128, 256),
            head_channels=(24, 48, 96, 192),
            out_channels=2048),
        dict(type='GlobalAveragePooling'),
    ],
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
