# Copyright (c) mdeq_mm authors. All rights reserved.
"""ONNX export with a fixed solver budget, checked with onnxruntime against
the PyTorch eval path (the ordinary solvers, not the static graph)."""
import importlib.util
import os.path as osp
import sys

import pytest
import torch

from mdeq_mm.apis import set_solver
from mdeq_mm.deploy import ExportError, compare_onnx, export_onnx, onnx_session
from mdeq_mm.ops import solve, static_graph
from mdeq_mm.ops.solvers import SOLVERS
from mdeq_mm.ops.solvers.linalg import _solve_lower, _solve_unpivoted
from tests.test_converters.test_locuslab import KEYS, original_state

# the parity tests run the files in onnxruntime; the static-graph ones don't
needs_ort = pytest.mark.skipif(
    importlib.util.find_spec('onnxruntime') is None,
    reason='onnxruntime is not installed')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SOLVER_NAMES = ('broyden', 'anderson', 'fixed_point')
TOL = 1e-4  # relative: max |onnx - torch| / max |torch|


def linear_problem(dim=40, bsz=3, seed=0):
    """f(z) = A z + b per row, contractive, with the closed-form fixed
    point z* = (I - A)^-1 b."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(bsz, dim, dim, generator=g, dtype=torch.float64)
    A = 0.8 * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    b = torch.randn(bsz, dim, generator=g, dtype=torch.float64)
    z_star = torch.linalg.solve(torch.eye(dim, dtype=A.dtype) - A, b)

    def f(z):
        return torch.bmm(A, z[..., None])[..., 0] + b

    return f, b, z_star


# ----------------------------------------------------------------- solvers
@pytest.mark.parametrize('name', SOLVER_NAMES)
@pytest.mark.parametrize('tol', [0., 1e-6])
def test_static_graph_computes_what_the_ordinary_solver_computes(name, tol):
    f, b, z_star = linear_problem()
    z0 = torch.zeros_like(b)
    z, stats = solve(name, f, z0, max_iter=30, tol=tol)
    with static_graph():
        zs, sstats = solve(name, f, z0, max_iter=30, tol=tol)
    # float64: the two paths differ by rounding only
    torch.testing.assert_close(zs, z, rtol=1e-9, atol=1e-9)
    assert sstats.lowest_step.tolist() == stats.lowest_step.tolist()
    assert sstats.reasons == stats.reasons
    if name != 'fixed_point':  # accelerated solvers reach the closed form
        torch.testing.assert_close(z, z_star, rtol=1e-5, atol=1e-5)


def test_static_graph_keeps_frozen_and_rejected_rows_as_the_solver_does():
    f, b, _ = linear_problem(bsz=3)

    def g(z):  # row 1 blows up to inf after a few steps, row 2 is NaN-free
        out = f(z)
        bad = torch.zeros_like(out)
        bad[1] = torch.where(z[1].abs().sum() > 1.0, float('inf'), 0.)
        return out + bad

    for name in SOLVER_NAMES:
        z, stats = solve(name, g, torch.zeros_like(b), max_iter=12, tol=0.)
        with static_graph():
            zs, sstats = solve(name, g, torch.zeros_like(b), max_iter=12,
                               tol=0.)
        assert stats.reasons[1] == 'non-finite'
        assert sstats.reasons == stats.reasons
        torch.testing.assert_close(zs, z, rtol=1e-9, atol=1e-9)


def test_unrolled_small_solves_equal_lapack():
    g = torch.Generator().manual_seed(0)
    L = torch.randn(4, 7, 7, generator=g, dtype=torch.float64).tril()
    L = L + 4 * torch.eye(7, dtype=L.dtype)
    rhs = torch.randn(4, 7, 1, generator=g, dtype=torch.float64)
    with static_graph():
        x = _solve_lower(L, rhs)
    torch.testing.assert_close(
        x, torch.linalg.solve_triangular(L, rhs, upper=False))
    M = torch.randn(4, 6, 6, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2) + 0.1 * torch.eye(6, dtype=M.dtype)
    rhs = torch.randn(4, 6, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_solve_unpivoted(A, rhs),
                               torch.linalg.solve(A, rhs))


# ------------------------------------------------------------------ models
@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """The CIFAR Tiny original checkpoint (key file), converted by the CLI
    and loaded into the matching config's classifier."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from mdeq_mm.converters.__main__ import main
    from mdeq_mm.registry import build_model
    tmp = tmp_path_factory.mktemp('tiny')
    src, dst = tmp / 'tiny_original.pth', tmp / 'tiny.pth'
    torch.save(original_state(osp.join(
        KEYS, 'keys_cifar_cls_mdeq_TINY.yaml.txt')), src)
    assert main('cls', [str(src), str(dst)]) == 0
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/mdeq/mdeq-tiny_2xb64_cifar10.py'))
    model = build_model(cfg)
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    return model.eval(), tmp


@pytest.fixture(scope='module')
def flagship():
    """The flagship segmenter (SyncBN as BN), seeded initialisation."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm

    from mdeq_mm.registry import build_model
    cfg = Config.fromfile(osp.join(ROOT, 'configs/mdeq_cityscapes.py'))
    cfg.model.backbone.pop('init_cfg', None)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(build_model(cfg))
    model.init_weights()
    return model.eval()


def check_parity(model, path, shape, max_iter):
    """ONNX Runtime equals PyTorch at the same solver and max_iter for batch 1
    and 2 through one file; PyTorch stopped one iteration before the
    iterate the solve returns (its lowest residual) is 100x further away
    (the graph runs the iterations, it does not stop early)."""
    g = torch.Generator().manual_seed(1)
    worst = 0.
    session = onnx_session(path)
    for bsz in (1, 2):
        x = torch.randn(bsz, 3, *shape, generator=g)
        err = compare_onnx(model, path, x, session)
        assert err['max_rel'] <= TOL, (bsz, err)
        worst = max(worst, err['max_rel'])
    backbone = next(m for m in model.modules() if hasattr(m, 'deq'))
    step = int(backbone.last_stats.forward.lowest_step.max())
    assert step >= 2  # the solve moved
    backbone.deq.set_solver('eval', budget=step)  # max_iter = step - 1
    try:
        short = compare_onnx(model, path, x, session)
    finally:
        backbone.deq.set_solver('eval', budget=max_iter + 1)
    assert short['max_rel'] > 100 * worst, (short, worst)


@needs_ort
@pytest.mark.parametrize('solver', SOLVER_NAMES)
def test_converted_original_classifier_exports_with_parity(tiny, solver):
    model, tmp = tiny
    set_solver(model, solver, 7, tol=0.)
    path = export_onnx(model, str(tmp / f'tiny_{solver}.onnx'), (32, 32))
    out = onnx_session(path).run(None, {'input': torch.zeros(
        3, 3, 32, 32).numpy()})[0]
    assert out.shape == (3, 10)  # class scores, any batch size
    check_parity(model, path, (32, 32), 6)


@needs_ort
@pytest.mark.parametrize('solver', SOLVER_NAMES)
def test_flagship_segmenter_exports_with_parity(flagship, solver, tmp_path):
    cfgs = set_solver(flagship, solver, 6, tol=0.)  # 6 f evaluations
    assert cfgs[0]['solver'] == solver and cfgs[0]['budget'] == 6
    assert cfgs[0]['solver_cfg']['max_iter'] == 5
    assert cfgs[0]['solver_cfg']['tol'] == 0
    path = export_onnx(flagship, str(tmp_path / 'seg.onnx'), (64, 96),
                       opset=11, metadata=dict(solver=solver, budget='5'))
    out = onnx_session(path).run(None, {'input': torch.zeros(
        2, 3, 64, 96).numpy()})[0]
    assert out.shape == (2, 19, 16, 24)  # logits at the head's 1/4 scale
    check_parity(flagship, path, (64, 96), 5)
    import onnx
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta == dict(solver=solver, budget='5')


@needs_ort
def test_float64_solver_exports_with_parity(flagship, tmp_path):
    cfgs = set_solver(flagship, 'broyden', 6, tol=0., dtype='float64')
    assert cfgs[0]['dtype'] == 'float64'
    try:
        path = export_onnx(flagship, str(tmp_path / 'seg64.onnx'), (64, 64))
        check_parity(flagship, path, (64, 64), 5)
    finally:
        set_solver(flagship, dtype='float32')


@needs_ort
def test_static_batch_export_fixes_the_batch(tiny):
    model, tmp = tiny
    set_solver(model, 'broyden', 4, tol=0.)
    path = export_onnx(model, str(tmp / 'static.onnx'), (32, 32),
                       batch_size=2, dynamic_batch=False)
    sess = onnx_session(path)
    assert sess.get_inputs()[0].shape == [2, 3, 32, 32]
    err = compare_onnx(model, path, torch.randn(2, 3, 32, 32))
    assert err['max_rel'] <= TOL


def test_budget_and_solver_are_validated(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match='valid solvers'):
        set_solver(model, 'newton', 5)
    with pytest.raises(ValueError, match='>= 1'):
        set_solver(model, 'broyden', 0)
    # options the new solver lacks are dropped, shared ones kept
    model.backbone.deq.configure(eval_solver_cfg=dict(
        max_iter=9, history=5, stop_mode='abs'))
    cfg = set_solver(model, 'anderson', tol=0.)[0]['solver_cfg']
    assert cfg == dict(max_iter=9, tol=0., stop_mode='abs')
    cfg = set_solver(model, 'broyden', 5, tol=0.)[0]['solver_cfg']
    assert cfg == dict(max_iter=4, tol=0., stop_mode='abs')


def test_operator_without_onnx_form_is_named_with_the_opset_that_works(
        flagship, tmp_path):
    set_solver(flagship, 'broyden', 4, tol=0.)
    # mmseg's resize (bilinear, align_corners=True) needs opset 11
    with pytest.raises(ExportError) as info:
        export_onnx(flagship, str(tmp_path / 'x.onnx'), (64, 64), opset=10)
    msg = str(info.value)
    assert 'upsample_bilinear2d' in msg and 'opset 10' in msg
    assert 'not its solver' in msg and '--opset 11' in msg


def test_solver_without_onnx_form_is_named(tiny, tmp_path):
    from mdeq_mm.ops import register_solver
    from mdeq_mm.ops.solvers.fixed_point import _FixedPoint
    from mdeq_mm.ops.solvers.loop import LoopOptions, _iterate

    class Damped(_FixedPoint):  # a step length from torch.linalg.solve
        def propose(self, z, fz, g):
            two = z.new_full((z.shape[0], 1, 1), 2.)
            half = torch.linalg.solve(two, torch.ones_like(two))[:, 0]
            return z + half * g

    @register_solver('lapack_test')
    def lapack_test(f, z0, *, max_iter=5, tol=1e-3, stop_mode='rel',
                    check_every=None, divergence=1e4, scales=None):
        return _iterate(f, z0, Damped(1.), LoopOptions(
            max_iter, tol, stop_mode, check_every, divergence, scales))

    model, _ = tiny
    try:
        set_solver(model, 'lapack_test', 4, tol=0.)
        with pytest.raises(ExportError) as info:
            export_onnx(model, str(tmp_path / 'x.onnx'), (32, 32))
    finally:
        SOLVERS.pop('lapack_test')
        set_solver(model, 'broyden', 7, tol=0.)
    msg = str(info.value)
    assert "aten::linalg_solve" in msg and "solver 'lapack_test'" in msg
    assert 'no opset up to 20' in msg


def test_opset_outside_the_exporters_range_is_refused(tiny, tmp_path):
    model, _ = tiny
    with pytest.raises(ExportError, match='10 to 20'):
        export_onnx(model, str(tmp_path / 'x.onnx'), (32, 32), opset=9)


# ------------------------------------------------------------------- tools
def _tool(name):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'deployment'))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@needs_ort
def test_export_tool_verifies_the_flagship(tmp_path, capsys):
    tool = _tool('pytorch2onnx')
    out = tmp_path / 'flagship.onnx'
    rc = tool.main([osp.join(ROOT, 'configs/mdeq_cityscapes.py'), '--out',
                    str(out), '--shape', '64', '128', '--budget', '4',
                    '--verify'])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert 'solver broyden (float32), 4 f evaluations' in text
    assert 'verify batch 1' in text and 'verify batch 2' in text
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta['mean'] == '[123.675, 116.28, 103.53]'
    assert meta['solver'] == 'broyden' and meta['budget'] == '4'


@needs_ort
def test_export_tool_reports_the_opset_that_works(tmp_path):
    tool = _tool('pytorch2onnx')
    with pytest.raises(SystemExit, match='--opset 11'):
        tool.main([osp.join(ROOT, 'configs/mdeq_cityscapes.py'), '--out',
                   str(tmp_path / 'x.onnx'), '--shape', '64', '64',
                   '--budget', '2', '--opset', '10'])


@needs_ort
@pytest.mark.slow
def test_onnx_benchmark_quick_run(tmp_path):
    """Smoke run of the benchmark (64x128, budget 3) as a process; the
    parity it reports is checked."""
    import json

    from tests.helpers import run_tool
    out = run_tool('deployment/benchmark_onnx', '--quick', '--out-dir',
                   str(tmp_path))
    assert '| MDEQ-Small | 64x128 | 3 | float32 |' in out
    rows = json.loads((tmp_path / 'onnx.json').read_text())
    assert [r['model'] for r in rows] == ['MDEQ-Small', 'HRNet-W18']
    assert all(r['max_rel'] <= TOL for r in rows), rows
    assert all(r['torch_s'] > 0 and r['ort_s'] > 0 for r in rows)
    assert (tmp_path / 'onnx.png').is_file()
