# Copyright (c) mdeq_mm authors. All rights reserved.
"""Batched root solvers for fixed points z = f(z) on flat states (B, D).

Every solver has the signature ``solver(f, z0, **options) -> (z, stats)``:

* ``f`` maps a (B, D) tensor to a (B, D) tensor, sample by sample;
* ``z`` is, per sample, the lowest-residual iterate seen (detached);
* ``stats`` is a :class:`SolverStats` of per-sample tensors.

Solver arithmetic runs in float32 (or float64 if ``z0`` is float64) whatever
dtype ``f`` returns, so the solvers work under autocast.

Each sample stops on its own: once its residual is below ``tol`` it is frozen
(it stops moving) and the others go on; a sample whose residual explodes
(``divergence`` times its initial residual) or whose f value is not finite
is frozen at its best iterate with the matching stop reason. The loop only
asks the host whether every sample has stopped every ``check_every``
iterations, so a GPU run does not stall on a sync per iteration.
"""
import inspect
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

REASONS = ('converged', 'max_iter', 'diverged', 'non-finite')
CONVERGED, MAX_ITER, DIVERGED, NON_FINITE = range(4)
STOP_MODES = ('abs', 'rel', 'initial')


@dataclass
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
        fz (Tensor, optional): (B, D) f at the returned iterate; consumers
            may drop it (set to None) once used.
        rel_trace_scales (Tensor, optional): (B, T+1, S) relative residual
            of each of S segments of the state (e.g. the scales of an MDEQ),
            recorded when the solver is given ``scales``.
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


def _iterate(f: Callable[[Tensor], Tensor],
             z0: Tensor,
             method: _Method,
             max_iter: int,
             tol: float,
             stop_mode: str,
             check_every: Optional[int],
             divergence: float,
             scales: Optional[Sequence[int]] = None
             ) -> Tuple[Tensor, SolverStats]:
    """The loop shared by all solvers: residuals, freezing, lowest iterate.

    Row-wise masking (frozen rows, rejected non-finite rows, lowest-iterate
    bookkeeping) uses ``torch.where`` on accelerators, which needs no host
    sync; on the CPU, where a sync is free, the common case in which every
    row moved (or improved) skips the masking passes.
    """
    if z0.dim() != 2:
        raise ValueError(f'solvers take flat states of shape (B, D); got '
                         f'{tuple(z0.shape)}. Pack multiscale states with '
                         'mdeq_mm.ops.StatePacker first.')
    if stop_mode not in STOP_MODES:
        raise ValueError(f'stop_mode must be one of {STOP_MODES}, '
                         f'got {stop_mode!r}')
    if max_iter < 0:
        raise ValueError(f'max_iter must be >= 0, got {max_iter}')
    cpu = z0.device.type == 'cpu'
    if check_every is None:
        check_every = 1 if cpu else 4
    dtype = torch.float64 if z0.dtype == torch.float64 else torch.float32
    z = z0.detach().to(dtype)

    def evaluate(x):
        fx = f(x).detach().to(dtype)
        g = fx - x
        a, n = _norm(g), _norm(fx)
        # the norms are finite iff the rows are
        return fx, g, a, a / (n + 1e-9), torch.isfinite(a) & torch.isfinite(n)

    fz, g, abs_res, rel_res, ok = evaluate(z)
    method.init(z, fz, g)
    bsz = z.shape[0]
    inf = torch.full((bsz, ), float('inf'), dtype=dtype, device=z.device)
    abs_res = torch.where(ok, abs_res, inf)
    rel_res = torch.where(ok, rel_res, inf)
    res0 = abs_res

    def criterion(abs_res, rel_res):
        if stop_mode == 'abs':
            return abs_res
        if stop_mode == 'initial':
            return abs_res / (res0 + 1e-30)
        return rel_res

    crit = criterion(abs_res, rel_res)
    reason = torch.where(
        ok, torch.where(crit < tol, CONVERGED, MAX_ITER),
        NON_FINITE).long()
    active = reason == MAX_ITER
    best_z, best_fz, best_crit = z, fz, crit
    best_abs, best_rel = abs_res, rel_res
    best_step = torch.zeros(bsz, dtype=torch.long, device=z.device)
    nfev = torch.ones(bsz, dtype=torch.long, device=z.device)
    abs_trace, rel_trace = [abs_res], [rel_res]
    scale_trace = [_segment_rel(g, fz, scales)] if scales else None
    for step in range(1, max_iter + 1):
        if step % check_every == 0 or step == 1:
            if not bool(active.any()):
                break
        all_active = cpu and bool(active.all())
        z_new = method.propose(z, fz, g)
        if not all_active:
            z_new = _merge(active, z_new, z)
        fz_new, g_new, abs_new, rel_new, ok = evaluate(z_new)
        nfev += active
        # A non-finite row is rejected: it keeps its last good values.
        keep = ok & active
        if cpu and bool(keep.all()):
            z, fz, g, abs_res, rel_res = z_new, fz_new, g_new, abs_new, rel_new
        else:
            z, fz, g = (_merge(keep, a, b)
                        for a, b in ((z_new, z), (fz_new, fz), (g_new, g)))
            abs_res = torch.where(keep, abs_new, abs_res)
            rel_res = torch.where(keep, rel_new, rel_res)
        method.observe(z, fz, g, keep)
        crit = criterion(abs_res, rel_res)
        better = crit < best_crit
        best_crit = torch.where(better, crit, best_crit)
        best_abs = torch.where(better, abs_res, best_abs)
        best_rel = torch.where(better, rel_res, best_rel)
        best_step = torch.where(better, step, best_step)
        if cpu and bool(better.all()):
            best_z, best_fz = z, fz  # tensors are never modified in place
        else:
            best_z, best_fz = _merge(better, z, best_z), _merge(
                better, fz, best_fz)
        new_reason = torch.where(
            ~ok, NON_FINITE,
            torch.where(crit < tol, CONVERGED,
                        torch.where(abs_res > divergence * res0, DIVERGED,
                                    MAX_ITER))).long()
        reason = torch.where(active, new_reason, reason)
        active = reason == MAX_ITER
        abs_trace.append(abs_res)
        rel_trace.append(rel_res)
        if scales:
            scale_trace.append(_segment_rel(g, fz, scales))
    stats = SolverStats(
        abs_trace=torch.stack(abs_trace, 1),
        rel_trace=torch.stack(rel_trace, 1),
        nfev=nfev,
        lowest_step=best_step,
        abs_lowest=best_abs,
        rel_lowest=best_rel,
        reason=reason,
        fz=best_fz,
        rel_trace_scales=torch.stack(scale_trace, 1) if scales else None)
    return best_z, stats


class _FixedPoint(_Method):

    def __init__(self, tau):
        self.tau = tau

    def propose(self, z, fz, g):
        return fz if self.tau == 1 else torch.add(z, g, alpha=self.tau)


def _split(dim: int, device: torch.device) -> int:
    """Chunks P of the state dimension for the history products.

    Products with the stored steps are batched matrix products over
    (B · P) chunks of D / P elements: on the CPU a single long
    matrix-vector product runs on one thread at about half the memory
    bandwidth, while P chunks run in parallel at nearly full bandwidth.
    """
    if device.type != 'cpu':
        return 1
    return next((p for p in (8, 4, 2) if dim % p == 0 and dim // p >= 4096),
                1)


class _Broyden(_Method):
    """Limited-memory "good" Broyden, storing only the steps.

    With unit steps s_k = −H_k g_k (H ≈ inverse Jacobian of g = f − z,
    H_0 = −γ I), the good-Broyden update is the product form
    H_{k+1} = (I + s_{k+1} s_kᵀ / ‖s_k‖²) H_k (Kelley, "Iterative Methods
    for Linear and Nonlinear Equations", §7.3): the steps alone define H.
    w = −H_k g follows from w = γ (g + Σ_{j<k} s_{j+1} c_j), where the c_j
    solve a small triangular system built from Sᵀg and the Gram matrix
    SᵀS, and the next step is s_{k+1} = w / (1 − s_kᵀ w / ‖s_k‖²).

    Per iteration the stored steps are read twice (one batched product
    giving Sᵀg, one giving w, written straight into the next slot); the
    Gram row of the new step follows from Sᵀg and the Gram matrix without
    a pass. Memory: min(history, max_iter + 1) steps of B · D floats.

    The first step is s_0 = g_0 (γ = 1), i.e. z1 = f(z0). When the memory
    is full every row restarts, with γ = −sᵀy / yᵀy fitted to its last
    step s and residual change y (Barzilai–Borwein; 1 if not positive):
    on trained MDEQs these scaled restarts every 16 steps reach 2-5x lower
    residuals than keeping every step (see the README). Dropping only the
    oldest step instead breaks the product form (on ill-conditioned linear
    problems a sliding window needs ~3x the evaluations). A row whose
    update is degenerate or non-finite restarts alone from H = −I (its
    steps are marked dead, its next step is a fixed-point step).
    """

    def __init__(self, history, max_iter):
        # at most max_iter + 1 steps are ever stored
        self.slots = max(2, min(history, max_iter + 1))

    def init(self, z, fz, g):
        bsz, dim = z.shape
        self.bsz, self.P = bsz, _split(dim, z.device)
        self.h = dim // self.P
        # (B · P, slots, D / P): chunk p of step j of row b is at
        # [b · P + p, j]; only written slots are ever read (no zero fill)
        self.S = z.new_empty(bsz * self.P, self.slots, self.h)
        # s_iᵀ s_j; the rows of dead steps are 0
        self.gram = z.new_zeros(bsz, self.slots, self.slots)
        self.gamma = z.new_ones(bsz)  # H_0 = −γ I
        self._restart(g)

    def _restart(self, g):
        """Forget every step; the first one is s_0 = −H_0 g = γ g."""
        torch.mul(self._chunks(g), self._per_chunk(self.gamma)[:, None, None],
                  out=self.S[:, :1])
        self.gram.zero_()
        self.gram[:, 0, 0] = (self.gamma * _norm(g))**2
        self.n = 1  # steps stored
        self.g_prev = g

    def _chunks(self, x):
        """(B · P, 1, D / P) view of a (B, D) state (a copy if f returned
        a tensor whose layout allows no such view)."""
        return x.reshape(self.bsz * self.P, 1, self.h)

    def _per_chunk(self, x):
        """(B, ...) row values → (B · P, ...), matching ``_chunks``."""
        return x.repeat_interleave(self.P, 0) if self.P > 1 else x

    def propose(self, z, fz, g):
        step = self.S[:, self.n - 1:self.n]
        return torch.add(self._chunks(z), step).view_as(z)

    def observe(self, z, fz, g_new, ok):
        n = self.n
        if n == self.slots:  # memory full: every row restarts
            # H_0 = −γ I fitted to the last secant pair, H_0 y ≈ s:
            # γ = −sᵀy / yᵀy (Barzilai–Borwein); 1 where that is not > 0
            s = self.S[:, n - 1:n].reshape(self.bsz, -1)
            y = g_new - self.g_prev
            gamma = -torch.linalg.vecdot(s, y) / _norm(y)**2
            self.gamma = torch.where(
                torch.isfinite(gamma) & (gamma > 0), gamma, 1.)
            self._restart(g_new)
            return
        S, G = self.S[:, :n], self.gram[:, :n, :n]
        # pass 1: Sᵀg_new
        a = torch.bmm(self._chunks(g_new), S.transpose(1, 2))
        a = a.view(self.bsz, self.P, n).sum(1)
        sq = G.diagonal(dim1=1, dim2=2)
        live = sq > 0  # dead steps (restarted rows) have no Gram entries
        a = a * live
        k = n - 1  # index of the newest step
        # c_j ‖s_j‖² − Σ_{i<j} (s_jᵀ s_{i+1}) c_i = s_jᵀ g_new  (j < k);
        # then w = g_new + Σ_j s_{j+1} c_j and Sᵀw = Sᵀg_new + SᵀS_{1:} c
        out = self.S[:, n:n + 1]
        if k:
            lower = torch.tril(G[:, :k, 1:], diagonal=-1)
            system = torch.diag_embed(torch.where(live[:, :k], sq[:, :k],
                                                  1.)) - lower
            c = torch.linalg.solve_triangular(
                system, a[:, :k, None], upper=False)
            s_w = a + torch.bmm(G[:, :, 1:], c)[..., 0]
            # pass 2: w, straight into the next slot
            torch.baddbmm(self._chunks(g_new),
                          self._per_chunk(c[..., 0])[:, None], S[:, 1:],
                          out=out)
        else:
            s_w = a
            out.copy_(self._chunks(g_new))
        # so far with H_0 = −I; with −γ I, w, Sᵀw and the c_j scale by γ
        denom = 1 - self.gamma * s_w[:, k] / torch.where(
            live[:, k], sq[:, k], 1.)
        good = ok & live[:, k] & torch.isfinite(denom) & (
            denom.abs() > 1e-10)
        scale = self.gamma / torch.where(good, denom, 1.)
        out.mul_(self._per_chunk(scale)[:, None, None])
        s_dot = s_w * scale[:, None]  # Sᵀ s_{k+1}, no pass over S
        if z.device.type != 'cpu' or not bool(good.all()):
            # bad rows restart from H = −I: their steps die, they take g_new
            rows = self._per_chunk(good)[:, None, None]
            out.copy_(torch.where(rows, out, self._chunks(g_new)))
            self.gram *= good[:, None, None].to(self.gram.dtype)
            self.gamma = torch.where(good, self.gamma, 1.)
            s_dot = s_dot * good[:, None]
        self.gram[:, n, :n] = self.gram[:, :n, n] = s_dot
        self.gram[:, n, n] = torch.linalg.vector_norm(
            out.view(self.bsz, self.P, self.h), dim=(1, 2))**2
        self.n = n + 1
        self.g_prev = g_new


class _Anderson(_Method):
    """Type-II Anderson acceleration with m past (z, f(z)) pairs.

    Mixing weights α solve min ‖Σ α_i (f(z_i) − z_i)‖² + λ ‖α‖² with
    Σ α_i = 1, λ = lam × the mean ‖f(z_i) − z_i‖² of the history (a
    bordered linear system, torch.linalg.solve_ex). Rows whose
    system is singular or non-finite take a plain damped fixed-point step.
    """

    def __init__(self, m, lam, beta):
        self.m, self.lam, self.beta = m, lam, beta

    def init(self, z, fz, g):
        bsz, dim = z.shape
        self.F = z.new_zeros(bsz, self.m, dim)  # f(z_i)
        self.G = z.new_zeros(bsz, self.m, dim)  # f(z_i) − z_i
        self.F[:, 0], self.G[:, 0] = fz, g
        self.n = 1
        self.last = 0

    def observe(self, z, fz, g, ok):
        slot = self.n % self.m
        self.F[:, slot] = _merge(ok, fz, self.F[:, self.last])
        self.G[:, slot] = _merge(ok, g, self.G[:, self.last])
        self.last = slot
        self.n += 1

    def propose(self, z, fz, g):
        n = min(self.n, self.m)
        fallback = torch.add(z, g, alpha=self.beta)
        if n < 2:
            return fallback
        F, G = self.F[:, :n], self.G[:, :n]
        bsz = z.shape[0]
        H = z.new_zeros(bsz, n + 1, n + 1)
        H[:, 0, 1:] = H[:, 1:, 0] = 1
        GG = torch.bmm(G, G.transpose(1, 2))
        # Regularisation relative to the history's scale, so that tight
        # tolerances do not turn the mixing into plain averaging.
        reg = self.lam * GG.diagonal(dim1=1, dim2=2).mean(1) + 1e-30
        H[:, 1:, 1:] = GG + reg[:, None, None] * torch.eye(
            n, dtype=z.dtype, device=z.device)
        y = z.new_zeros(bsz, n + 1, 1)
        y[:, 0] = 1
        sol, info = torch.linalg.solve_ex(H, y)
        alpha = sol[:, 1:, 0]
        good = (info == 0) & torch.isfinite(alpha).all(1)
        alpha = torch.where(good[:, None], alpha, torch.zeros_like(alpha))
        # β Σα f(z_i) + (1 − β) Σα z_i = Σα f(z_i) − (1 − β) Σα g_i
        mixed = torch.bmm(alpha[:, None], F)[:, 0]
        if self.beta != 1:
            mixed = mixed - (1 - self.beta) * torch.bmm(alpha[:, None],
                                                        G)[:, 0]
        return _merge(good, mixed, fallback)


SOLVERS: Dict[str, Callable] = {}


def register_solver(name: str):
    """Register ``fn(f, z0, *, <options>)`` under ``name``."""

    def deco(fn):
        if name in SOLVERS:
            raise KeyError(f'solver {name!r} is already registered')
        SOLVERS[name] = fn
        return fn

    return deco


def solver_options(name: str) -> Tuple[str, ...]:
    """The option names accepted by a registered solver."""
    sig = inspect.signature(get_solver(name))
    return tuple(p.name for p in sig.parameters.values()
                 if p.kind == p.KEYWORD_ONLY)


def get_solver(name: str) -> Callable:
    if name not in SOLVERS:
        raise KeyError(f'unknown solver {name!r}; valid solvers: '
                       f'{sorted(SOLVERS)}')
    return SOLVERS[name]


def check_solver_cfg(name: str, cfg: dict) -> None:
    """Raise ValueError naming any option ``name`` does not accept."""
    valid = solver_options(name)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f'unknown option(s) {unknown} for solver {name!r}; '
                         f'valid options: {list(valid)}')


def solve(name: str, f: Callable[[Tensor], Tensor], z0: Tensor,
          **cfg) -> Tuple[Tensor, SolverStats]:
    """Solve z = f(z) from z0 with the solver registered as ``name``."""
    check_solver_cfg(name, cfg)
    return get_solver(name)(f, z0, **cfg)


@register_solver('fixed_point')
def fixed_point(f,
                z0,
                *,
                max_iter=50,
                tol=1e-3,
                stop_mode='rel',
                check_every=None,
                divergence=1e4,
                scales=None,
                tau=1.0):
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
    return _iterate(f, z0, _FixedPoint(tau), max_iter, tol, stop_mode,
                    check_every, divergence, scales)


@register_solver('broyden')
def broyden(f,
            z0,
            *,
            max_iter=30,
            tol=1e-3,
            stop_mode='rel',
            check_every=None,
            divergence=1e4,
            scales=None,
            history=16):
    """Limited-memory good Broyden (see :func:`fixed_point` for the args).

    Args:
        history (int | None): number of steps kept before the memory
            restarts with a secant-scaled H_0 (see ``_Broyden``); memory:
            min(history, max_iter + 1) steps of B · D floats, each read
            twice per iteration. None keeps every step of the budget (no
            restart: the reference's and torchdeq's iterates).
    """
    history = max_iter + 1 if history is None else history
    return _iterate(f, z0, _Broyden(history, max_iter), max_iter, tol,
                    stop_mode, check_every, divergence, scales)


@register_solver('anderson')
def anderson(f,
             z0,
             *,
             max_iter=50,
             tol=1e-3,
             stop_mode='rel',
             check_every=None,
             divergence=1e4,
             scales=None,
             m=6,
             lam=1e-4,
             beta=1.0):
    """Anderson acceleration (see :func:`fixed_point` for the common args).

    Args:
        m (int): history size.
        lam (float): Tikhonov regularisation of the mixing system,
            relative to the mean squared residual in the history.
        beta (float): damping of the mixed update.
    """
    return _iterate(f, z0, _Anderson(m, lam, beta), max_iter, tol, stop_mode,
                    check_every, divergence, scales)
