# Copyright (c) mdeq_mm authors. All rights reserved.
"""Jacobian regularisers against explicit Jacobians."""
import torch

from mdeq_mm.ops import jacobian_frobenius, spectral_radius


def test_hutchinson_matches_exact_frobenius_within_sampling_error():
    torch.manual_seed(0)
    dim, n = 10, 4000
    W = torch.randn(2, dim, dim, dtype=torch.float64) / dim**0.5
    z = torch.randn(2, dim, dtype=torch.float64, requires_grad=True)

    def f(z):
        return torch.tanh(torch.einsum('bij,bj->bi', W, z))

    est = jacobian_frobenius(f(z), z, n_samples=n, create_graph=False)
    for b in range(2):
        J = torch.autograd.functional.jacobian(
            lambda v: torch.tanh(W[b] @ v), z[b].detach())
        exact = J.pow(2).sum() / dim
        # Var ‖εᵀJ‖² = 2‖JJᵀ‖_F² for Gaussian ε; 5 standard errors
        se = (2 * (J @ J.T).pow(2).sum()).sqrt() / dim / n**0.5
        assert (est[b] - exact).abs() < 5 * se
        assert (est[b] - exact).abs() / exact < 0.1


def test_hutchinson_is_differentiable():
    """The estimate (fixed probes) has the gradient finite differences give."""
    W = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)

    def fn(W):
        torch.manual_seed(3)
        return jacobian_frobenius(torch.tanh(z @ W.T), z, n_samples=3).sum()

    assert torch.autograd.gradcheck(fn, (W, ))


def test_spectral_radius_of_symmetric_map():
    torch.manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    eig = torch.tensor([0.95, -0.5, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0],
                       dtype=torch.float64)
    A = (Q * eig) @ Q.T
    z = torch.zeros(3, 8, dtype=torch.float64)
    rho = spectral_radius(lambda v: v @ A.T, z, n_iters=200)
    torch.testing.assert_close(rho, torch.full((3, ), 0.95,
                                               dtype=torch.float64))
