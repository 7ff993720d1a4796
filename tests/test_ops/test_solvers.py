# Copyright (c) mdeq_mm authors. All rights reserved.
"""Solvers against closed-form linear problems and failure cases."""
import pytest
import torch

from mdeq_mm.ops import REASONS, SOLVERS, solve, solver_options


def linear_problem(bsz=3, dim=40, radius=0.9, seed=0, symmetric=False):
    """f(z) = A z + b with spectral norm ``radius``; returns f, A, b, z*."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(bsz, dim, dim, generator=g, dtype=torch.float64)
    if symmetric:
        A = A + A.transpose(1, 2)
    A = radius * A / torch.linalg.matrix_norm(A, 2)[:, None, None]
    b = torch.randn(bsz, dim, generator=g, dtype=torch.float64)
    z_true = torch.linalg.solve(torch.eye(dim, dtype=A.dtype) - A, b)

    def f(z):
        return torch.einsum('bij,bj->bi', A, z) + b

    return f, A, b, z_true


def ill_conditioned(dim=40, seed=1):
    """Symmetric contraction with eigenvalues spread over [0, 0.99]."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g,
                                       dtype=torch.float64))
    eig = torch.linspace(0, 0.99, dim, dtype=torch.float64)
    return (Q * eig) @ Q.T


@pytest.mark.parametrize('name', ['broyden', 'anderson', 'fixed_point'])
@pytest.mark.parametrize('stop_mode', ['abs', 'rel', 'initial'])
def test_linear_problem_meets_tolerance(name, stop_mode):
    f, A, b, z_true = linear_problem()
    z, stats = solve(
        name,
        f,
        torch.zeros_like(b),
        max_iter=400,
        tol=1e-9,
        stop_mode=stop_mode)
    assert stats.reasons == ['converged'] * 3
    res = dict(abs=stats.abs_lowest, rel=stats.rel_lowest,
               initial=stats.abs_lowest / stats.abs_trace[:, 0])[stop_mode]
    assert (res < 1e-9).all()
    # the reported residual is the true residual of the returned iterate
    true_res = torch.linalg.vector_norm(f(z) - z, dim=1)
    torch.testing.assert_close(stats.abs_lowest, true_res)
    # residual 1e-9 and ‖(I − A)⁻¹‖ <= 10 bound the error
    assert (z - z_true).norm(dim=1).max() < 1e-7
    assert stats.abs_trace.shape == stats.rel_trace.shape
    assert stats.abs_trace.shape[0] == 3


def test_initial_stop_mode_closed_form():
    """z = z/2 + b from 0 by plain iteration: residual_k = 2^-k ‖b‖, so
    ‖r‖ / ‖r0‖ < 1e-3 first at k = 10 (11 evaluations)."""
    b = torch.randn(2, 5, dtype=torch.float64) * torch.tensor([[1.], [1e4]])
    z, stats = solve('fixed_point', lambda z: 0.5 * z + b,
                     torch.zeros_like(b), max_iter=50, tol=1e-3,
                     stop_mode='initial')
    assert stats.nfev.tolist() == [11, 11]  # whatever the scale of b
    torch.testing.assert_close(z, b * (2 - 2**-9), rtol=1e-12, atol=0)


def test_initial_stop_mode_keeps_the_start_of_a_diverging_solve():
    """w = 3w + g diverges: the residual relative to ‖f(w)‖ falls towards
    2/3 as w grows, so 'rel' returns a huge iterate; 'initial' keeps w = 0,
    whose residual ‖g‖ is the lowest."""
    g = torch.randn(2, 4, dtype=torch.float64)
    kw = dict(max_iter=6, tol=1e-6, divergence=1e9)
    w_rel, s_rel = solve('fixed_point', lambda w: 3 * w + g,
                         torch.zeros_like(g), stop_mode='rel', **kw)
    w_init, s_init = solve('fixed_point', lambda w: 3 * w + g,
                           torch.zeros_like(g), stop_mode='initial', **kw)
    assert s_rel.lowest_step.tolist() == [6, 6]
    assert (s_rel.abs_lowest > 100 * s_rel.abs_trace[:, 0]).all()
    assert s_init.lowest_step.tolist() == [0, 0]
    assert torch.equal(w_init, torch.zeros_like(g))


def test_broyden_beats_fixed_point_on_ill_conditioned_contraction():
    A = ill_conditioned()[None]
    b = torch.ones(1, A.shape[1], dtype=torch.float64)

    def f(z):
        return torch.einsum('bij,bj->bi', A, z) + b

    _, fp = solve('fixed_point', f, torch.zeros_like(b), max_iter=5000,
                  tol=1e-8)
    _, br = solve('broyden', f, torch.zeros_like(b), max_iter=200, tol=1e-8)
    assert fp.reasons == br.reasons == ['converged']
    # fixed point needs ~log(1e-8)/log(0.99) ≈ 1800 evaluations
    assert fp.nfev.item() > 1000
    assert br.nfev.item() * 10 < fp.nfev.item()


def test_broyden_first_step_is_a_fixed_point_step():
    """Regression for locuslab/mdeq#5: z1 = z0 + g(z0) = f(z0)."""
    f, A, b, _ = linear_problem(bsz=1)
    z0 = torch.randn_like(b)
    _, stats = solve('broyden', f, z0, max_iter=1, tol=0.)
    z1 = f(z0)
    torch.testing.assert_close(stats.abs_trace[:, 1],
                               torch.linalg.vector_norm(f(z1) - z1, dim=1))


def test_history_shorter_than_max_iter_still_converges():
    f, A, b, z_true = linear_problem(bsz=2, radius=0.95)
    z, stats = solve('broyden', f, torch.zeros_like(b), max_iter=300,
                     tol=1e-9, history=5)
    assert stats.reasons == ['converged'] * 2
    assert (z - z_true).norm(dim=1).max() < 1e-7


def kelley_broyden(f, z0, iters, history):
    """Textbook reference: Kelley's brsol recursion ("Iterative Methods for
    Linear and Nonlinear Equations", Alg. 7.3.1) on one sample, applying
    the product-form factors one by one (no Gram matrix, no triangular
    solve). Once ``history`` steps are stored it restarts with
    H_0 = −γ I, γ = −sᵀy / yᵀy from the last step s and residual change y.
    Returns ‖g(z_k)‖ for k = 0..iters."""
    z = z0.clone()
    g = f(z) - z
    gamma, steps, res = 1.0, [g], [g.norm()]
    for _ in range(iters):
        z = z + steps[-1]
        g_prev, g = g, f(z) - z
        res.append(g.norm())
        if len(steps) == history:
            y = g - g_prev
            gamma = float(-(steps[-1] @ y) / (y @ y))
            assert gamma > 0
            steps = [gamma * g]
            continue
        w = gamma * g  # −H_0 g
        for s_j, s_next in zip(steps[:-1], steps[1:]):
            w = w + s_next * (s_j @ w) / (s_j @ s_j)
        s_k = steps[-1]
        steps.append(w / (1 - (s_k @ w) / (s_k @ s_k)))
    return torch.stack(res)


@pytest.mark.parametrize('dim,history', [(40, None), (40, 4), (8192, 5)])
def test_broyden_matches_kelley_recursion(dim, history):
    """Iterates equal the textbook recursion in float64, through several
    scaled restarts of the memory; D = 8192 takes the chunked (B · P)
    history products; rows are solved independently."""
    g = torch.Generator().manual_seed(3)
    blocks = dim // 8
    A = torch.randn(blocks, 8, 8, generator=g, dtype=torch.float64) / 3
    x = torch.randn(3, dim, generator=g, dtype=torch.float64)

    def f(z):  # block-diagonal nonlinear contraction, rows independent
        zb = z.view(z.shape[0], blocks, 8)
        return torch.tanh(torch.einsum('kij,bkj->bki', A, zb)).flatten(1) + x

    iters = 25
    _, stats = solve('broyden', f, torch.zeros_like(x), max_iter=iters,
                     tol=0., history=history)
    for b in range(3):
        ref = kelley_broyden(lambda z: f(z[None].expand(3, -1))[b],
                             torch.zeros(dim, dtype=torch.float64), iters,
                             history or iters + 1)
        torch.testing.assert_close(stats.abs_trace[b], ref, rtol=1e-9,
                                   atol=1e-12)
    if history:  # the memory matters: without restarts, other iterates
        _, full = solve('broyden', f, torch.zeros_like(x), max_iter=iters,
                        tol=0.)
        assert not torch.allclose(full.abs_trace, stats.abs_trace)


@pytest.mark.parametrize('name', ['broyden', 'anderson', 'fixed_point'])
def test_non_contiguous_states(name):
    """z0 and f(z) given as transposed views solve as their copies do."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8192, 3, generator=g, dtype=torch.float64)  # (D, B)

    def f(z):  # returns a transposed view: (B, D) with strides (1, B)
        return torch.tanh(0.5 * z.t() + x).t()

    z0 = torch.zeros(8192, 3, dtype=torch.float64).t()
    z, stats = solve(name, f, z0, max_iter=6, tol=0.)
    z_c, stats_c = solve(name, lambda v: f(v).contiguous(), z0.contiguous(),
                         max_iter=6, tol=0.)
    torch.testing.assert_close(z, z_c)
    torch.testing.assert_close(stats.abs_trace, stats_c.abs_trace)


@pytest.mark.parametrize('name', ['broyden', 'anderson', 'fixed_point'])
def test_easy_and_hard_sample_stop_separately(name):
    dim = 30
    easy = 0.05 * torch.eye(dim, dtype=torch.float64)
    hard = ill_conditioned(dim)
    A = torch.stack([easy, hard])
    b = torch.ones(2, dim, dtype=torch.float64)

    def f(z):
        return torch.einsum('bij,bj->bi', A, z) + b

    z, stats = solve(name, f, torch.zeros_like(b), max_iter=3000, tol=1e-8,
                     stop_mode='abs')
    z_true = torch.linalg.solve(torch.eye(dim, dtype=A.dtype) - A, b)
    assert stats.reasons == ['converged', 'converged']
    assert stats.nfev[0] < stats.nfev[1]
    assert (z - z_true).norm(dim=1).max() < 1e-6
    # the easy sample, once converged, stopped moving: its answer and count
    # are those of solving it alone
    z_alone, alone = solve(name, lambda x: f(torch.cat([x, x]))[:1],
                           torch.zeros_like(b[:1]), max_iter=3000, tol=1e-8,
                           stop_mode='abs')
    assert stats.nfev[0] == alone.nfev[0]
    torch.testing.assert_close(z[0], z_alone[0])
    # its trace is flat after it stopped
    k = int(stats.nfev[0])
    trace = stats.abs_trace[0, k - 1:]
    assert torch.all(trace == trace[0])


@pytest.mark.parametrize('name', ['broyden', 'anderson', 'fixed_point'])
def test_diverging_map_is_reported_and_finite(name):
    b = torch.ones(2, 8, dtype=torch.float64)

    def f(z):  # g(z) = f(z) − z = 1 + z² has no root
        return z + 1 + z.pow(2)

    z, stats = solve(name, f, torch.zeros_like(b), max_iter=60, tol=1e-6,
                     divergence=1e3, stop_mode='abs')
    assert torch.isfinite(z).all()
    assert 'converged' not in stats.reasons
    if name == 'fixed_point':  # z grows without bound
        assert set(stats.reasons) <= {'diverged', 'non-finite'}
    assert (stats.abs_lowest >= 1).all()
    # the returned iterate is the lowest seen
    finite = torch.nan_to_num(stats.abs_trace, nan=float('inf'))
    torch.testing.assert_close(stats.abs_lowest, finite.min(1).values)


@pytest.mark.parametrize('name', ['broyden', 'anderson', 'fixed_point'])
def test_non_finite_sample_does_not_poison_the_batch(name):
    f_lin, A, b, z_true = linear_problem(bsz=3)

    def f(z):
        out = f_lin(z)
        # sample 1 blows up once it leaves the origin region
        bad = z[1].abs().max() > 0.5
        out[1] = torch.where(bad, torch.full_like(out[1], float('nan')),
                             out[1])
        return out

    z, stats = solve(name, f, torch.zeros_like(b), max_iter=200, tol=1e-9)
    assert stats.reasons[1] == 'non-finite'
    assert stats.reasons[0] == stats.reasons[2] == 'converged'
    assert torch.isfinite(z).all()
    assert (z[[0, 2]] - z_true[[0, 2]]).norm(dim=1).max() < 1e-7


def test_already_converged_start_costs_one_evaluation():
    f, A, b, z_true = linear_problem(bsz=2)
    z, stats = solve('broyden', f, z_true.clone(), max_iter=10, tol=1e-8)
    assert stats.nfev.tolist() == [1, 1]
    assert stats.reasons == ['converged', 'converged']


def test_check_every_only_delays_the_batch_stop():
    f, A, b, z_true = linear_problem(bsz=2)
    z1, s1 = solve('broyden', f, torch.zeros_like(b), max_iter=100, tol=1e-9,
                   check_every=1)
    z4, s4 = solve('broyden', f, torch.zeros_like(b), max_iter=100, tol=1e-9,
                   check_every=4)
    # per-sample freezing makes the answers identical
    torch.testing.assert_close(z1, z4)
    assert torch.equal(s1.nfev, s4.nfev)
    assert s4.abs_trace.shape[1] - s1.abs_trace.shape[1] in range(0, 4)


def test_unknown_solver_and_option_are_rejected_with_valid_names():
    f, A, b, _ = linear_problem(bsz=1)
    with pytest.raises(KeyError, match='broyden'):
        solve('broyde', f, b)
    with pytest.raises(ValueError, match=r"\['max_iter'"):
        solve('broyden', f, b, max_iters=3)
    with pytest.raises(ValueError, match='stop_mode'):
        solve('anderson', f, b, stop_mode='relative')
    with pytest.raises(ValueError, match=r'\(B, D\)'):
        solve('broyden', lambda z: z, torch.zeros(1, 2, 3))
    assert 'history' in solver_options('broyden')
    assert {'m', 'lam', 'beta'} <= set(solver_options('anderson'))
    assert set(SOLVERS) >= {'broyden', 'anderson', 'fixed_point'}
    assert REASONS == ('converged', 'max_iter', 'diverged', 'non-finite')


def test_float32_state_under_bfloat16_f():
    f, A, b, z_true = linear_problem(bsz=2, radius=0.5)

    def f_bf16(z):
        return f(z.double()).to(torch.bfloat16)

    z0 = torch.zeros_like(b, dtype=torch.float32)
    z, stats = solve('broyden', f_bf16, z0, max_iter=30, tol=1e-2)
    assert z.dtype == torch.float32
    assert stats.reasons == ['converged', 'converged']
    assert (z.double() - z_true).norm(dim=1).max() < 0.1
