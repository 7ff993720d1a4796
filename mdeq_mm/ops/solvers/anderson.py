# Copyright (c) mdeq_mm authors. All rights reserved.
"""Type-II Anderson acceleration."""
from typing import Tuple

import torch
from torch import Tensor

from ..validation import is_int, is_number
from .linalg import _diagonal, _eye, _solve_unpivoted
from .loop import LoopOptions, _iterate, _merge, _Method, is_static
from .registry import register_solver


class _Anderson(_Method):
    """Type-II Anderson acceleration with m past (z, f(z)) pairs.

    Mixing weights α solve min ‖Σ α_i (f(z_i) − z_i)‖² + λ ‖α‖² with
    Σ α_i = 1, λ = lam × the mean ‖f(z_i) − z_i‖² of the history (a
    bordered linear system, torch.linalg.solve_ex; in a static graph the
    equivalent α = x / Σx with (GGᵀ + λI) x = 1, by unrolled elimination).
    Rows whose system is singular or non-finite take a plain damped
    fixed-point step.
    """

    def __init__(self, m, lam, beta):
        self.m, self.lam, self.beta = m, lam, beta

    def init(self, z, fz, g):
        if is_static():  # lists of (B, D) tensors, no in-place writes
            self.F, self.G = [fz], [g]
        else:
            bsz, dim = z.shape
            self.F = z.new_zeros(bsz, self.m, dim)  # f(z_i)
            self.G = z.new_zeros(bsz, self.m, dim)  # f(z_i) − z_i
            self.F[:, 0], self.G[:, 0] = fz, g
        self.n = 1
        self.last = 0

    def observe(self, z, fz, g, ok):
        slot = self.n % self.m
        if is_static():
            F, G = self.F[self.last], self.G[self.last]
            if slot == len(self.F):
                self.F, self.G = self.F + [F], self.G + [G]
            self.F[slot], self.G[slot] = _merge(ok, fz, F), _merge(ok, g, G)
        else:
            self.F[:, slot] = _merge(ok, fz, self.F[:, self.last])
            self.G[:, slot] = _merge(ok, g, self.G[:, self.last])
        self.last = slot
        self.n += 1

    def _weights(self, GG: Tensor) -> Tuple[Tensor, Tensor]:
        """Mixing weights α (B, n) and the rows whose system was solved."""
        bsz, n = GG.shape[:2]
        # Regularisation relative to the history's scale, so that tight
        # tolerances do not turn the mixing into plain averaging.
        reg = self.lam * _diagonal(GG).mean(1) + 1e-30
        if is_static():
            eye = _eye(n, GG.device)
            A = torch.where(eye, GG + reg[:, None, None], GG)
            x = _solve_unpivoted(A, GG.new_ones(bsz, n, 1))[..., 0]
            alpha = x / x.sum(1, keepdim=True)
            return alpha, torch.isfinite(alpha).all(1)
        H = GG.new_zeros(bsz, n + 1, n + 1)
        H[:, 0, 1:] = H[:, 1:, 0] = 1
        H[:, 1:, 1:] = GG + reg[:, None, None] * torch.eye(
            n, dtype=GG.dtype, device=GG.device)
        y = GG.new_zeros(bsz, n + 1, 1)
        y[:, 0] = 1
        sol, info = torch.linalg.solve_ex(H, y)
        alpha = sol[:, 1:, 0]
        return alpha, (info == 0) & torch.isfinite(alpha).all(1)

    def propose(self, z, fz, g):
        n = min(self.n, self.m)
        fallback = torch.add(z, g, alpha=self.beta)
        if n < 2:
            return fallback
        if is_static():
            F, G = torch.stack(self.F[:n], 1), torch.stack(self.G[:n], 1)
        else:
            F, G = self.F[:, :n], self.G[:, :n]
        alpha, beta, good = self._mixing(torch.bmm(G, G.transpose(1, 2)))
        alpha = torch.where(good[:, None], alpha, torch.zeros_like(alpha))
        # β Σα f(z_i) + (1 − β) Σα z_i = Σα f(z_i) − (1 − β) Σα g_i
        mixed = torch.bmm(alpha[:, None], F)[:, 0]
        if isinstance(beta, Tensor) or beta != 1:
            mixed = mixed - (1 - beta) * torch.bmm(alpha[:, None], G)[:, 0]
        return _merge(good, mixed, fallback)

    def _mixing(self, GG: Tensor):
        """Mixing weights (B, n), damping (a float or (B, 1)) and the
        rows whose system was solved."""
        alpha, good = self._weights(GG)
        return alpha, self.beta, good


def _check(cfg):
    problems = []
    if not is_int(cfg['m'], 1):
        problems.append(f"m must be an int >= 1, got {cfg['m']!r}")
    if not is_number(cfg['lam'], 0):
        problems.append(f"lam must be >= 0, got {cfg['lam']!r}")
    if not is_number(cfg['beta']) or not 0 < cfg['beta'] <= 1:
        problems.append(f"beta must be in (0, 1], got {cfg['beta']!r}")
    if problems:
        raise ValueError('; '.join(problems))


@register_solver('anderson', check=_check)
def anderson(f, z0, *, max_iter=50, tol=1e-3, stop_mode='rel',
             check_every=None, divergence=1e4, scales=None, m=6, lam=1e-4,
             beta=1.0):
    """Anderson acceleration (see :func:`fixed_point` for the common args).

    Args:
        m (int): history size.
        lam (float): Tikhonov regularisation of the mixing system,
            relative to the mean squared residual in the history.
        beta (float): damping of the mixed update.
    """
    return _iterate(f, z0, _Anderson(m, lam, beta), LoopOptions(
        max_iter, tol, stop_mode, check_every, divergence, scales))
