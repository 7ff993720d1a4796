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

Inside :func:`static_graph` the same arithmetic runs as a graph fixed by
the arguments (for tracing and ONNX export): every one of the ``max_iter``
iterations runs (frozen samples are masked, as always), nothing asks the
host, nothing is written in place, and the small linear systems of Broyden
and Anderson are solved by unrolled elimination. With ``tol=0`` the
results equal those of the ordinary path up to rounding.
"""
import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .validation import check_keys

REASONS = ('converged', 'max_iter', 'diverged', 'non-finite')
CONVERGED, MAX_ITER, DIVERGED, NON_FINITE = range(4)
STOP_MODES = ('abs', 'rel', 'initial')
_STATIC = [False]


@contextlib.contextmanager
def static_graph():
    """Run solvers as a fixed graph: the whole budget, no host syncs, no
    in-place writes, no LAPACK calls (see the module docstring)."""
    previous, _STATIC[0] = _STATIC[0], True
    try:
        yield
    finally:
        _STATIC[0] = previous


def is_static() -> bool:
    """True inside :func:`static_graph`."""
    return _STATIC[0]


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


def _check_args(z0: Tensor, stop_mode: str, max_iter: int) -> None:
    if z0.dim() != 2:
        raise ValueError(f'solvers take flat states of shape (B, D); got '
                         f'{tuple(z0.shape)}. Pack multiscale states with '
                         'mdeq_mm.ops.StatePacker first.')
    if stop_mode not in STOP_MODES:
        raise ValueError(f'stop_mode must be one of {STOP_MODES}, '
                         f'got {stop_mode!r}')
    if max_iter < 0:
        raise ValueError(f'max_iter must be >= 0, got {max_iter}')


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

    def keep(self, new: '_State', mask: Tensor, masked: bool) -> '_State':
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
    row moved (or improved) skips the masking passes. In
    :func:`static_graph` every step masks and none asks the host.
    """
    _check_args(z0, stop_mode, max_iter)
    static = is_static()
    # may the loop ask the host (free on the CPU) to skip masking passes?
    ask = z0.device.type == 'cpu' and not static
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
        if stop_mode == 'abs':
            return s.abs
        if stop_mode == 'initial':
            return s.abs / (res0 + 1e-30)
        return s.rel

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
        all_active = ask and bool(active.all())
        z_new = method.propose(state.z, state.fz, state.g)
        if not all_active:
            z_new = _merge(active, z_new, state.z)
        new = _State(f, z_new, dtype)
        nfev = nfev + active
        # A non-finite row is rejected: it keeps its last good values.
        keep = new.ok & active
        state = state.keep(new, keep, not (ask and bool(keep.all())))
        method.observe(state.z, state.fz, state.g, keep)
        crit = criterion(state)
        best.update(state, crit, step, not ask)
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
        rel_trace_scales=torch.stack(scale_trace, 1) if scales else None)
    return best.z, stats


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


def _strictly_lower(k: int, device) -> Tensor:
    """(k, k) bool mask of the entries below the diagonal."""
    i = torch.arange(k, device=device)
    return i[:, None] > i[None, :]


def _diagonal(M: Tensor) -> Tensor:
    """(B, n) diagonal of (B, n, n) matrices (a masked sum in a static
    graph: ONNX has no diagonal before opset 13)."""
    if not is_static():
        return M.diagonal(dim1=1, dim2=2)
    return torch.where(_eye(M.shape[1], M.device), M, 0.).sum(2)


def _eye(n: int, device) -> Tensor:
    """(n, n) bool identity."""
    i = torch.arange(n, device=device)
    return i[:, None] == i[None, :]


def _solve_lower(L: Tensor, b: Tensor) -> Tensor:
    """Solve L x = b for batched lower-triangular L (B, k, k), b (B, k, 1):
    LAPACK normally, forward substitution unrolled in a static graph."""
    if not is_static():
        return torch.linalg.solve_triangular(L, b, upper=False)
    x = []
    for j in range(L.shape[1]):
        r = b[:, j, 0]
        for i in range(j):
            r = r - L[:, j, i] * x[i]
        x.append(r / L[:, j, j])
    return torch.stack(x, 1)[..., None]


def _solve_unpivoted(A: Tensor, b: Tensor) -> Tensor:
    """Gaussian elimination without pivoting, unrolled: A (B, n, n),
    b (B, n, 1). Stable when the leading blocks of A are positive
    definite (the static graph's replacement of ``torch.linalg.solve``)."""
    n = A.shape[1]
    rows = [A[:, i] for i in range(n)]
    rhs = [b[:, i, 0] for i in range(n)]
    for j in range(n):
        for i in range(j + 1, n):
            m = rows[i][:, j] / rows[j][:, j]
            rows[i] = rows[i] - m[:, None] * rows[j]
            rhs[i] = rhs[i] - m * rhs[j]
    x = [None] * n
    for i in reversed(range(n)):
        r = rhs[i]
        for j in range(i + 1, n):
            r = r - rows[i][:, j] * x[j]
        x[i] = r / rows[i][:, i]
    return torch.stack(x, 1)[..., None]


class _BufferSteps:
    """Broyden steps in one (B · P, slots, D / P) buffer: chunk p of step j
    of row b is at [b · P + p, j]; the products with the steps are batched
    matrix products written straight into the buffer (see ``_split``)."""

    def __init__(self, z: Tensor, slots: int):
        bsz, dim = z.shape
        self.bsz, self.P = bsz, _split(dim, z.device)
        self.h = dim // self.P
        # only written slots are ever read (no zero fill)
        self.S = z.new_empty(bsz * self.P, slots, self.h)

    def _chunks(self, x):
        """(B · P, 1, D / P) view of a (B, D) state (a copy if f returned
        a tensor whose layout allows no such view)."""
        return x.reshape(self.bsz * self.P, 1, self.h)

    def _per_chunk(self, x):
        """(B, ...) row values → (B · P, ...), matching ``_chunks``."""
        return x.repeat_interleave(self.P, 0) if self.P > 1 else x

    def first(self, g, gamma):
        torch.mul(self._chunks(g), self._per_chunk(gamma)[:, None, None],
                  out=self.S[:, :1])

    def step(self, j):
        return self.S[:, j].reshape(self.bsz, -1)

    def add_step(self, z, j):
        return torch.add(self._chunks(z), self.S[:, j:j + 1]).view_as(z)

    def dots(self, g, n):
        a = torch.bmm(self._chunks(g), self.S[:, :n].transpose(1, 2))
        return a.view(self.bsz, self.P, n).sum(1)

    def put(self, n, g, c, scale, good, masked):
        """Step n = scale · (g + Σ_j s_{j+1} c_j), g on rows not ``good``;
        returns its squared norm."""
        out = self.S[:, n:n + 1]
        if c is None:
            out.copy_(self._chunks(g))
        else:
            torch.baddbmm(self._chunks(g),
                          self._per_chunk(c[..., 0])[:, None],
                          self.S[:, 1:n], out=out)
        out.mul_(self._per_chunk(scale)[:, None, None])
        if masked:
            rows = self._per_chunk(good)[:, None, None]
            out.copy_(torch.where(rows, out, self._chunks(g)))
        return torch.linalg.vector_norm(
            out.view(self.bsz, self.P, self.h), dim=(1, 2))**2


class _ListSteps:
    """Broyden steps as a list of (B, D) tensors, for static graphs: the
    same products as :class:`_BufferSteps`, with no in-place writes."""

    def __init__(self, z: Tensor, slots: int):
        self.S: List[Tensor] = []

    def first(self, g, gamma):
        self.S = [g * gamma[:, None]]

    def step(self, j):
        return self.S[j]

    def add_step(self, z, j):
        return z + self.S[j]

    def dots(self, g, n):
        return torch.stack([(s * g).sum(1) for s in self.S[:n]], 1)

    def put(self, n, g, c, scale, good, masked):
        w = g
        if c is not None:
            for j, s in enumerate(self.S[1:n]):
                w = w + c[:, j] * s
        w = torch.where(good[:, None], w * scale[:, None], g)
        self.S = self.S[:n] + [w]
        return (w * w).sum(1)


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
        self.bsz = z.shape[0]
        store = _ListSteps if is_static() else _BufferSteps
        self.steps = store(z, self.slots)
        self.slot = torch.arange(self.slots, device=z.device)
        self.gamma = z.new_ones(self.bsz)  # H_0 = −γ I
        self._restart(g)

    def _set_gram(self, gram, n, dots, sq):
        """Gram matrix with row and column n set to (dots, sq) and the
        entries past n of that row and column zero (no in-place write)."""
        row = torch.cat(
            [dots, sq[:, None],
             dots.new_zeros(self.bsz, self.slots - n - 1)], 1)
        sel = self.slot == n
        gram = torch.where(sel[None, :, None], row[:, None, :], gram)
        return torch.where(sel[None, None, :], row[:, :, None], gram)

    def _restart(self, g):
        """Forget every step; the first one is s_0 = −H_0 g = γ g."""
        self.steps.first(g, self.gamma)
        # s_iᵀ s_j; the rows of dead steps are 0
        self.gram = self._set_gram(
            g.new_zeros(self.bsz, self.slots, self.slots), 0,
            g.new_zeros(self.bsz, 0), (self.gamma * _norm(g))**2)
        self.n = 1  # steps stored
        self.g_prev = g

    def propose(self, z, fz, g):
        return self.steps.add_step(z, self.n - 1)

    def observe(self, z, fz, g_new, ok):
        n = self.n
        if n == self.slots:  # memory full: every row restarts
            # H_0 = −γ I fitted to the last secant pair, H_0 y ≈ s:
            # γ = −sᵀy / yᵀy (Barzilai–Borwein); 1 where that is not > 0
            s = self.steps.step(n - 1)
            y = g_new - self.g_prev
            gamma = -(s * y).sum(1) / _norm(y)**2
            self.gamma = torch.where(
                torch.isfinite(gamma) & (gamma > 0), gamma, 1.)
            self._restart(g_new)
            return
        G = self.gram[:, :n, :n]
        # pass 1: Sᵀg_new
        a = self.steps.dots(g_new, n)
        sq = _diagonal(G)
        live = sq > 0  # dead steps (restarted rows) have no Gram entries
        a = a * live
        k = n - 1  # index of the newest step
        # c_j ‖s_j‖² − Σ_{i<j} (s_jᵀ s_{i+1}) c_i = s_jᵀ g_new  (j < k);
        # then w = g_new + Σ_j s_{j+1} c_j and Sᵀw = Sᵀg_new + SᵀS_{1:} c
        c = None
        s_w = a
        if k:
            lower = torch.where(_strictly_lower(k, a.device), G[:, :k, 1:],
                                0.)
            eye = _eye(k, a.device)
            diag = torch.where(
                eye, torch.where(live[:, :k], sq[:, :k], 1.)[:, None, :], 0.)
            c = _solve_lower(diag - lower, a[:, :k, None])
            s_w = a + torch.bmm(G[:, :, 1:], c)[..., 0]
        # so far with H_0 = −I; with −γ I, w, Sᵀw and the c_j scale by γ
        denom = 1 - self.gamma * s_w[:, k] / torch.where(
            live[:, k], sq[:, k], 1.)
        good = ok & live[:, k] & torch.isfinite(denom) & (
            denom.abs() > 1e-10)
        scale = self.gamma / torch.where(good, denom, 1.)
        s_dot = s_w * scale[:, None]  # Sᵀ s_{k+1}, no pass over S
        # bad rows restart from H = −I: their steps die, they take g_new
        masked = z.device.type != 'cpu' or is_static() or not bool(
            good.all())
        # pass 2: w, straight into the next slot
        sq_new = self.steps.put(n, g_new, c, scale, good, masked)
        if masked:
            self.gram = self.gram * good[:, None, None].to(self.gram.dtype)
            self.gamma = torch.where(good, self.gamma, 1.)
            s_dot = s_dot * good[:, None]
        self.gram = self._set_gram(self.gram, n, s_dot, sq_new)
        self.n = n + 1
        self.g_prev = g_new


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
        alpha, good = self._weights(torch.bmm(G, G.transpose(1, 2)))
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
    check_keys(cfg, solver_options(name), f'solver {name!r}')


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
