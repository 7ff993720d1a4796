# Copyright (c) mdeq_mm authors. All rights reserved.
"""The CUDA path against the CPU one (marked ``cuda``: skipped without a
GPU; ``tools/gpu_check.py`` runs them).

* the solvers and the implicit layer on CUDA equal the CPU results (float64:
  the forward z* and the IFT, phantom and SHINE gradients of every
  parameter);
* a segmentor's training step under autocast (fp16 with a gradient scaler,
  bf16) keeps the solver in float32, gives finite gradients and a loss
  close to the float32 step's;
* warm starts and ONNX export work from a CUDA model;
* host syncs are bounded: a solve asks the host once before its first
  iteration and then once every ``check_every`` (4 on accelerators)
  iterations; the IFT backward once more (the fallback count).
"""
import math
import warnings

import pytest
import torch

from mdeq_mm.models import MDEQ
from mdeq_mm.ops import ImplicitLayer
from mdeq_mm.ops.solvers import solve
from ..helpers import make_contractive, scaled_problem, seg_batch

pytestmark = pytest.mark.cuda
SOLVER_NAMES = ('broyden', 'anderson', 'fixed_point')
GRADS = {
    'ift': dict(grad='ift', grad_cfg=dict(solver_cfg=dict(
        max_iter=40, tol=1e-10))),
    'phantom': dict(grad='phantom', grad_cfg=dict(k=3, tau=0.8)),
    'shine': dict(grad='ift', grad_cfg=dict(init='shine', solver_cfg=dict(
        max_iter=3, tol=0.))),
}


def contraction(bsz=3, dim=256, seed=0):
    return scaled_problem(dim, bsz, radius=0.8, seed=seed)


def contractive_tiny(**kw):
    torch.manual_seed(0)
    return make_contractive(MDEQ('tiny', **kw))


@pytest.mark.parametrize('solver', SOLVER_NAMES)
def test_solvers_on_cuda_equal_cpu(solver):
    W, x = contraction()
    cfg = dict(max_iter=25, tol=0., stop_mode='rel')
    results = {}
    for dev in ('cpu', 'cuda'):
        Wd, xd = W.to(dev), x.to(dev)
        z, stats = solve(solver, lambda z: torch.tanh(z @ Wd.T + xd),
                         torch.zeros_like(xd), **cfg)
        results[dev] = (z.cpu(), stats.rel_trace.cpu(), stats.nfev.cpu())
    torch.testing.assert_close(results['cuda'][0], results['cpu'][0],
                               rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(results['cuda'][1], results['cpu'][1],
                               rtol=1e-6, atol=1e-12)
    assert results['cuda'][2].tolist() == results['cpu'][2].tolist()


@pytest.mark.parametrize('grad', sorted(GRADS))
def test_mdeq_forward_and_gradients_on_cuda_equal_cpu(grad):
    """z* and the gradient of every parameter and of the input, float64."""
    model = contractive_tiny(
        norm_cfg=dict(type='BN'),
        solver_cfg=dict(max_iter=40, tol=1e-10, stop_mode='rel'),
        **GRADS[grad]).double().train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    results = {}
    for dev in ('cpu', 'cuda'):
        model.to(dev).zero_grad()
        xd = x.to(dev).requires_grad_()
        out = model(xd)
        w = [torch.ones_like(o).cumsum(-1) / o.shape[-1] for o in out]
        sum((o * wi).sum() for o, wi in zip(out, w)).backward()
        results[dev] = ([o.detach().cpu() for o in out], xd.grad.cpu(), {
            n: p.grad.cpu()
            for n, p in model.named_parameters() if p.grad is not None
        })
        assert model.last_stats.fallback == 0
    cpu, cuda = results['cpu'], results['cuda']
    for a, b in zip(cuda[0], cpu[0]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(cuda[1], cpu[1], rtol=1e-5, atol=1e-8)
    assert cuda[2].keys() == cpu[2].keys() and len(cpu[2]) > 10
    for name in cpu[2]:
        torch.testing.assert_close(cuda[2][name], cpu[2][name], rtol=1e-5,
                                   atol=1e-8, msg=name)


def _segmentor():
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(
            type='EncoderDecoder',
            data_preprocessor=dict(
                type='SegDataPreProcessor', size_divisor=32,
                mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
            backbone=dict(type='MDEQ', arch='small', dropout=0.0,
                          solver_cfg=dict(max_iter=8, tol=1e-3),
                          grad_cfg=dict(solver_cfg=dict(max_iter=8))),
            decode_head=dict(type='MDEQHead', in_channels=[32, 64, 128, 256],
                             num_classes=19, norm_cfg=dict(type='BN')),
            train_cfg=dict(), test_cfg=dict(mode='whole')))
    make_contractive(model.backbone)
    return model


def _loss_and_grads(model, data, dtype):
    model.zero_grad()
    scaler = torch.amp.GradScaler('cuda', enabled=dtype == torch.float16)
    with torch.autocast('cuda', dtype=dtype, enabled=dtype != torch.float32):
        losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    scaler.scale(loss).backward()
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    grads = [p.grad.float() / scale for p in model.parameters()
             if p.grad is not None]
    return float(loss), grads


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_training_step_keeps_a_float32_solver(dtype):
    model = _segmentor().cuda().train()
    data = model.data_preprocessor(seg_batch(n=2, h=64, w=128,
                                             num_classes=19), True)
    ref_loss, ref_grads = _loss_and_grads(model, data, torch.float32)
    loss, grads = _loss_and_grads(model, data, dtype)
    stats = model.backbone.last_stats
    assert stats.forward.abs_trace.dtype == torch.float32
    assert stats.backward.abs_trace.dtype == torch.float32
    assert all(torch.isfinite(g).all() for g in grads)
    assert len(grads) == len(ref_grads)
    assert math.isfinite(loss) and abs(loss - ref_loss) < 0.05 * ref_loss
    # the gradient direction survives reduced precision
    flat = torch.cat([g.flatten() for g in grads])
    ref = torch.cat([g.flatten() for g in ref_grads])
    assert torch.nn.functional.cosine_similarity(flat, ref, 0) > 0.9


def test_warm_start_at_the_fixed_point_on_cuda_needs_one_evaluation():
    model = contractive_tiny(solver_cfg=dict(
        max_iter=60, tol=1e-5, stop_mode='rel')).cuda().eval()
    x = torch.randn(2, 3, 16, 16, device='cuda')
    model.set_warm_start(True)
    with torch.no_grad():
        cold = model(x)
        assert model.last_stats.forward.nfev.min() > 5
        warm = model(x)
    assert model.last_output.start == 'warm'
    assert model.last_stats.forward.nfev.tolist() == [1, 1]
    for a, b in zip(warm, cold):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_onnx_export_from_a_cuda_model(tmp_path):
    pytest.importorskip('onnxruntime')
    from mdeq_mm.apis import set_solver
    from mdeq_mm.deploy import compare_onnx, export_onnx
    model = _segmentor().cuda().eval()
    set_solver(model, 'broyden', 6, tol=0.)
    path = export_onnx(model, str(tmp_path / 'seg.onnx'), (64, 128))
    x = torch.randn(1, 3, 64, 128, device='cuda')
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare float32 with float32
    try:
        err = compare_onnx(model, path, x)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert err['max_rel'] < 1e-4, err


def _count_syncs(fn):
    """Host syncs ``fn()`` makes on the current device (CUDA's sync debug
    mode warns at each one)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    return sum('synchroniz' in str(w.message) for w in caught)


@pytest.mark.parametrize('solver', SOLVER_NAMES)
def test_host_syncs_per_solve_are_one_per_check_interval(solver):
    W, x = contraction(dim=512)
    W, x = W.float().cuda(), x.float().cuda()
    max_iter = 20  # tol=1e-30: never converges, every iteration runs

    def run():
        solve(solver, lambda z: torch.tanh(z @ W.T + x),
              torch.zeros_like(x), max_iter=max_iter, tol=1e-30)

    run()  # warm-up (lazy CUDA initialisation)
    n = _count_syncs(run)
    # the stop test before iteration 1, then every 4th iteration
    assert n <= 1 + max_iter // 4, n


def test_host_syncs_of_an_implicit_training_step_are_bounded():
    W, x = contraction(dim=512)
    W = W.float().cuda().requires_grad_()
    x = x.float().cuda()
    layer = ImplicitLayer('broyden', dict(max_iter=20, tol=1e-30),
                          grad='ift', grad_cfg=dict(solver_cfg=dict(
                              max_iter=20, tol=1e-30)))

    def run():
        (z, ), _ = layer(lambda z: [torch.tanh(z[0] @ W.T + x)],
                         [torch.zeros_like(x)])
        z.sum().backward()

    run()
    n = _count_syncs(run)
    # two solves as above, plus the backward's fallback count
    assert n <= 2 * (1 + 20 // 4) + 1, n
