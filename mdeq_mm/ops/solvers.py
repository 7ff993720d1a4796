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
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

REASONS = ('converged', 'max_iter', 'diverged', 'non-finite')
CONVERGED, MAX_ITER, DIVERGED, NON_FINITE = range(4)
STOP_MODES = ('abs', 'rel')


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
    """
    abs_trace: Tensor
    rel_trace: Tensor
    nfev: Tensor
    lowest_step: Tensor
    abs_lowest: Tensor
    rel_lowest: Tensor
    reason: Tensor
    fz: Optional[Tensor] = field(default=None, repr=False)

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
    """A solver's update rule; the shared loop in ``_iterate`` drives it."""

    def init(self, z: Tensor, fz: Tensor) -> None:
        """Start from the initial state and its f value."""

    def propose(self, z: Tensor, fz: Tensor) -> Tensor:
        """The next iterate for every row."""
        raise NotImplementedError

    def observe(self, z: Tensor, fz: Tensor, ok: Tensor) -> None:
        """Record the newly evaluated (z, f(z)); ``ok`` marks usable rows."""


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=1)


def _iterate(f: Callable[[Tensor], Tensor], z0: Tensor, method: _Method,
             max_iter: int, tol: float, stop_mode: str,
             check_every: Optional[int],
             divergence: float) -> Tuple[Tensor, SolverStats]:
    """The loop shared by all solvers: residuals, freezing, lowest iterate."""
    if z0.dim() != 2:
        raise ValueError(f'solvers take flat states of shape (B, D); got '
                         f'{tuple(z0.shape)}. Pack multiscale states with '
                         'mdeq_mm.ops.StatePacker first.')
    if stop_mode not in STOP_MODES:
        raise ValueError(f'stop_mode must be one of {STOP_MODES}, '
                         f'got {stop_mode!r}')
    if max_iter < 0:
        raise ValueError(f'max_iter must be >= 0, got {max_iter}')
    if check_every is None:
        check_every = 1 if z0.device.type == 'cpu' else 4
    dtype = torch.float64 if z0.dtype == torch.float64 else torch.float32
    z = z0.detach().to(dtype)

    def evaluate(x):
        return f(x).detach().to(dtype)

    fz = evaluate(z)
    method.init(z, fz)
    bsz = z.shape[0]
    ok = torch.isfinite(fz).all(dim=1)
    inf = torch.full((bsz, ), float('inf'), dtype=dtype, device=z.device)
    abs_res = torch.where(ok, _norm(fz - z), inf)
    rel_res = torch.where(ok, abs_res / (_norm(fz) + 1e-9), inf)
    res0 = abs_res
    crit = abs_res if stop_mode == 'abs' else rel_res
    reason = torch.where(
        ok, torch.where(crit < tol, CONVERGED, MAX_ITER),
        NON_FINITE).long()
    active = reason == MAX_ITER
    best_z, best_fz, best_crit = z.clone(), fz.clone(), crit.clone()
    best_step = torch.zeros(bsz, dtype=torch.long, device=z.device)
    nfev = torch.ones(bsz, dtype=torch.long, device=z.device)
    abs_trace, rel_trace = [abs_res], [rel_res]
    for step in range(1, max_iter + 1):
        if step % check_every == 0 or step == 1:
            if not bool(active.any()):
                break
        act = active[:, None]
        z_new = torch.where(act, method.propose(z, fz), z)
        fz_new = evaluate(z_new)
        nfev += active
        ok = torch.isfinite(fz_new).all(dim=1) & torch.isfinite(z_new).all(1)
        # A non-finite row is rejected: the state keeps its last good values.
        keep = (ok & active)[:, None]
        z = torch.where(keep, z_new, z)
        fz = torch.where(keep, fz_new, fz)
        method.observe(z, fz, ok & active)
        abs_res = _norm(fz - z)
        rel_res = abs_res / (_norm(fz) + 1e-9)
        crit = abs_res if stop_mode == 'abs' else rel_res
        better = crit < best_crit
        best_crit = torch.where(better, crit, best_crit)
        best_step = torch.where(better, torch.full_like(best_step, step),
                                best_step)
        best_z = torch.where(better[:, None], z, best_z)
        best_fz = torch.where(better[:, None], fz, best_fz)
        new_reason = torch.where(
            ~ok, NON_FINITE,
            torch.where(crit < tol, CONVERGED,
                        torch.where(abs_res > divergence * res0, DIVERGED,
                                    MAX_ITER))).long()
        reason = torch.where(active, new_reason, reason)
        active = reason == MAX_ITER
        abs_trace.append(abs_res)
        rel_trace.append(rel_res)
    abs_lowest = _norm(best_fz - best_z)
    stats = SolverStats(
        abs_trace=torch.stack(abs_trace, 1),
        rel_trace=torch.stack(rel_trace, 1),
        nfev=nfev,
        lowest_step=best_step,
        abs_lowest=abs_lowest,
        rel_lowest=abs_lowest / (_norm(best_fz) + 1e-9),
        reason=reason,
        fz=best_fz)
    return best_z, stats


class _FixedPoint(_Method):

    def __init__(self, tau):
        self.tau = tau

    def init(self, z, fz):
        pass

    def propose(self, z, fz):
        return z + self.tau * (fz - z)


class _Broyden(_Method):
    """Limited-memory "good" Broyden on the inverse Jacobian of g = f − z.

    B⁻¹ ≈ −I + Uᵀ V with U, V of shape (B, m, D) holding up to m rank-one
    updates; when they are all used the memory restarts from B⁻¹ = −I with
    a fixed-point step. The first step is z1 = z0 + g(z0) = f(z0). Each
    iteration reads U and V twice: B⁻¹g_new is computed once and serves both
    the Sherman–Morrison update (B⁻¹Δg = B⁻¹g_new + Δz for a unit step) and
    the next direction.
    """

    def __init__(self, history):
        self.m = history

    def init(self, z, fz):
        bsz, dim = z.shape
        self.U = z.new_zeros(bsz, self.m, dim)
        self.V = z.new_zeros(bsz, self.m, dim)
        self.used = 0  # filled slots
        self.g = fz - z
        self.dz = self.g.clone()  # −B⁻¹g with B⁻¹ = −I

    @staticmethod
    def _apply(A, B, x, n):
        """−x + Σ_k A_k (B_k · x) over the first n slots, rows batched."""
        coef = torch.bmm(B[:, :n], x[..., None])  # (B, n, 1)
        return torch.baddbmm(-x[..., None], A[:, :n].transpose(1, 2),
                             coef)[..., 0]

    def _binv(self, x):
        """(−I + Σ u_k v_kᵀ) x."""
        return self._apply(self.U, self.V, x, self.used) if self.used else -x

    def _binv_t(self, x):
        """xᵀ(−I + Σ u_k v_kᵀ), as a column."""
        return self._apply(self.V, self.U, x, self.used) if self.used else -x

    def propose(self, z, fz):
        return z + self.dz

    def observe(self, z, fz, ok):
        g_new = fz - z
        dz = torch.where(ok[:, None], self.dz, torch.zeros_like(self.dz))
        dg = g_new - self.g
        binv_g = self._binv(g_new)
        vt = self._binv_t(dz)
        # u = (Δz − B⁻¹Δg) / (vᵀΔg) with B⁻¹Δg = B⁻¹g_new + Δz (unit step)
        denom = (vt * dg).sum(1)
        good = ok & torch.isfinite(denom) & (denom.abs() > 1e-30)
        scale = torch.where(good, 1. / torch.where(good, denom, 1.), 0.)
        u = torch.nan_to_num(-binv_g * scale[:, None], 0., 0., 0.)
        vt = torch.nan_to_num(vt * good[:, None], 0., 0., 0.)
        self.U[:, self.used] = u
        self.V[:, self.used] = vt
        self.used += 1
        self.g = g_new
        if self.used == self.m:
            # Memory full: restart from B⁻¹ = −I (evicting single old
            # updates instead makes the inverse inconsistent and diverges).
            self.used = 0
            self.dz = g_new.clone()
            return
        # next direction −B⁻¹_new g_new = −(B⁻¹g_new + u (vᵀ g_new))
        dz_new = binv_g + u * (vt * g_new).sum(1, keepdim=True)
        self.dz = torch.nan_to_num(-dz_new, 0., 0., 0.)


class _Anderson(_Method):
    """Type-II Anderson acceleration with m past (z, f(z)) pairs.

    Mixing weights α solve min ‖Σ α_i (f(z_i) − z_i)‖² + λ ‖α‖² with
    Σ α_i = 1, λ = lam × the mean ‖f(z_i) − z_i‖² of the history (a bordered linear system, torch.linalg.solve_ex). Rows whose
    system is singular or non-finite take a plain damped fixed-point step.
    """

    def __init__(self, m, lam, beta):
        self.m, self.lam, self.beta = m, lam, beta

    def init(self, z, fz):
        bsz, dim = z.shape
        self.X = z.new_zeros(bsz, self.m, dim)
        self.F = z.new_zeros(bsz, self.m, dim)
        self.X[:, 0], self.F[:, 0] = z, fz
        self.n = 1
        self.last = 0

    def observe(self, z, fz, ok):
        slot = self.n % self.m
        self.X[:, slot] = torch.where(ok[:, None], z, self.X[:, self.last])
        self.F[:, slot] = torch.where(ok[:, None], fz, self.F[:, self.last])
        self.last = slot
        self.n += 1

    def propose(self, z, fz):
        n = min(self.n, self.m)
        fallback = z + self.beta * (fz - z)
        if n < 2:
            return fallback
        X, F = self.X[:, :n], self.F[:, :n]
        G = F - X
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
        mixed = (self.beta * torch.bmm(alpha[:, None], F)[:, 0] +
                 (1 - self.beta) * torch.bmm(alpha[:, None], X)[:, 0])
        return torch.where(good[:, None], mixed, fallback)


SOLVERS: Dict[str, Callable] = {}
COMMON_OPTIONS = ('max_iter', 'tol', 'stop_mode', 'check_every',
                  'divergence')


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
                tau=1.0):
    """Damped fixed-point iteration z ← z + tau (f(z) − z).

    Args:
        f (Callable): (B, D) -> (B, D).
        z0 (Tensor): initial state (B, D).
        max_iter (int): iterations; at most max_iter + 1 f evaluations.
        tol (float): per-sample stopping tolerance on the residual.
        stop_mode (str): 'abs' (‖f(z) − z‖) or 'rel' (divided by ‖f(z)‖).
        check_every (int | None): iterations between host syncs of the
            "all stopped" test; None: 1 on CPU, 4 elsewhere.
        divergence (float): a sample whose absolute residual exceeds this
            multiple of its initial residual stops as 'diverged'.
        tau (float): damping in (0, 1].

    Returns:
        tuple[Tensor, SolverStats]: the lowest-residual iterate per sample
        and its statistics.
    """
    return _iterate(f, z0, _FixedPoint(tau), max_iter, tol, stop_mode,
                    check_every, divergence)


@register_solver('broyden')
def broyden(f,
            z0,
            *,
            max_iter=30,
            tol=1e-3,
            stop_mode='rel',
            check_every=None,
            divergence=1e4,
            history=None):
    """Limited-memory good Broyden (see :func:`fixed_point` for the args).

    Args:
        history (int | None): number of rank-one updates kept before the
            memory restarts (memory is 2 · history · B · D floats); None
            keeps min(max_iter, 30).
    """
    history = min(max_iter, 30) if history is None else history
    return _iterate(f, z0, _Broyden(max(1, history)), max_iter, tol,
                    stop_mode, check_every, divergence)


@register_solver('anderson')
def anderson(f,
             z0,
             *,
             max_iter=50,
             tol=1e-3,
             stop_mode='rel',
             check_every=None,
             divergence=1e4,
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
                    check_every, divergence)
