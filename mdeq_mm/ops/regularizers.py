# Copyright (c) mdeq_mm authors. All rights reserved.
"""Jacobian regularisers for implicit layers (Bai et al., ICML 2021)."""
from typing import Callable

import torch
from torch import Tensor


@torch.compiler.disable  # double backward through f: run eagerly
def jacobian_frobenius(fz: Tensor,
                       z: Tensor,
                       n_samples: int = 1,
                       create_graph: bool = True) -> Tensor:
    """Hutchinson estimate of ‖J_f(z)‖_F² / D per sample.

    E_ε‖εᵀJ‖² = ‖J‖_F² for ε ~ N(0, I). Differentiable (with
    ``create_graph=True``) so it can be added to a training loss.

    Args:
        fz (Tensor): f(z), shape (B, D), with a graph back to ``z``.
        z (Tensor): the input of f, shape (B, D), requires grad.
        n_samples (int): number of Gaussian probes.
        create_graph (bool): keep the graph for a second backward.

    Returns:
        Tensor: (B,) the estimate of ‖J_b‖_F² / D for each sample b.
    """
    if not z.requires_grad:
        raise ValueError('jacobian_frobenius needs z.requires_grad and fz '
                         'computed from z with grad enabled')
    total = fz.new_zeros(fz.shape[0])
    for i in range(n_samples):
        eps = torch.randn_like(fz)
        vjp, = torch.autograd.grad(
            fz,
            z,
            eps,
            retain_graph=True,
            create_graph=create_graph)
        total = total + vjp.flatten(1).pow(2).sum(1)
    return total / (n_samples * fz[0].numel())


@torch.no_grad()
def spectral_radius(f: Callable[[Tensor], Tensor],
                    z: Tensor,
                    n_iters: int = 100) -> Tensor:
    """Power-method estimate of the spectral radius of J_f at z, per sample.

    Iterates v ← vᵀJ / ‖vᵀJ‖ through vector-Jacobian products; the estimate
    is ‖vᵀJ‖ for the final unit v. Exact for a dominant real eigenvalue;
    for a complex dominant pair it oscillates around |λ|.

    Args:
        f (Callable): (B, D) -> (B, D), per sample.
        z (Tensor): (B, D) point of evaluation.
        n_iters (int): power iterations.

    Returns:
        Tensor: (B,) spectral radius estimates.
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_()
        fz = f(z)
        v = torch.randn_like(z)
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
        norm = z.new_zeros(z.shape[0])
        for _ in range(n_iters):
            vj, = torch.autograd.grad(fz, z, v, retain_graph=True)
            norm = torch.linalg.vector_norm(vj, dim=1)
            v = vj / (norm[:, None] + 1e-30)
    return norm
