# Copyright (c) mdeq_mm authors. All rights reserved.
"""Damped fixed-point iteration."""
import torch

from ..validation import is_number
from .loop import LoopOptions, _iterate, _Method
from .registry import register_solver


class _FixedPoint(_Method):

    def __init__(self, tau):
        self.tau = tau

    def propose(self, z, fz, g):
        return fz if self.tau == 1 else torch.add(z, g, alpha=self.tau)


def _check(cfg):
    if not is_number(cfg['tau']) or not 0 < cfg['tau'] <= 1:
        raise ValueError(f"tau must be in (0, 1], got {cfg['tau']!r}")


@register_solver('fixed_point', check=_check)
def fixed_point(f, z0, *, max_iter=50, tol=1e-3, stop_mode='rel',
                check_every=None, divergence=1e4, scales=None, tau=1.0):
    """Damped fixed-point iteration z ← z + tau (f(z) − z).

    Args:
        f (Callable): (B, D) -> (B, D).
        z0 (Tensor): initial state (B, D).
        max_iter (int): iterations; at most max_iter + 1 f evaluations.
        tol (float): per-sample stopping tolerance on the residual.
        stop_mode (str): the residual that stops the solve and picks the
            returned iterate: 'abs' (‖f(z) − z‖), 'rel' (divided by
            ‖f(z)‖) or 'initial' (divided by the residual at z0: for a
            linear problem w = Aw + g from w = 0, ‖r‖ / ‖g‖, the usual
            relative residual of a linear solve; the backward solve's
            default).
        check_every (int | None): iterations between host syncs of the
            "all stopped" test; None: 1 on CPU, 4 elsewhere.
        divergence (float): a sample whose absolute residual exceeds this
            multiple of its initial residual stops as 'diverged'.
        scales (Sequence[int] | None): sizes of segments of the state whose
            relative residuals are traced separately (costs two passes over
            the state per iteration; off by default).
        tau (float): damping in (0, 1].

    Returns:
        tuple[Tensor, SolverStats]: the lowest-residual iterate per sample
        and its statistics.
    """
    return _iterate(f, z0, _FixedPoint(tau), LoopOptions(
        max_iter, tol, stop_mode, check_every, divergence, scales))
