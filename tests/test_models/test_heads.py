# Copyright (c) mdeq_mm authors. All rights reserved.
"""MDEQ inside mmseg and mmpretrain models: the reference heads, parameter
counts, stock heads, one training step each."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

import mdeq_mm  # noqa: F401 (registers the modules)
from ..helpers import cls_batch, seg_batch

FAST = dict(solver_cfg=dict(max_iter=4, tol=1e-3),
            grad_cfg=dict(solver_cfg=dict(max_iter=4)))
MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


def segmentor(arch='small', decode_head=None, num_classes=19, **backbone):
    channels = dict(small=[32, 64, 128, 256], large=[80, 160, 320, 640],
                    xl=[88, 176, 352, 704], tiny=[24, 24])[arch]
    head = dict(type='MDEQHead', in_channels=channels,
                num_classes=num_classes, norm_cfg=dict(type='BN'))
    head.update(decode_head or {})
    from mmseg.registry import MODELS
    return MODELS.build(
        ConfigDict(
            type='EncoderDecoder',
            data_preprocessor=dict(
                type='SegDataPreProcessor', size_divisor=32, **MEAN_STD),
            backbone=dict(type='MDEQ', arch=arch, **dict(FAST, **backbone)),
            decode_head=head,
            train_cfg=dict(),
            test_cfg=dict(mode='whole')))


def classifier(arch='small', head_channels=(24, 48, 96, 192),
               out_channels=2048, num_classes=1000, **backbone):
    from mmpretrain.registry import MODELS
    channels = dict(small=(32, 64, 128, 256), tiny=(24, 24),
                    xl=(88, 176, 352, 704))[arch]
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='MDEQ', arch=arch, **dict(FAST, **backbone)),
            neck=[
                dict(type='MDEQClsNeck', in_channels=channels,
                     head_channels=head_channels, out_channels=out_channels),
                dict(type='GlobalAveragePooling')
            ],
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=out_channels)))


def n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('arch,expected', [('small', 8_968_467),
                                           ('large', 55_955_859),
                                           ('xl', 79_551_755)])
def test_segmentation_parameter_counts_match_reference(arch, expected):
    with DefaultScope.overwrite_default_scope('mmseg'):
        assert n_params(segmentor(arch)) == expected


def test_classification_parameter_counts_match_reference():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        # the reference's ImageNet SMALL: 16,808,936; CIFAR TINY: 158,986
        assert n_params(classifier('small')) == 16_808_936
        assert n_params(
            classifier('tiny', (8, 16), 200, num_classes=10)) == 158_986


def _train_step(model, data):
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01)
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return data, loss


def test_mdeq_segmentor_trains_and_predicts():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = segmentor(num_classes=3)
        model.train()
        data, loss = _train_step(model, seg_batch(2, 64, 64))
        assert torch.isfinite(loss)
        stats = model.backbone.last_stats
        assert stats.mode == 'ift' and stats.backward is not None
        # the implicit gradient reached f, the stem and the head
        for name in ('backbone.deq_layer.branches.0.blocks.0.conv1.weight_v',
                     'backbone.conv1.weight', 'decode_head.conv_seg.weight'):
            assert model.get_parameter(name).grad.abs().sum() > 0, name
        model.eval()
        with torch.no_grad():
            logits = model(**data, mode='tensor')
            preds = model(**data, mode='predict')
        assert logits.shape == (2, 3, 16, 16)  # stride 4, like the reference
        assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)
        assert model.backbone.last_stats.mode == 'solve'


def test_mdeq_head_equals_its_definition():
    """resize (bilinear, align_corners=True) + concat + 1x1 conv-BN-ReLU +
    classifier, computed by hand."""
    import torch.nn.functional as F
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = segmentor(num_classes=5).decode_head.eval()
    feats = [torch.randn(1, c, 16 // 2**i, 16 // 2**i)
             for i, c in enumerate([32, 64, 128, 256])]
    x = torch.cat([feats[0]] + [
        F.interpolate(f, size=(16, 16), mode='bilinear', align_corners=True)
        for f in feats[1:]
    ], 1)
    conv, bn = head.convs[0].conv, head.convs[0].bn
    y = F.relu(bn(F.conv2d(x, conv.weight, conv.bias)))
    ref = F.conv2d(y, head.conv_seg.weight, head.conv_seg.bias)
    torch.testing.assert_close(head(feats), ref)


@pytest.mark.parametrize('head', [
    dict(type='FCNHead', in_channels=[32, 64, 128, 256], channels=480,
         in_index=(0, 1, 2, 3), input_transform='resize_concat',
         kernel_size=1, num_convs=1, concat_input=False, dropout_ratio=-1,
         align_corners=False),
    dict(type='UPerHead', in_channels=[32, 64, 128, 256], channels=32,
         in_index=(0, 1, 2, 3), pool_scales=(1, 2), dropout_ratio=0.1),
])
def test_stock_decode_heads_follow_the_backbone(head):
    """Smoke test: stock heads train on the MDEQ outputs and the gradient
    reaches the stem."""
    torch.manual_seed(0)
    head = dict(head, num_classes=3, norm_cfg=dict(type='BN'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = segmentor(num_classes=3)
        from mmseg.registry import MODELS
        model.decode_head = MODELS.build(head)
        model.train()
        _, loss = _train_step(model, seg_batch(2, 64, 64))
        assert torch.isfinite(loss)
        assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_cascade_ocr_head_with_fuse_neck():
    """Smoke test: a cascade OCR head behind the fusion neck trains."""
    torch.manual_seed(0)
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(
            ConfigDict(
                type='CascadeEncoderDecoder',
                num_stages=2,
                data_preprocessor=dict(
                    type='SegDataPreProcessor', size_divisor=32, **MEAN_STD),
                backbone=dict(type='MDEQ', arch='small', **FAST),
                neck=dict(type='MDEQFuseNeck',
                          in_channels=[32, 64, 128, 256], fuse_conv=False),
                decode_head=[
                    dict(type='FCNHead', in_channels=480, channels=480,
                         kernel_size=1, num_convs=1, concat_input=False,
                         dropout_ratio=-1, num_classes=3,
                         norm_cfg=dict(type='BN')),
                    dict(type='OCRHead', in_channels=480, channels=64,
                         ocr_channels=32, dropout_ratio=-1, num_classes=3,
                         norm_cfg=dict(type='BN'))
                ],
                train_cfg=dict(),
                test_cfg=dict(mode='whole')))
        model.train()
        _, loss = _train_step(model, seg_batch(2, 64, 64))
        assert torch.isfinite(loss)


def test_fuse_neck_equals_resize_concat():
    import torch.nn.functional as F
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        neck = MODELS.build(dict(type='MDEQFuseNeck', in_channels=[2, 3],
                                 fuse_conv=False))
    a, b = torch.randn(1, 2, 8, 8), torch.randn(1, 3, 4, 4)
    out, = neck([a, b])
    ref = torch.cat([a, F.interpolate(b, size=(8, 8), mode='bilinear',
                                      align_corners=True)], 1)
    torch.testing.assert_close(out, ref)


def test_frozen_backbone_trains_only_the_head():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = segmentor(num_classes=3, frozen=True)
        model.train()
        before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        _train_step(model, seg_batch(2, 64, 64))
        assert model.backbone.last_stats.backward is None
        for k, v in model.backbone.state_dict().items():
            assert torch.equal(v, before[k]), k
        assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0


def test_mdeq_classifier_trains_and_predicts():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = classifier('tiny', (8, 16), 200, num_classes=3)
        model.train()
        data, loss = _train_step(model, cls_batch(4, 32, 3))
        assert torch.isfinite(loss)
        assert model.backbone.conv1.weight.grad.abs().sum() > 0
        model.eval()
        with torch.no_grad():
            preds = model(**data, mode='predict')
        assert preds[0].pred_score.shape == (3, )


def test_cls_neck_bottleneck_norms_are_affine_free():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = classifier('small').neck[0]
    inc = neck.incre_modules[0]
    assert inc.bn1.weight is None and inc.bn3.weight is None
    assert inc.downsample[1].weight is not None
    assert neck.downsamp_modules[0].conv.bias is not None
    assert neck.final_layer.conv.bias is not None
    out, = neck([torch.randn(1, c, 16 // 2**i, 16 // 2**i)
                 for i, c in enumerate((32, 64, 128, 256))])
    assert out.shape == (1, 2048, 2, 2)
