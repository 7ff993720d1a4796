# MDEQ-Small for Cityscapes: the reference's segmentation network
# (locuslab/mdeq experiments/cityscapes/seg_mdeq_SMALL.yaml).
norm_cfg = dict(type='SyncBN', requires_grad=True, momentum=0.01)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=32,  # MDEQ needs multiples of 2^(2 + 4 - 1)
    # test images of any size: pad to a multiple of 32, crop the logits back
    test_cfg=dict(size_divisor=32))
# class weights of the reference's weighted cross-entropy (mdeq_mm's loss:
# mmseg 1.2.2's CrossEntropyLoss with class_weight crashes on the ignore
# label 255 of void and padded pixels)
class_weight = [
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
    1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529,
    1.0507
]
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='MDEQ',
        arch='small',
        dropout=0.05,
        norm_cfg=norm_cfg,
        unrolled_depth=3,  # NUM_LAYERS of the warm-up
        solver='broyden',
        solver_cfg=dict(max_iter=27, tol=1e-3, stop_mode='rel'),
        grad='ift',
        grad_cfg=dict(
            solver='broyden',
            solver_cfg=dict(max_iter=30, tol=1e-4, stop_mode='initial'))),
    decode_head=dict(
        type='MDEQHead',
        in_channels=[32, 64, 128, 256],
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=True,
        loss_decode=dict(
            type='WeightedCrossEntropyLoss',
            loss_weight=1.0,
            class_weight=class_weight)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
