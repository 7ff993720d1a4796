# Copyright (c) mdeq_mm authors. All rights reserved.
"""The implicit layer's gradients against closed forms and finite
differences."""
import pytest
import torch

from mdeq_mm.ops import ImplicitLayer, StatePacker

TIGHT = dict(max_iter=200, tol=1e-12, stop_mode='abs')


def ift_layer(**kw):
    return ImplicitLayer(
        'broyden',
        dict(TIGHT),
        grad='ift',
        grad_cfg=dict(solver='broyden', solver_cfg=dict(TIGHT)),
        **kw)


def test_ift_gradient_equals_closed_form_on_linear_problem():
    torch.manual_seed(0)
    dim = 12
    A = torch.randn(dim, dim, dtype=torch.float64)
    A = 0.8 * A / torch.linalg.matrix_norm(A, 2)
    Bm = torch.randn(dim, dim, dtype=torch.float64)
    x = torch.randn(2, dim, dtype=torch.float64, requires_grad=True)
    A_param = A.clone().requires_grad_()
    w = torch.randn(2, dim, dtype=torch.float64)

    def f(z):
        return [z[0] @ A_param.T + x @ Bm.T]

    (z, ), stats = ift_layer()(f, [torch.zeros(2, dim, dtype=torch.float64)])
    (z * w).sum().backward()
    inv = torch.linalg.inv(torch.eye(dim, dtype=A.dtype) - A)
    z_true = (x.detach() @ Bm.T) @ inv.T
    torch.testing.assert_close(z.detach(), z_true)
    # dL/dx = w (I − A)⁻¹ B ; dL/dA = Σ_b (w_b (I − A)⁻¹)ᵀ z_b
    adj = w @ inv
    torch.testing.assert_close(x.grad, adj @ Bm)
    torch.testing.assert_close(A_param.grad, adj.T @ z_true)
    assert stats.mode == 'ift'
    assert stats.backward.reasons == ['converged', 'converged']
    assert stats.fallback == 0


def contraction(dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    W = 0.7 * W / torch.linalg.matrix_norm(W, 2)
    U = torch.randn(dim, 3, generator=g, dtype=torch.float64)
    b = torch.randn(dim, generator=g, dtype=torch.float64)
    return W, U, b


def test_ift_passes_gradcheck_on_nonlinear_contraction():
    W, U, b = contraction()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    W = W.requires_grad_()
    layer = ift_layer()

    def fn(x, W):

        def f(z):
            return [torch.tanh(z[0] @ W.T + x @ U.T + b)]

        return layer(f, [torch.zeros(2, 6, dtype=torch.float64)])[0][0]

    assert torch.autograd.gradcheck(fn, (x, W), eps=1e-6, atol=1e-6)


def test_multiscale_ift_gradcheck():
    """Two scales of different shapes go through the packer correctly."""
    torch.manual_seed(1)
    w1 = (0.3 * torch.randn(2, 2, 3, 3, dtype=torch.float64)).requires_grad_()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    layer = ift_layer()

    def fn(x, w1):

        def f(z):
            a, c = z
            a_new = torch.tanh(
                torch.nn.functional.conv2d(a, w1, padding=1) + x +
                torch.nn.functional.interpolate(c, scale_factor=2))
            c_new = torch.tanh(0.5 * torch.nn.functional.avg_pool2d(a, 2))
            return [a_new, c_new]

        z0 = [torch.zeros(1, 2, 4, 4, dtype=torch.float64),
              torch.zeros(1, 2, 2, 2, dtype=torch.float64)]
        out = layer(f, z0)[0]
        return out[0].sum() + 2 * out[1].pow(2).sum()

    assert torch.autograd.gradcheck(fn, (x, w1), eps=1e-6, atol=1e-6)


def test_phantom_gradient_converges_to_ift():
    W, U, b = contraction()
    x = torch.randn(2, 3, dtype=torch.float64)
    w = torch.randn(2, 6, dtype=torch.float64)

    def grad_of(layer):
        Wp = W.clone().requires_grad_()

        def f(z):
            return [torch.tanh(z[0] @ Wp.T + x @ U.T + b)]

        (z, ), _ = layer(f, [torch.zeros(2, 6, dtype=torch.float64)])
        (z * w).sum().backward()
        return Wp.grad

    exact = grad_of(ift_layer())
    errors = []
    for k in (1, 4, 16, 64):
        layer = ImplicitLayer('broyden', dict(TIGHT), grad='phantom',
                              grad_cfg=dict(k=k, tau=1.0))
        errors.append(((grad_of(layer) - exact).norm() / exact.norm()).item())
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 1e-3 and errors[-1] < 1e-8


def test_damped_phantom_gradient_is_unrolled_damped_steps():
    W, U, b = contraction()
    x = torch.randn(2, 3, dtype=torch.float64)
    Wp = W.clone().requires_grad_()

    def f(z):
        return [torch.tanh(z[0] @ Wp.T + x @ U.T + b)]

    layer = ImplicitLayer('broyden', dict(TIGHT), grad='phantom',
                          grad_cfg=dict(k=3, tau=0.5))
    (z, ), stats = layer(f, [torch.zeros(2, 6, dtype=torch.float64)])
    z.sum().backward()
    got = Wp.grad.clone()
    Wp.grad = None
    with torch.no_grad():
        zs = z.detach().clone()
        for _ in range(50):
            zs = f([zs])[0]
    zz = zs
    for _ in range(3):
        zz = 0.5 * zz + 0.5 * f([zz])[0]
    zz.sum().backward()
    torch.testing.assert_close(got, Wp.grad)
    assert stats.nfev_tracked == 3


def test_unrolled_equals_autograd_through_the_loop():
    W, U, b = contraction()
    x = torch.randn(2, 3, dtype=torch.float64)
    Wp = W.clone().requires_grad_()

    def f(z):
        return [torch.tanh(z[0] @ Wp.T + x @ U.T + b)]

    layer = ImplicitLayer(grad='unrolled', grad_cfg=dict(depth=4))
    (z, ), stats = layer(f, [torch.zeros(2, 6, dtype=torch.float64)])
    z.pow(2).sum().backward()
    got = Wp.grad.clone()
    Wp.grad = None
    zz = torch.zeros(2, 6, dtype=torch.float64)
    for _ in range(4):
        zz = f([zz])[0]
    zz.pow(2).sum().backward()
    torch.testing.assert_close(z, zz)
    torch.testing.assert_close(got, Wp.grad)
    assert stats.mode == 'unrolled' and stats.forward is None


def test_no_grad_builds_no_graph_and_uses_eval_budget():
    W, U, b = contraction()
    Wp = W.clone().requires_grad_()
    x = torch.randn(2, 3, dtype=torch.float64)

    def f(z):
        return [torch.tanh(z[0] @ Wp.T + x @ U.T + b)]

    layer = ImplicitLayer('broyden', dict(max_iter=30, tol=1e-10),
                          eval_solver_cfg=dict(max_iter=3, tol=0.))
    with torch.no_grad():
        (z, ), stats = layer(f, [torch.zeros(2, 6, dtype=torch.float64)])
    assert not z.requires_grad and z.grad_fn is None
    assert stats.mode == 'solve'
    assert stats.forward.nfev.tolist() == [4, 4]
    (z, ), stats = layer(f, [torch.zeros(2, 6, dtype=torch.float64)])
    assert z.requires_grad and stats.forward.nfev.max() > 4


def test_failed_backward_solve_falls_back_with_warning():
    """J = 3I: the backward fixed-point iteration w ← 3w + g diverges and
    never beats w = 0; the gradient must not silently become zero."""
    a = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, dtype=torch.float64)

    def f(z):
        return [a * z[0] + x - 3 * x]  # fixed point z* = x

    layer = ImplicitLayer(
        'broyden',
        dict(TIGHT),
        grad='ift',
        grad_cfg=dict(
            solver='fixed_point', solver_cfg=dict(max_iter=10, tol=1e-10)))
    (z, ), stats = layer(f, [torch.zeros(2, 4, dtype=torch.float64)])
    torch.testing.assert_close(z.detach(), x)
    with pytest.warns(UserWarning, match='one-step'):
        z.sum().backward()
    assert stats.fallback == 2
    # one-step gradient: w = g = 1, dL/da = Σ z* = Σ x
    torch.testing.assert_close(a.grad, x.sum())


def test_packer_round_trip_and_views():
    shapes = [(4, 8, 8), (8, 4, 4), (16, 2, 2)]
    xs = [torch.randn(3, *s) for s in shapes]
    packer = StatePacker.like(xs)
    flat = packer.pack(xs)
    assert flat.shape == (3, 4 * 64 + 8 * 16 + 16 * 4)
    back = packer.unpack(flat)
    for a, b in zip(xs, back):
        assert torch.equal(a, b)
        assert b.untyped_storage().data_ptr() == \
            flat.untyped_storage().data_ptr()
    norms = packer.per_scale_norm(flat)
    torch.testing.assert_close(
        norms, torch.stack([x.flatten(1).norm(dim=1) for x in xs], 1))


def test_autocast_keeps_solver_in_float32_and_gradients_close():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 16)
    with torch.no_grad():
        lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, 2))
    x = torch.randn(4, 16)

    def f(z):
        return [torch.tanh(lin(z[0]) + x)]

    layer = ImplicitLayer('broyden', dict(max_iter=40, tol=1e-6),
                          grad_cfg=dict(solver_cfg=dict(max_iter=40,
                                                        tol=1e-6)))
    (z32, ), _ = layer(f, [torch.zeros(4, 16)])
    z32.sum().backward()
    g32 = lin.weight.grad.clone()
    lin.weight.grad = None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        (zbf, ), stats = layer(f, [torch.zeros(4, 16)])
    zbf.float().sum().backward()
    assert stats.forward.abs_trace.dtype == torch.float32
    assert stats.backward.abs_trace.dtype == torch.float32
    assert zbf.dtype == torch.float32
    rel = (lin.weight.grad - g32).norm() / g32.norm()
    assert rel < 0.05


def test_invalid_gradient_config_is_rejected():
    with pytest.raises(ValueError, match='valid'):
        ImplicitLayer(grad='exact')
    with pytest.raises(ValueError, match=r"\['k', 'tau'\]"):
        ImplicitLayer(grad='phantom', grad_cfg=dict(steps=3))
    with pytest.raises(ValueError, match='history'):
        ImplicitLayer(grad_cfg=dict(solver_cfg=dict(memory=3)))
    with pytest.raises(ValueError, match='max_iter'):
        ImplicitLayer(solver_cfg=dict(f_max_iter=3))


def test_per_scale_traces_match_the_returned_state():
    torch.manual_seed(0)
    w = 0.3 * torch.randn(3, 3, dtype=torch.float64)

    def f(z):
        a, c = z
        return [torch.tanh(a @ w + 1), torch.tanh(0.5 * c + a.sum(1, True))]

    layer = ImplicitLayer('broyden', dict(max_iter=6, tol=0.))
    layer.trace_scales = True
    z0 = [torch.zeros(2, 3, dtype=torch.float64),
          torch.zeros(2, 2, dtype=torch.float64)]
    with torch.no_grad():
        _, stats = layer(f, z0)
    per = stats.forward.rel_trace_scales
    assert per.shape == (2, 7, 2)
    # at the returned (lowest) step it is the residual of the returned state
    at_lowest = per[torch.arange(2), stats.forward.lowest_step]
    torch.testing.assert_close(at_lowest, stats.rel_residual_per_scale)
    assert (per[:, 0, 0] > per[:, -1, 0]).all()


def test_backward_stops_relative_to_the_gradient_by_default():
    layer = ImplicitLayer(grad='ift', grad_cfg=dict(
        solver_cfg=dict(max_iter=5)))
    assert layer.grad_cfg['solver_cfg'] == dict(max_iter=5,
                                                stop_mode='initial')
    layer.set_grad('ift', dict(solver_cfg=dict(stop_mode='rel')))
    assert layer.grad_cfg['solver_cfg']['stop_mode'] == 'rel'


def test_float64_solver_arithmetic_around_a_float32_f():
    """solver_dtype='float64': the solver runs in float64 on the state (the
    same solve as by hand with f cast around it), f sees and returns
    float32, the result is float32; gradients still reach f's parameters.
    """
    from mdeq_mm.ops import solve
    torch.manual_seed(0)
    dim = 500
    A = torch.randn(dim, dim)
    A32 = (0.95 * A / torch.linalg.matrix_norm(A, 2)).requires_grad_()
    b = torch.randn(2, dim)
    seen = set()

    def f(z):
        seen.add(z[0].dtype)
        return [torch.tanh(z[0] @ A32.T + b)]

    cfg = dict(max_iter=30, tol=0.)
    layer = ImplicitLayer('broyden', dict(cfg), grad='ift',
                          solver_dtype='float64')
    with torch.no_grad():
        (z, ), stats = layer(f, [torch.zeros(2, dim)])
        ref, _ = solve('broyden', lambda w: f([w.float()])[0].double(),
                       torch.zeros(2, dim, dtype=torch.float64), **cfg)
        (z32, ), _ = ImplicitLayer('broyden', dict(cfg))(
            f, [torch.zeros(2, dim)])
    assert z.dtype == torch.float32 and seen == {torch.float32}
    assert stats.forward.abs_trace.dtype == torch.float64
    torch.testing.assert_close(z, ref.float(), rtol=0, atol=0)
    assert not torch.equal(z, z32)  # the float32 solve rounds differently
    (z, ), _ = layer(f, [torch.zeros(2, dim)])
    z.sum().backward()
    assert torch.isfinite(A32.grad).all() and A32.grad.abs().sum() > 0
    # the phantom gradient's tracked steps also get f's dtype
    phantom = ImplicitLayer('broyden', dict(cfg), grad='phantom',
                            solver_dtype='float64')
    (z, ), _ = phantom(f, [torch.zeros(2, dim)])
    assert z.dtype == torch.float32 and seen == {torch.float32}
    A32.grad = None
    z.sum().backward()
    assert torch.isfinite(A32.grad).all() and A32.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='solver_dtype'):
        ImplicitLayer(solver_dtype='half')


def test_solver_options_that_are_not_a_dict_name_the_fix():
    # what mmengine's DictAction makes of a dict literal: a string
    with pytest.raises(ValueError, match='eval_solver_cfg.max_iter=16'):
        ImplicitLayer(eval_solver_cfg="{'max_iter':16}")
