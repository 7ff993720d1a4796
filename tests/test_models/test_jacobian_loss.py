# Copyright (c) mdeq_mm authors. All rights reserved.
"""Jacobian regularisation wired into training: the backbone's estimate
against the exact Jacobian, when it is computed, and that it reaches the
losses of mmseg / mmpretrain models and the weights of f."""
import pytest
import torch
from mmengine.registry import DefaultScope

from mdeq_mm.models import MDEQ
from ..helpers import cls_batch, seg_batch
from .test_backbone import contractive_mdeq, train_with_frozen_bn
from .test_heads import FAST, segmentor

SOLVE = dict(solver_cfg=dict(max_iter=30, tol=1e-8),
             grad_cfg=dict(solver_cfg=dict(max_iter=30)))


def exact_jacobians(model, x, z):
    """J_f(z_b) per sample, from the backbone's own fixed-point map."""
    jacs = []
    with model.fixed_point(x) as problem:
        packer = problem.packer
        flat = packer.pack([t.detach() for t in z])
        for b in range(x.shape[0]):
            f = problem.sample(b).flat()
            jacs.append(torch.autograd.functional.jacobian(
                lambda v: f(v[None])[0], flat[b]))
    return jacs


def test_estimate_matches_the_exact_jacobian_within_its_sampling_error():
    model = train_with_frozen_bn(contractive_mdeq(
        jac_loss=dict(weight=2.0, n_samples=300), **SOLVE))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    z = model(x)
    est = model.last_output.jac_frobenius
    torch.testing.assert_close(model.last_output.jac_loss, 2.0 * est.mean())
    # IFT's application + this one
    assert model.last_output.summary()['nfev_tracked'] == 2
    for b, J in enumerate(exact_jacobians(model, x, z)):
        d = J.shape[0]
        exact = J.pow(2).sum() / d
        # Var ‖εᵀJ‖² = 2 ‖J Jᵀ‖²_F for Gaussian ε
        se = (2 * (J @ J.T).pow(2).sum() / 300).sqrt() / d
        assert abs(est[b] - exact) < 5 * se, (est[b], exact, se)
        assert se < 0.2 * exact  # the check is tight enough to fail
    assert model.last_output.summary()['jac_frobenius'] == pytest.approx(
        est.mean().item())


def test_jacobian_loss_only_in_training_and_at_its_frequency():
    torch.manual_seed(0)
    fast = dict(solver_cfg=dict(max_iter=1), grad='phantom',
                grad_cfg=dict(k=1, tau=1.0))
    x = torch.randn(1, 3, 16, 16)
    model = MDEQ('tiny', jac_loss=dict(weight=1.0, freq=0.5), **fast)
    model.train()
    hits = sum(model(x) is not None
               and model.last_output.jac_loss is not None
               for _ in range(60))
    assert 15 <= hits <= 45  # Binomial(60, 0.5): 5.8 standard deviations
    model.eval()
    model(x)
    assert model.last_output.jac_loss is None
    model.train()
    with torch.no_grad():
        model(x)
    assert model.last_output.jac_loss is None
    for on in (True, False):  # timing both kinds of step (measure)
        with model.jacobian_loss_on(on):
            got = {model(x) is not None and
                   model.last_output.jac_loss is not None for _ in range(8)}
        assert got == {on}
    assert model._jac_forced is None  # restored after the block
    plain = MDEQ('tiny', **fast).train()
    plain(x)
    assert plain.last_output.jac_loss is None
    assert plain.last_output.jac_frobenius is None
    with pytest.raises(ValueError, match='n_samples'):
        MDEQ('tiny', jac_loss=dict(weight=1.0, probes=2))
    with pytest.raises(ValueError, match='weight'):
        MDEQ('tiny', jac_loss=dict(freq=0.1))


def test_minimising_the_loss_shrinks_the_jacobian():
    """Gradient steps on loss_jac alone lower the exact ‖J_f‖_F at the
    equilibrium: the loss differentiates through the Jacobian to f."""
    model = train_with_frozen_bn(contractive_mdeq(
        jac_loss=dict(weight=1.0, n_samples=4), **SOLVE))
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)

    def frobenius():
        z = model(x)
        return exact_jacobians(model, x, z)[0].pow(2).sum().item()

    before = frobenius()
    opt = torch.optim.SGD(model.deq_layer.parameters(), lr=0.5)
    for _ in range(10):
        model(x)
        opt.zero_grad()
        model.last_output.jac_loss.backward()
        opt.step()
    assert frobenius() < 0.7 * before


def test_losses_of_the_deq_segmentor_and_classifier():
    """DEQEncoderDecoder / DEQImageClassifier add ``loss_jac``; the stock
    models ignore the backbone's loss; it trains f, not the head."""
    torch.manual_seed(0)
    backbone = dict(type='MDEQ', arch='tiny', jac_loss=dict(weight=0.5),
                    **FAST)
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        stock = segmentor('tiny', num_classes=3, jac_loss=dict(weight=0.5))
        deq = MODELS.build(dict(
            type='DEQEncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor',
                                   size_divisor=32),
            backbone=backbone,
            decode_head=dict(type='MDEQHead', in_channels=[24, 24],
                             num_classes=3, norm_cfg=dict(type='BN')),
            train_cfg=dict(), test_cfg=dict(mode='whole')))
        for net, has_jac in ((stock, False), (deq, True)):
            net.train()
            data = net.data_preprocessor(seg_batch(2, 32, 32), True)
            losses = net(**data, mode='loss')
            assert ('loss_jac' in losses) == has_jac
        losses['loss_jac'].backward()
        conv = deq.backbone.deq_layer.branches[0].blocks[0].conv1
        assert conv.weight_v.grad.abs().sum() > 0
        assert deq.decode_head.conv_seg.weight.grad is None
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        net = MODELS.build(dict(
            type='DEQImageClassifier', backbone=backbone,
            neck=[dict(type='MDEQClsNeck', in_channels=(24, 24),
                       head_channels=(8, 16), out_channels=200),
                  dict(type='GlobalAveragePooling')],
            head=dict(type='LinearClsHead', num_classes=3,
                      in_channels=200))).train()
        data = net.data_preprocessor(cls_batch(4, 32, 3), True)
        losses = net(**data, mode='loss')
        assert set(losses) == {'loss', 'loss_jac'}
        assert losses['loss_jac'] > 0
