# Copyright (c) mdeq_mm authors. All rights reserved.
"""A learned solver (Neural Deep Equilibrium Solvers, Bai, Koltun and
Kolter, ICLR 2022): a small initializer network (injection → initial state)
and Anderson acceleration whose mixing weights and damping a small network
corrects from the recent residuals, fitted to a frozen DEQ.

* The update is the project's Anderson step with α = α_LS + Δα and
  β = β₀ · 2σ(b): α_LS solves the regularised least-squares mixing problem
  as in :func:`~mdeq_mm.ops.solvers.anderson`; Δα (re-centred, so that
  Σα = 1 still holds) and b come from an MLP on the residuals' Gram matrix
  GGᵀ (normalised by its mean diagonal, in recency order) and α_LS. The
  MLP sees m² + m numbers whatever the state's size, so the update costs
  nothing next to an f evaluation. Its last layer starts at zero: an
  unfitted net *is* classical Anderson (Δα = 0, β = β₀).
* The initializer maps the injection, average-pooled to each branch's
  resolution, through a 1x1 conv per branch; it starts at zero (z0 = 0).
* :func:`unrolled_losses` is the fitting objective: the initial state's and
  every iterate's relative distance to a high-budget fixed point z*, with
  gradients through the iterates (and the f evaluations) to the solver's
  parameters only.

``solver='neural'`` runs it in the shared loop (per-sample stopping,
lowest iterate, statistics, static graphs for ONNX); its network is given
by the implicit layer that owns it.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import is_int, is_number
from .anderson import _Anderson
from .linalg import _diagonal
from .loop import LoopOptions, _iterate, static_graph
from .registry import register_solver


class LearnedSolver(nn.Module):
    """The learned parts of the ``'neural'`` solver.

    Args:
        in_channels (int): channels of the injection (the stride-4 input
            of the fixed-point layer).
        channels (Sequence[int]): channels of each branch of the state.
        m (int): Anderson history size.
        hidden (int): width of the mixing MLP.
        lam (float): Tikhonov regularisation of the least-squares mixing
            (relative to the mean squared residual, as Anderson's).
        beta (float): the damping β₀ the learned one is relative to.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], m: int = 5,
                 hidden: int = 32, lam: float = 1e-4, beta: float = 1.0):
        super().__init__()
        if not is_int(m, 2) or not is_int(hidden, 1) or not is_number(
                lam, 0) or not is_number(beta) or not 0 < beta <= 1:
            raise ValueError('learned solver: m must be an int >= 2, hidden '
                             'an int >= 1, lam >= 0 and 0 < beta <= 1; got '
                             f'm={m!r}, hidden={hidden!r}, lam={lam!r}, '
                             f'beta={beta!r}')
        self.m, self.lam, self.beta = m, float(lam), float(beta)
        self.initializer = nn.ModuleList(
            nn.Conv2d(in_channels, c, 1) for c in channels)
        self.mixer = nn.Sequential(
            nn.Linear(m * m + m, hidden), nn.ReLU(),
            nn.Linear(hidden, m + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The unfitted solver: z0 = 0 and classical Anderson mixing."""
        for conv in self.initializer:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.mixer[2].weight)
        nn.init.zeros_(self.mixer[2].bias)

    def initial_state(self, injection: Tensor,
                      like: Sequence[Tensor]) -> List[Tensor]:
        """The initial state, one map per branch of the shapes and dtypes
        of ``like``, from the injection."""
        out = []
        for conv, z in zip(self.initializer, like):
            k = injection.shape[-1] // z.shape[-1]
            x = injection if k == 1 else F.avg_pool2d(injection, k)
            out.append(conv(x.to(conv.weight.dtype)).to(z.dtype))
        return out

    def mixing(self, GG: Tensor, alpha: Tensor, order: Sequence[int]):
        """The corrected mixing weights (B, n) and damping (B, 1), from the
        Gram matrix (B, n, n) of the stored residuals, the least-squares
        weights ``alpha`` (finite) and ``order``, the storage slots from
        the newest to the oldest."""
        bsz, n = alpha.shape
        dtype = self.mixer[0].weight.dtype
        idx = torch.tensor(list(order), device=GG.device)
        G = GG.index_select(1, idx).index_select(2, idx)
        scale = _diagonal(G).mean(1)
        G = (G / (scale[:, None, None] + 1e-30)).to(dtype)
        a = alpha.index_select(1, idx).to(dtype)
        pad = self.m - n
        if pad:
            G = F.pad(G, (0, pad, 0, pad))
            a = F.pad(a, (0, pad))
        out = self.mixer(torch.cat([G.reshape(bsz, -1), a], 1))
        delta = out[:, :n]
        delta = delta - delta.mean(1, keepdim=True)
        inverse = torch.tensor([list(order).index(s) for s in range(n)],
                               device=GG.device)
        alpha = alpha + delta.index_select(1, inverse).to(alpha.dtype)
        beta = self.beta * 2 * torch.sigmoid(out[:, self.m:])
        return alpha, beta.to(alpha.dtype)


class _LearnedAnderson(_Anderson):
    """Anderson with the mixing of a :class:`LearnedSolver`."""

    def __init__(self, net: LearnedSolver):
        super().__init__(net.m, net.lam, net.beta)
        self.net = net

    def _mixing(self, GG: Tensor):
        alpha, good = self._weights(GG)
        n = alpha.shape[1]
        order = [(self.last - j) % n for j in range(n)]
        finite = torch.where(good[:, None], alpha, torch.zeros_like(alpha))
        alpha, beta = self.net.mixing(GG, finite, order)
        return alpha, beta, good


@register_solver('neural', learned=True)
def neural(f, z0, net=None, *, max_iter=7, tol=1e-3, stop_mode='rel',
           check_every=None, divergence=1e4, scales=None):
    """The learned solver (see the module docstring; the common args as
    :func:`fixed_point`'s).

    Args:
        net (LearnedSolver): the fitted network (the implicit layer that
            owns one passes it).
    """
    if net is None:
        raise ValueError("solver 'neural' needs its fitted LearnedSolver "
                         '(the backbone that owns one passes it)')
    return _iterate(f, z0, _LearnedAnderson(net), LoopOptions(
        max_iter, tol, stop_mode, check_every, divergence, scales))


def _rel_dist(z: Tensor, z_star: Tensor) -> Tensor:
    """Mean over the batch of ‖z − z*‖ / ‖z*‖."""
    num = torch.linalg.vector_norm(z - z_star, dim=1)
    return (num / (torch.linalg.vector_norm(z_star, dim=1) + 1e-9)).mean()


def unrolled_losses(net: LearnedSolver, f, z_init: Tensor, z_star: Tensor,
                    steps: int) -> Dict[str, Tensor]:
    """The fitting objective on flat (B, D) states: ``init``, the relative
    distance ‖z0 − z*‖ / ‖z*‖ of the initializer's state ``z_init``
    (differentiable), and ``iterates``, the mean of that distance over the
    ``steps`` learned-Anderson iterates from it. Gradients run through
    the iterates and f; freeze f's parameters to fit the solver alone."""
    method = _LearnedAnderson(net)
    z_star = z_star.detach()
    dists = []
    with static_graph():  # no in-place writes: differentiable
        z = z_init
        fz = f(z)
        g = fz - z
        method.init(z, fz, g)
        ok = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        for _ in range(steps):
            z = method.propose(z, fz, g)
            fz = f(z)
            g = fz - z
            method.observe(z, fz, g, ok)
            dists.append(_rel_dist(z, z_star))
    return dict(init=_rel_dist(z_init, z_star),
                iterates=torch.stack(dists).mean())
