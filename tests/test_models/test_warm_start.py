# Copyright (c) mdeq_mm authors. All rights reserved.
"""Warm starts (z_init / warm_start) and the fixed-point correction,
against the cold solve and closed forms."""
import pytest
import torch

from mdeq_mm.models import MDEQ
from mdeq_mm.ops import ImplicitLayer
from mdeq_mm.ops.solvers import broyden
from ..helpers import make_contractive, scaled_problem

TIGHT = dict(max_iter=60, tol=1e-6, stop_mode='rel')


def tiny(**kw):
    """A tiny MDEQ whose f is contractive (see make_contractive)."""
    torch.manual_seed(0)
    return make_contractive(MDEQ('tiny', solver_cfg=dict(TIGHT), **kw)).eval()


def test_starting_at_the_fixed_point_needs_one_evaluation():
    model = tiny()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        cold = model(x)
        z_star = model.last_output.state
        assert model.last_stats.forward.nfev.min() > 5
        warm = model(x, z_init=z_star)
    assert model.last_output.start == 'given'
    assert model.last_stats.forward.nfev.tolist() == [1, 1]
    for a, b in zip(warm, cold):
        torch.testing.assert_close(a, b)


def test_warm_start_on_a_moved_input_saves_evaluations_at_equal_residual():
    model = tiny()
    x = torch.randn(1, 3, 16, 16)
    x2 = torch.roll(x, 1, dims=3) + 0.05 * torch.randn_like(x)
    with torch.no_grad():
        model(x)
        cold = model(x2)
        n_cold = int(model.last_stats.forward.nfev)
        model.set_warm_start(True)
        model(x)
        warm = model(x2)
    assert model.last_output.start == 'warm'
    n_warm = int(model.last_stats.forward.nfev)
    assert n_warm < n_cold
    assert float(model.last_stats.forward.rel_lowest) < TIGHT['tol']
    # both are the fixed point to tolerance
    for a, b in zip(warm, cold):
        assert (a - b).norm() / b.norm() < 1e-4


def test_next_state_is_f_at_the_returned_state_without_grad_only():
    A, x = linear()
    layer = ImplicitLayer('broyden', dict(max_iter=3, tol=0.))

    def f(z):
        return [z[0] @ A.T + x]
    with torch.no_grad():
        (z, ), stats = layer(f, [torch.zeros_like(x)])
    torch.testing.assert_close(stats.next_state[0], f([z])[0])
    assert not torch.allclose(stats.next_state[0], z)  # not converged
    _, stats = layer(f, [torch.zeros_like(x).requires_grad_()])
    assert stats.next_state is None


def test_one_evaluation_per_frame_warm_tracks_the_fixed_point():
    """With a budget of 1 the solve returns its start; the warm state is
    f(start), so frame after frame z_t = f(z_t-1) contracts to the fixed
    point (the cold solve, and a warm start from z* itself, stand still)."""
    model = tiny()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)  # the fixed point to 1e-6
        model.deq.configure(solver_cfg=dict(max_iter=0, tol=0.))
        cold = model(x)
        model.set_warm_start(True)
        errors = []
        for _ in range(8):
            out = model(x)
            errors.append(float(sum((a - b).norm() for a, b in
                                    zip(out, ref)) / sum(b.norm()
                                                         for b in ref)))
            assert model.last_stats.forward.nfev.tolist() == [1]
    assert errors[0] == pytest.approx(1.0)  # the first frame: z = 0
    assert all(b < 0.8 * a for a, b in zip(errors[1:], errors[2:]))
    assert errors[-1] < 0.05
    assert all(float(c.abs().max()) == 0 for c in cold)


def test_warm_start_with_another_size_starts_cold_and_bad_z_init_raises():
    model = tiny()
    model.set_warm_start(True)
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
        model(torch.randn(1, 3, 16, 32))
        assert model.last_output.start == 'cold'
        with pytest.raises(ValueError, match='z_init must hold one map per'):
            model(torch.randn(1, 3, 16, 16),
                  z_init=[torch.zeros(1, 24, 8, 8)] * 2)


def linear(dim=6, seed=0):
    return scaled_problem(dim, 2, radius=0.8, seed=seed)


@pytest.mark.parametrize('tau', [1.0, 0.5])
def test_correction_states_are_damped_steps_from_the_solver_iterates(tau):
    A, x = linear()
    A_p, x_p = A.clone().requires_grad_(), x.clone().requires_grad_()
    cfg = dict(max_iter=6, tol=0., stop_mode='rel')
    layer = ImplicitLayer('broyden', cfg, grad='phantom',
                          correction=dict(n_states=3, tau=tau))
    (z, ), stats = layer(lambda z: [z[0] @ A_p.T + x_p], [torch.zeros_like(x)])
    # the iterates the solver visits, recorded independently
    seen = []

    def f(z):
        seen.append(z.clone())
        return z @ A.T + x
    broyden(f, torch.zeros_like(x), **cfg)
    assert len(stats.corrections) == 2
    w = torch.linspace(-1, 1, x.numel(), dtype=x.dtype).view_as(x)
    for (c, ), k in zip(stats.corrections, (2, 4)):  # round(i * 6 / 3)
        zk = seen[k]
        torch.testing.assert_close(c, (1 - tau) * zk + tau * (zk @ A.T + x))
        gx, gA = torch.autograd.grad((c * w).sum(), (x_p, A_p),
                                     retain_graph=True)
        # phantom gradient: z_k is detached, d/dx = tau w, d/dA = tau wᵀz_k
        torch.testing.assert_close(gx, tau * w)
        torch.testing.assert_close(gA, tau * w.T @ zk)
    assert stats.nfev_tracked == 1 + 2


def test_correction_is_off_without_grad_and_validated():
    A, x = linear()
    layer = ImplicitLayer('broyden', dict(max_iter=6, tol=0.),
                          correction=dict(n_states=2))
    with torch.no_grad():
        _, stats = layer(lambda z: [z[0] @ A.T + x], [torch.zeros_like(x)])
    assert stats.corrections is None
    with pytest.raises(ValueError, match='n_states >= 2'):
        ImplicitLayer(correction=dict(n_states=1))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['states'\]"):
        ImplicitLayer(correction=dict(states=2))
