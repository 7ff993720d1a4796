# Copyright (c) mdeq_mm authors. All rights reserved.
"""WeightedCrossEntropyLoss against PyTorch's weighted cross-entropy (the
reference's loss) and against mmseg's where mmseg is right."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope

import mdeq_mm  # noqa: F401
from mdeq_mm.models.losses import WeightedCrossEntropyLoss

# the reference's Cityscapes class weights
WEIGHTS = [
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
    1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529,
    1.0507
]


def logits_and_labels(n=2, c=19, h=12, w=20, seed=0, void=True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    label = torch.randint(0, c, (n, h, w), generator=g)
    if void:
        label[:, :3] = 255  # void classes
        label[:, :, -4:] = 255  # padding of a crop larger than the image
        label[0, 5, 5] = 255
    return logits.requires_grad_(), label


def test_equals_torch_weighted_ce_with_void_and_padding():
    logits, label = logits_and_labels()
    assert (label == 255).float().mean() > 0.3
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    ref = F.cross_entropy(logits, label, weight=w, ignore_index=255)
    loss = WeightedCrossEntropyLoss(class_weight=WEIGHTS, loss_weight=0.5)(
        logits, label, ignore_index=255)
    torch.testing.assert_close(loss.double(), 0.5 * ref, rtol=1e-6,
                               atol=1e-7)
    g_ref, = torch.autograd.grad(0.5 * ref, logits)
    g, = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-5, atol=1e-8)


def test_hand_computed_weighted_mean():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 0, 0, 0] = 2.0  # pixel 0: class 0 favoured
    label = torch.tensor([[[0, 1, 255]]])
    loss = WeightedCrossEntropyLoss(class_weight=[1.0, 3.0])(logits, label)
    l0 = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    l1 = torch.log(torch.tensor(2.0))
    assert loss.item() == pytest.approx(((1 * l0 + 3 * l1) / 4).item(),
                                        rel=1e-6)


def test_equals_mmseg_loss_without_ignored_pixels():
    from mmseg.models.losses import CrossEntropyLoss
    logits, label = logits_and_labels(void=False)
    ours = WeightedCrossEntropyLoss(class_weight=WEIGHTS)(logits.float(),
                                                          label)
    theirs = CrossEntropyLoss(class_weight=WEIGHTS)(logits.float(), label,
                                                    ignore_index=255)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_mmseg_loss_still_crashes_on_void_labels():
    """Why the project ships its own loss (fails once mmseg is fixed)."""
    from mmseg.models.losses import CrossEntropyLoss
    logits, label = logits_and_labels()
    with pytest.raises(IndexError):
        CrossEntropyLoss(class_weight=WEIGHTS)(logits.float(), label,
                                               ignore_index=255)


def test_all_ignored_gives_zero_loss_and_zero_gradients():
    logits, label = logits_and_labels()
    label.fill_(255)
    loss = WeightedCrossEntropyLoss(class_weight=WEIGHTS)(logits, label)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().max() == 0


def test_without_class_weights_is_the_mean_over_labelled_pixels():
    logits, label = logits_and_labels()
    ref = F.cross_entropy(logits, label, ignore_index=255)
    loss = WeightedCrossEntropyLoss()(logits, label)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=1e-7)


def test_pixel_weights_sum_and_none_reductions():
    logits, label = logits_and_labels()
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    keep = (torch.rand(label.shape, generator=torch.Generator()
                       .manual_seed(1)) > 0.5).double()
    loss_fn = WeightedCrossEntropyLoss(class_weight=WEIGHTS)
    per_pixel = F.cross_entropy(logits, label, weight=w, ignore_index=255,
                                reduction='none')
    torch.testing.assert_close(
        loss_fn(logits, label, reduction_override='none').double(),
        per_pixel)
    torch.testing.assert_close(
        loss_fn(logits, label, reduction_override='sum').double(),
        per_pixel.sum())
    valid = (label != 255).double()
    safe = label.clamp(max=18)
    expected = (per_pixel * keep).sum() / (w[safe] * valid * keep).sum()
    torch.testing.assert_close(loss_fn(logits, label, weight=keep).double(),
                               expected)


def test_float32_under_autocast():
    logits, label = logits_and_labels()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        half = logits.float().to(torch.bfloat16)
        loss = WeightedCrossEntropyLoss(class_weight=WEIGHTS)(half, label)
    assert loss.dtype == torch.float32
    ref = F.cross_entropy(half.float(), label,
                          weight=torch.tensor(WEIGHTS), ignore_index=255)
    torch.testing.assert_close(loss, ref)


def test_raw_label_ids_raise_with_the_converter_command():
    logits, label = logits_and_labels()
    label[0, 0, 0] = 26  # Cityscapes label id of 'car'
    with pytest.raises(ValueError, match='dataset_converters/cityscapes'):
        WeightedCrossEntropyLoss(class_weight=WEIGHTS)(logits, label)


def test_wrong_number_of_class_weights():
    logits, label = logits_and_labels()
    with pytest.raises(ValueError, match='one weight per class'):
        WeightedCrossEntropyLoss(class_weight=WEIGHTS[:5])(logits, label)


def test_decode_head_trains_on_void_labels():
    """Through mmseg's decode head, with the head's ignore_index."""
    from mmseg.registry import MODELS

    from tests.helpers import seg_batch
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = MODELS.build(
            dict(type='MDEQHead', in_channels=[4, 8], num_classes=19,
                 norm_cfg=dict(type='BN'),
                 loss_decode=dict(type='WeightedCrossEntropyLoss',
                                  class_weight=WEIGHTS)))
    samples = seg_batch(n=2, h=16, w=16, num_classes=19)['data_samples']
    samples[0].gt_sem_seg.data[:, :4] = 255
    feats = [torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8)]
    losses = head.loss(feats, samples, train_cfg={})
    assert torch.isfinite(losses['loss_ce']) and losses['loss_ce'] > 0
