# Copyright (c) mdeq_mm authors. All rights reserved.
"""The SHINE backward (start from the forward Broyden's inverse estimate)
against a dense good-Broyden inverse built independently from the
iterates, and against the exact implicit gradient."""
import pytest
import torch

from mdeq_mm.ops import ImplicitLayer
from mdeq_mm.ops.solvers import broyden
from ..helpers import scaled_problem


def linear_problem(dim=8, bsz=2, seed=0):
    return scaled_problem(dim, bsz, radius=0.9, seed=seed)


def dense_good_broyden(zs, gs):
    """Classical good Broyden on the inverse from H_0 = −I, one dense
    rank-one update per secant pair (Sherman-Morrison form):
    H ← H + (s − H y) sᵀH / (sᵀ H y)."""
    dim = zs[0].shape[0]
    H = -torch.eye(dim, dtype=zs[0].dtype)
    for k in range(len(zs) - 1):
        s, y = zs[k + 1] - zs[k], gs[k + 1] - gs[k]
        Hy = H @ y
        H = H + torch.outer(s - Hy, s @ H) / (s @ Hy)
    return H


@pytest.mark.parametrize('max_iter', [1, 3, 6])
def test_broyden_inverse_equals_dense_good_broyden(max_iter):
    A, b = linear_problem()
    seen = []

    def f(z):
        seen.append(z.clone())
        return z @ A.T + b

    _, stats = broyden(f, torch.zeros_like(b), max_iter=max_iter, tol=0.,
                       history=None)
    v = torch.randn(2, b.shape[1], dtype=b.dtype)
    got = stats.inverse(v)
    for row in range(2):
        zs = [z[row] for z in seen]
        gs = [z @ A.T + b[row] - z for z in zs]
        H = dense_good_broyden(zs, gs)
        torch.testing.assert_close(got[row], v[row] @ H)


def test_broyden_inverse_after_a_memory_restart_is_the_scaled_identity():
    A, b = linear_problem()
    _, stats = broyden(lambda z: z @ A.T + b, torch.zeros_like(b),
                       max_iter=4, tol=0., history=4)
    v = torch.randn_like(b)
    ratio = stats.inverse(v) / v  # a restart leaves H = −γ I, γ > 0
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))
    assert (ratio < 0).all()


def shine_grads(init, refine, A, b, x_scale):
    """Gradients of a loss through z* = A z* + x with init / refine."""
    x = (x_scale * b).clone().requires_grad_()
    A_param = A.clone().requires_grad_()
    layer = ImplicitLayer(
        'broyden', dict(max_iter=30, tol=1e-12, stop_mode='abs',
                        history=None),
        grad='ift', grad_cfg=dict(init=init, solver='broyden', solver_cfg=dict(
            max_iter=refine, tol=1e-12, stop_mode='abs')))
    (z, ), stats = layer(lambda z: [z[0] @ A_param.T + x],
                         [torch.zeros_like(b)])
    w = torch.linspace(-1, 1, b.numel(), dtype=b.dtype).view_as(b)
    (z * w).sum().backward()
    return x.grad, A_param.grad, stats


def test_shine_refined_gradient_equals_the_exact_gradient():
    A, b = linear_problem()
    exact = shine_grads('zero', 40, A, b, 1.)
    refined = shine_grads('shine', 40, A, b, 1.)
    for a, e in zip(refined[:2], exact[:2]):
        torch.testing.assert_close(a, e)
    # and the closed form: dL/dx = w (I − A)⁻¹
    w = torch.linspace(-1, 1, b.numel(), dtype=b.dtype).view_as(b)
    inv = torch.linalg.inv(torch.eye(b.shape[1], dtype=b.dtype) - A)
    torch.testing.assert_close(refined[0], w @ inv)
    # the estimate starts the adjoint solve closer than w = 0 does
    start = refined[2].backward.abs_trace[:, 0]
    assert (start < exact[2].backward.abs_trace[:, 0]).all()


def test_pure_shine_gradient_is_the_estimate_carried_through_f():
    A, b = linear_problem()
    seen = []
    A_param = A.clone().requires_grad_()
    x = b.clone().requires_grad_()
    layer = ImplicitLayer(
        'broyden', dict(max_iter=5, tol=0., history=None), grad='ift',
        grad_cfg=dict(init='shine', solver_cfg=dict(max_iter=0, tol=0.)))

    def f(z):
        if not torch.is_grad_enabled():
            seen.append(z[0].detach().clone())
        return [z[0] @ A_param.T + x]

    (z, ), stats = layer(f, [torch.zeros_like(b)])
    w = torch.linspace(-1, 1, b.numel(), dtype=b.dtype).view_as(b)
    (z * w).sum().backward()
    # w0 = −w H (dense, from the iterates); dL/dx = w0 (f is linear in x)
    for row in range(2):
        zs = [s[row] for s in seen]
        gs = [s @ A.T + b[row] - s for s in zs]
        H = dense_good_broyden(zs, gs)
        torch.testing.assert_close(x.grad[row], -w[row] @ H)
    assert int(stats.backward.nfev.max()) == 1  # one product, the check
    assert stats.fallback == 0


def test_shine_needs_a_broyden_forward():
    with pytest.raises(ValueError, match="solver='broyden'"):
        ImplicitLayer('anderson', dict(max_iter=5), grad='ift',
                      grad_cfg=dict(init='shine'))
    with pytest.raises(ValueError, match='init must be one of'):
        ImplicitLayer(grad='ift', grad_cfg=dict(init='warm'))
