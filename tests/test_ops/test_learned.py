# Copyright (c) mdeq_mm authors. All rights reserved.
"""The learned solver against the classical one and closed forms: unfitted
it is Anderson to the bit; fitted on a contractive linear problem it needs
at most half Anderson's evaluations; its network can only be given where a
learned solver is expected."""
import pytest
import torch
import torch.nn.functional as F

from mdeq_mm.ops import ImplicitLayer, solve
from mdeq_mm.ops.solvers import (LearnedSolver, anderson, neural,
                                 static_graph, unrolled_losses)

C, H, W = 6, 4, 4


def conv_problem(bsz, seed, radius=0.95):
    """f(z) = A z + x with A a 1x1 conv of spectral norm ``radius``; the
    fixed point z* = (I − A)⁻¹ x, also a 1x1 conv of x (which the
    initializer can represent)."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(C, C, generator=g, dtype=torch.float64)
    A = radius * A / torch.linalg.matrix_norm(A, 2)
    x = torch.randn(bsz, C, H, W, generator=torch.Generator().manual_seed(
        seed), dtype=torch.float64)

    def f(z):
        return F.conv2d(z.view(-1, C, H, W), A[:, :, None, None]).reshape(
            z.shape[0], -1) + x.reshape(x.shape[0], -1)

    inv = torch.linalg.inv(torch.eye(C, dtype=torch.float64) - A)
    z_star = F.conv2d(x, inv[:, :, None, None]).reshape(bsz, -1)
    return f, x, z_star


def nonlinear(bsz=3, dim=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    A = 0.9 * A / torch.linalg.matrix_norm(A, 2)
    b = torch.randn(bsz, dim, generator=g, dtype=torch.float64)
    return lambda z: torch.tanh(z @ A.T + b)


@pytest.mark.parametrize('m,beta', [(5, 1.0), (3, 0.7)])
def test_unfitted_it_is_the_projects_anderson_to_the_bit(m, beta):
    f = nonlinear()
    net = LearnedSolver(1, [1], m=m, beta=beta).double()
    z0 = torch.zeros(3, 50, dtype=torch.float64)
    za, sa = anderson(f, z0, max_iter=20, tol=1e-10, m=m, lam=1e-4,
                      beta=beta)
    zn, sn = neural(f, z0, net, max_iter=20, tol=1e-10)
    assert torch.equal(za, zn)
    assert torch.equal(sa.rel_trace, sn.rel_trace)
    assert torch.equal(sa.nfev, sn.nfev)
    # and its initializer starts at z0 = 0
    inj = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    like = [torch.zeros(2, 1, 8, 8, dtype=torch.float64)]
    assert torch.equal(net.initial_state(inj, like)[0], like[0])


def test_unfitted_in_a_static_graph_too():
    f = nonlinear()
    net = LearnedSolver(1, [1], m=4).double()
    z0 = torch.zeros(3, 50, dtype=torch.float64)
    za, _ = anderson(f, z0, max_iter=12, tol=0., m=4)
    with static_graph():
        zn, _ = neural(f, z0, net, max_iter=12, tol=0.)
    torch.testing.assert_close(zn, za, rtol=1e-9, atol=1e-12)


def evaluations(solver, f, z0, net=None, tol=1e-6):
    kwargs = dict(max_iter=60, tol=tol, stop_mode='rel')
    if net is not None:
        return solve(solver, f, z0, net=net, **kwargs)[1].nfev.float().mean()
    return solve(solver, f, z0, m=5, **kwargs)[1].nfev.float().mean()


def test_fitted_it_needs_at_most_half_of_andersons_evaluations():
    torch.manual_seed(0)
    net = LearnedSolver(C, [C], m=5, hidden=16).double()
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    for step in range(200):
        f, x, z_star = conv_problem(8, seed=step)
        z_init = net.initial_state(x, [x])[0].reshape(8, -1)
        losses = unrolled_losses(net, f, z_init, z_star, steps=6)
        opt.zero_grad()
        (losses['init'] + losses['iterates']).backward()
        opt.step()
    # unseen inputs: the learned start and update against Anderson from 0
    f, x, z_star = conv_problem(16, seed=10_000)
    with torch.no_grad():
        z_init = net.initial_state(x, [x])[0].reshape(16, -1)
        # relative residual 1e-3, within the fitted iterations: Anderson
        # from z = 0 needs 8.9 evaluations on average, the fitted solver 4
        fitted = evaluations('neural', f, z_init, net, tol=1e-3)
        classical = evaluations('anderson', f, torch.zeros_like(z_init),
                                tol=1e-3)
        z, _ = solve('neural', f, z_init, net=net, max_iter=60, tol=1e-8)
    torch.testing.assert_close(z, z_star, rtol=1e-6, atol=1e-6)
    assert fitted <= classical / 2, (fitted, classical)


def test_only_the_implicit_layer_that_owns_a_network_solves_with_it():
    with pytest.raises(ValueError, match='train_solver.py'):
        ImplicitLayer(solver='neural')
    layer = ImplicitLayer()
    with pytest.raises(ValueError, match='train_solver.py'):
        layer.set_solver('both', 'neural')
    assert layer.solver == 'broyden'  # a rejected call changes nothing
    net = LearnedSolver(1, [1])
    layer = ImplicitLayer(learned_solver=net)
    layer.set_solver('both', 'neural', budget=4)
    with pytest.raises(ValueError, match='adjoint'):
        layer.set_solver('backward', 'neural')
    with pytest.raises(ValueError, match='takes no network'):
        solve('anderson', nonlinear(), torch.zeros(3, 50), net=net)
    with pytest.raises(ValueError, match='m must be an int >= 2'):
        LearnedSolver(1, [1], m=1)


def test_it_is_small_next_to_the_backbone_it_serves():
    from mdeq_mm.models import MDEQ
    for arch in ('small', 'large'):
        model = MDEQ(arch, learned_solver=dict())
        learned = sum(p.numel() for p in model.learned_solver.parameters())
        total = sum(p.numel() for p in model.parameters()) - learned
        assert learned <= 0.03 * total, (arch, learned, total)
        # and it starts unfitted whatever the backbone's own init does
        model.init_weights()
        params = model.learned_solver.named_parameters()
        assert all(not p.any() for n, p in params
                   if 'initializer' in n or n.startswith('mixer.2'))
