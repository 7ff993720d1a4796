# Copyright (c) mdeq_mm authors. All rights reserved.
"""The iteration every solver shares (see the package docstring for the
contract): residuals, per-sample freezing and stop reasons, the
lowest-residual iterate, the statistics, and the static-graph mode.

Inside :func:`static_graph` the same arithmetic runs as a graph fixed by
the arguments (for tracing and ONNX export): every one of the ``max_iter``
iterations runs (frozen samples are masked, as always), nothing asks the
host, nothing is written in place, and the small linear systems of Broyden
and Anderson are solved by unrolled elimination. With ``tol=0`` the
results equal those of the ordinary path up to rounding.
"""
import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..validation import is_int, is_number

REASONS = ('converged', 'max_iter', 'diverged', 'non-finite')
CONVERGED, MAX_ITER, DIVERGED, NON_FINITE = range(4)
STOP_MODES = ('abs', 'rel', 'initial')


class _GraphMode:
    """Whether solvers run as a fixed graph (set by :func:`static_graph`;
    a plain attribute, which traced and compiled code read like any
    Python value)."""
    static = False


@contextlib.contextmanager
def static_graph():
    """Run solvers as a fixed graph: the whole budget, no host syncs, no
    in-place writes, no LAPACK calls (see the module docstring)."""
    previous, _GraphMode.static = _GraphMode.static, True
    try:
        yield
    finally:
        _GraphMode.static = previous


def is_static() -> bool:
    """True inside :func:`static_graph`."""
    return _GraphMode.static


def stop_criterion(stop_mode: str, abs_res: Tensor, rel_res: Tensor,
                   abs_res0: Tensor) -> Tensor:
    """The residual a solve stops on (see ``stop_mode`` in
    :func:`~mdeq_mm.ops.solvers.fixed_point`): absolute, relative, or the
    absolute one over the residual at the start."""
    if stop_mode == 'abs':
        return abs_res
    if stop_mode == 'initial':
        return abs_res / (abs_res0 + 1e-30)
    return rel_res


@dataclass(frozen=True)
class SolverStats:
    """Per-sample statistics of one solve (all tensors have B rows).

    Attributes:
        abs_trace (Tensor): (B, T+1) ‖f(z_k) − z_k‖ for k = 0..T.
        rel_trace (Tensor): (B, T+1) ‖f(z_k) − z_k‖ / ‖f(z_k)‖.
        nfev (Tensor): (B,) f evaluations until the sample stopped.
        lowest_step (Tensor): (B,) step k of the returned iterate.
        abs_lowest (Tensor): (B,) absolute residual of the returned iterate.
        rel_lowest (Tensor): (B,) relative residual of the returned iterate.
        reason (Tensor): (B,) stop reason, an index into ``REASONS``.
        fz (Tensor, optional): (B, D) f at the returned iterate (a
            consumer keeps a copy without it, ``dataclasses.replace``, once
            used).
        rel_trace_scales (Tensor, optional): (B, T+1, S) relative residual
            of each of S segments of the state (e.g. the scales of an MDEQ),
            recorded when the solver is given ``scales``.
        inverse (Callable, optional): v ↦ v H for (B, D) row vectors v, with
            H the solver's estimate of the inverse Jacobian of
            g(z) = f(z) − z at its last iterate (Broyden only; it holds the
            solver's memory: a consumer keeps a copy without it once used).
    """
    abs_trace: Tensor
    rel_trace: Tensor
    nfev: Tensor
    lowest_step: Tensor
    abs_lowest: Tensor
    rel_lowest: Tensor
    reason: Tensor
    fz: Optional[Tensor] = field(default=None, repr=False)
    rel_trace_scales: Optional[Tensor] = field(default=None, repr=False)
    inverse: Optional[Callable[[Tensor], Tensor]] = field(default=None,
                                                          repr=False)

    def lowest_criterion(self, stop_mode: str) -> Tensor:
        """(B,) the stopping criterion ``stop_mode`` at the returned
        iterate."""
        return stop_criterion(stop_mode, self.abs_lowest, self.rel_lowest,
                              self.abs_trace[:, 0])

    @property
    def reasons(self) -> List[str]:
        """Stop reasons as names, one per sample."""
        return [REASONS[i] for i in self.reason.tolist()]

    def summary(self) -> Dict[str, float]:
        """Batch means as Python floats (one host sync), for logging."""
        return dict(
            rel_residual=self.rel_lowest.mean().item(),
            abs_residual=self.abs_lowest.mean().item(),
            nfev=self.nfev.float().mean().item(),
            lowest_step=self.lowest_step.float().mean().item(),
            converged=(self.reason == CONVERGED).float().mean().item(),
            diverged=(self.reason == DIVERGED).sum().item(),
            non_finite=(self.reason == NON_FINITE).sum().item())


class _Method:
    """A solver's update rule; the shared loop in ``_iterate`` drives it.

    ``g`` always denotes the residual f(z) − z of the matching ``z``.
    """

    def init(self, z: Tensor, fz: Tensor, g: Tensor) -> None:
        """Start from the initial state, its f value and residual."""

    def propose(self, z: Tensor, fz: Tensor, g: Tensor) -> Tensor:
        """The next iterate for every row (a new tensor)."""
        raise NotImplementedError

    def observe(self, z: Tensor, fz: Tensor, g: Tensor, ok: Tensor) -> None:
        """Record the newly evaluated state; ``ok`` marks rows that moved
        (the others kept their previous values)."""

    # a method with an inverse-Jacobian estimate defines
    # inverse(v) -> v H (see SolverStats.inverse)
    inverse = None


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=1)


def _merge(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(mask[:, None], new, old)


def _segment_rel(g: Tensor, fz: Tensor, scales) -> Tensor:
    """(B, S) relative residual of each segment of the flat state."""
    return torch.stack([
        _norm(a) / (_norm(b) + 1e-9)
        for a, b in zip(torch.split(g, scales, 1), torch.split(fz, scales, 1))
    ], 1)


@dataclass(frozen=True)
class LoopOptions:
    """The options every solver shares, checked when made (see
    :func:`~mdeq_mm.ops.solvers.fixed_point` for their meaning)."""
    max_iter: int
    tol: float
    stop_mode: str
    check_every: Optional[int] = None
    divergence: float = 1e4
    scales: Optional[Sequence[int]] = None

    def __post_init__(self):
        problems = []
        if not is_int(self.max_iter, 0):
            problems.append(f'max_iter must be an int >= 0, got '
                            f'{self.max_iter!r}')
        if not is_number(self.tol, 0):
            problems.append(f'tol must be a number >= 0, got {self.tol!r}')
        if self.stop_mode not in STOP_MODES:
            problems.append(f'stop_mode must be one of {STOP_MODES}, got '
                            f'{self.stop_mode!r}')
        if self.check_every is not None and not is_int(self.check_every, 1):
            problems.append(f'check_every must be None or an int >= 1, got '
                            f'{self.check_every!r}')
        if not is_number(self.divergence) or not self.divergence > 1:
            problems.append(f'divergence must be a number > 1, got '
                            f'{self.divergence!r}')
        if problems:
            raise ValueError('; '.join(problems))


def _check_state(z0: Tensor) -> None:
    if z0.dim() != 2:
        raise ValueError(f'solvers take flat states of shape (B, D); got '
                         f'{tuple(z0.shape)}. Pack multiscale states with '
                         'mdeq_mm.ops.StatePacker first.')


class _State:
    """The current iterate of every row: z, f(z), g = f(z) − z, residuals
    and whether f(z) was finite."""

    def __init__(self, f, z, dtype):
        fz = f(z).detach().to(dtype)
        self.z, self.fz, self.g = z, fz, fz - z
        a, n = _norm(self.g), _norm(fz)
        self.abs, self.rel = a, a / (n + 1e-9)
        # the norms are finite iff the rows are
        self.ok = torch.isfinite(a) & torch.isfinite(n)

    def take(self, new: '_State', mask: Tensor, masked: bool) -> '_State':
        """``new`` where ``mask``, self elsewhere (``masked=False``: every
        row is known to take ``new``)."""
        if not masked:
            return new
        for name in ('z', 'fz', 'g'):
            setattr(new, name, _merge(mask, getattr(new, name),
                                      getattr(self, name)))
        for name in ('abs', 'rel'):
            setattr(new, name, torch.where(mask, getattr(new, name),
                                           getattr(self, name)))
        return new


class _Best:
    """Per row, the iterate with the lowest stopping criterion so far."""

    def __init__(self, state: _State, crit: Tensor):
        self.z, self.fz, self.crit = state.z, state.fz, crit
        self.abs, self.rel = state.abs, state.rel
        self.step = torch.zeros_like(crit, dtype=torch.long)

    def update(self, state: _State, crit: Tensor, step: int,
               masked: bool) -> None:
        better = crit < self.crit
        self.crit = torch.where(better, crit, self.crit)
        self.abs = torch.where(better, state.abs, self.abs)
        self.rel = torch.where(better, state.rel, self.rel)
        self.step = torch.where(better, step, self.step)
        if not masked and bool(better.all()):
            self.z, self.fz = state.z, state.fz  # never modified in place
        else:
            self.z = _merge(better, state.z, self.z)
            self.fz = _merge(better, state.fz, self.fz)


def _iterate(f: Callable[[Tensor], Tensor], z0: Tensor, method: _Method,
             opts: LoopOptions) -> Tuple[Tensor, SolverStats]:
    """The loop shared by all solvers: residuals, freezing, lowest iterate.

    Row-wise masking (frozen rows, rejected non-finite rows, lowest-iterate
    bookkeeping) uses ``torch.where`` on accelerators, which needs no host
    sync; on the CPU, where a sync is free, the common case in which every
    row moved (or improved) skips the masking passes. In
    :func:`static_graph` every step masks and none asks the host.
    """
    _check_state(z0)
    max_iter, tol, stop_mode = opts.max_iter, opts.tol, opts.stop_mode
    divergence, scales = opts.divergence, opts.scales
    check_every = opts.check_every
    static = is_static()
    # may the loop read masks on the host (free on the CPU) to skip
    # masking passes?
    host_checks = z0.device.type == 'cpu' and not static
    if check_every is None:
        check_every = 1 if z0.device.type == 'cpu' else 4
    dtype = torch.float64 if z0.dtype == torch.float64 else torch.float32
    state = _State(f, z0.detach().to(dtype), dtype)
    method.init(state.z, state.fz, state.g)
    inf = torch.full_like(state.abs, float('inf'))
    state.abs = torch.where(state.ok, state.abs, inf)
    state.rel = torch.where(state.ok, state.rel, inf)
    res0 = state.abs

    def criterion(s):
        return stop_criterion(stop_mode, s.abs, s.rel, res0)

    crit = criterion(state)
    reason = torch.where(
        state.ok, torch.where(crit < tol, CONVERGED, MAX_ITER),
        NON_FINITE).long()
    active = reason == MAX_ITER
    best = _Best(state, crit)
    nfev = torch.ones_like(reason)
    abs_trace, rel_trace = [state.abs], [state.rel]
    scale_trace = [_segment_rel(state.g, state.fz, scales)] if scales \
        else None
    for step in range(1, max_iter + 1):
        if not static and (step % check_every == 0 or step == 1):
            if not bool(active.any()):
                break
        all_active = host_checks and bool(active.all())
        z_new = method.propose(state.z, state.fz, state.g)
        if not all_active:
            z_new = _merge(active, z_new, state.z)
        new = _State(f, z_new, dtype)
        nfev = nfev + active
        # A non-finite row is rejected: it keeps its last good values.
        accepted = new.ok & active
        state = state.take(new, accepted,
                           not (host_checks and bool(accepted.all())))
        method.observe(state.z, state.fz, state.g, accepted)
        crit = criterion(state)
        best.update(state, crit, step, not host_checks)
        new_reason = torch.where(
            ~new.ok, NON_FINITE,
            torch.where(crit < tol, CONVERGED,
                        torch.where(state.abs > divergence * res0, DIVERGED,
                                    MAX_ITER))).long()
        reason = torch.where(active, new_reason, reason)
        active = reason == MAX_ITER
        abs_trace.append(state.abs)
        rel_trace.append(state.rel)
        if scales:
            scale_trace.append(_segment_rel(state.g, state.fz, scales))
    stats = SolverStats(
        abs_trace=torch.stack(abs_trace, 1),
        rel_trace=torch.stack(rel_trace, 1),
        nfev=nfev,
        lowest_step=best.step,
        abs_lowest=best.abs,
        rel_lowest=best.rel,
        reason=reason,
        fz=best.fz,
        rel_trace_scales=torch.stack(scale_trace, 1) if scales else None,
        inverse=method.inverse)
    return best.z, stats
