# Copyright (c) mdeq_mm authors. All rights reserved.
"""The implicit (deep-equilibrium) layer and its gradient strategies.

:class:`ImplicitLayer` owns no weights. It is called with a closure
``f(z_list) -> z_list`` over the input injection and the parameters, and an
initial state. It finds z* = f(z*) without building a graph, then attaches
gradients by one of three strategies:

* ``'ift'``: exact implicit gradient. The output is z⁺ = f(z*), tracked by
  autograd; during backward the incoming gradient g is replaced by the
  solution of w = w J_f(z*) + g, found by a backward solver through
  vector-Jacobian products on the graph of that single application (no
  parameter copies, no re-evaluation of f). Autograd then carries w through
  the same application to the parameters and the injection. If the backward
  solve never improves on its start (w = 0) or returns a non-finite value, the
  affected samples fall back to the one-step (phantom, k=1) gradient w = g;
  the fallback is counted in the statistics (and warned about once).
  With ``init='shine'`` the backward solve starts from w₀ = −g H, H the
  forward Broyden's inverse-Jacobian estimate of f − z (SHINE, Ramzi et
  al., ICLR 2022: no f evaluation), and its ``max_iter`` iterations refine
  it (0: w₀ itself, one vector-Jacobian product to measure its residual).
* ``'phantom'``: k damped steps z ← (1 − tau) z + tau f(z) from z*, tracked;
  k = 1 with tau = 1 is the Jacobian-free one-step gradient.
* ``'unrolled'``: f applied ``depth`` times from the initial state with
  ordinary backprop (the weight-tied warm-up mode); no solver, also when
  grad mode is off.

When grad mode is off (evaluation, frozen models) the solver's z* is returned
and no graph is built. The multiscale state is packed into one float32
(B, D) tensor for the solver, so solver arithmetic stays in float32 under
autocast; f itself runs under whatever autocast state is active.
"""
import warnings
from dataclasses import dataclass, field, replace
from typing import (Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

import torch
from torch import Tensor

from .solvers import (CONVERGED, LEARNED_SOLVERS, SOLVERS, SolverStats,
                      budget_of, check_solver_cfg, get_solver, max_iter_for,
                      solver_default, solver_options)
from .validation import check_keys, is_int, is_number

SOLVE_PHASES = ('eval', 'train', 'both', 'backward')
# a solve that stops this many times above its tolerance is reported
FAR = 10.
GRAD_MODES = ('ift', 'phantom', 'unrolled')
ADJOINT_INITS = ('zero', 'shine')
GRAD_OPTIONS = {
    'ift': ('solver', 'solver_cfg', 'init'),
    'phantom': ('k', 'tau'),
    'unrolled': ('depth', ),
}


class StatePacker:
    """Packs a list of (B, C_i, H_i, W_i) tensors into one (B, D) tensor.

    Unpacking returns views (no copies); packing concatenates once.

    Args:
        shapes (Sequence[torch.Size]): per-scale shapes without the batch.
    """

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(s) for s in shapes]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        self.dim = sum(self.sizes)

    @classmethod
    def like(cls, tensors: Sequence[Tensor]) -> 'StatePacker':
        return cls([t.shape[1:] for t in tensors])

    def pack(self, tensors: Sequence[Tensor],
             dtype: Optional[torch.dtype] = None) -> Tensor:
        flat = [t.reshape(t.shape[0], -1) for t in tensors]
        if dtype is not None:
            flat = [t.to(dtype) for t in flat]
        return flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)

    def unpack(self, z: Tensor) -> List[Tensor]:
        parts = torch.split(z, self.sizes, dim=1)
        return [p.view(z.shape[0], *s) for p, s in zip(parts, self.shapes)]

    def per_scale_norm(self, z: Tensor) -> Tensor:
        """‖z_i‖ per sample and scale, shape (B, n_scales)."""
        return torch.stack([
            torch.linalg.vector_norm(p, dim=1)
            for p in torch.split(z, self.sizes, dim=1)
        ], 1)


class BackwardRecord:
    """What the IFT backward solve did, filled once when autograd runs it
    (after the forward call returned its :class:`DEQStats`).

    Attributes:
        stats (SolverStats | None): the backward solve's statistics.
        fallback (int): samples whose backward solve failed and took the
            one-step gradient.
    """
    __slots__ = ('stats', 'fallback')

    def __init__(self):
        self.stats: Optional[SolverStats] = None
        self.fallback = 0

    def record(self, stats: SolverStats, fallback: int) -> None:
        self.stats, self.fallback = stats, fallback


@dataclass(frozen=True)
class DEQStats:
    """What one implicit-layer call did (tensors are per sample), built in
    one place at the end of the call.

    Attributes:
        mode (str): 'ift', 'phantom', 'unrolled' or 'solve' (no graph).
        forward (SolverStats | None): forward solve statistics.
        rel_residual_per_scale (Tensor | None): (B, n_scales) relative
            residual ‖f(z)_i − z_i‖ / ‖f(z)_i‖ at the returned state.
        nfev_tracked (int): f applications with grad in this call (tracked
            by autograd; unrolled applications also without grad).
        corrections (tuple | None): fixed-point correction states (training
            with ``correction``): per recorded solver iterate z_k, the
            tracked damped step (1 − tau) z_k + tau f(z_k), a list like the
            state, earliest first.
        next_state (list | None): f(z*) at the returned state z*, a list
            like the state, without grad (grad mode off only): one step
            past z*, a warm start for the next input.
        adjoint (BackwardRecord | None): filled by the 'ift' backward;
            read through ``backward`` and ``fallback``.
        far (Tensor | None): (B,) bool, samples whose forward solve stopped
            without converging at a stopping criterion over ``FAR`` times
            its tolerance (never with tol = 0, a fixed budget).
    """
    mode: str
    forward: Optional[SolverStats] = None
    rel_residual_per_scale: Optional[Tensor] = None
    nfev_tracked: int = 0
    corrections: Optional[Tuple[List[Tensor], ...]] = None
    next_state: Optional[List[Tensor]] = None
    adjoint: Optional[BackwardRecord] = field(default=None, repr=False)
    far: Optional[Tensor] = field(default=None, repr=False)

    @property
    def backward(self) -> Optional[SolverStats]:
        """The backward solve's statistics ('ift', after backward)."""
        return self.adjoint.stats if self.adjoint else None

    @property
    def fallback(self) -> int:
        """Samples whose backward solve fell back to the one-step
        gradient ('ift', after backward)."""
        return self.adjoint.fallback if self.adjoint else 0

    def summary(self) -> Dict[str, float]:
        """Scalars for logging (host syncs; call after backward)."""
        out = {}
        if self.forward is not None:
            out.update({f'fwd_{k}': v
                        for k, v in self.forward.summary().items()})
        if self.far is not None:
            out['fwd_far'] = float(self.far.sum())
        if self.rel_residual_per_scale is not None:
            means = self.rel_residual_per_scale.mean(0).tolist()
            out.update({f'fwd_rel_residual_s{i}': v
                        for i, v in enumerate(means)})
        if self.backward is not None:
            out.update({f'bwd_{k}': v
                        for k, v in self.backward.summary().items()})
            out['bwd_fallback'] = float(self.fallback)
        out['nfev_tracked'] = float(self.nfev_tracked)
        return out


def _far(stats: SolverStats, cfg: dict, solver: str) -> Optional[Tensor]:
    """(B,) samples that stopped unconverged over ``FAR`` times the
    tolerance of their stopping criterion; None with tol = 0."""
    tol = cfg.get('tol', solver_default(solver, 'tol'))
    if not tol:
        return None
    crit = stats.lowest_criterion(
        cfg.get('stop_mode', solver_default(solver, 'stop_mode')))
    return (stats.reason != CONVERGED) & ~(crit <= FAR * tol)


class _AdjointSolve(torch.autograd.Function):
    """Identity forward; backward solves w = w J + g for the gradient."""

    @staticmethod
    def forward(ctx, z_out, vjp, solver, solver_cfg, record, inverse):
        ctx.vjp, ctx.solver, ctx.solver_cfg = vjp, solver, solver_cfg
        ctx.record, ctx.inverse = record, inverse
        return z_out.view_as(z_out)

    @staticmethod
    def backward(ctx, grad):
        g = grad.detach()
        dtype = torch.float64 if g.dtype == torch.float64 else torch.float32

        def adjoint(w):
            return ctx.vjp(w.to(grad.dtype)).to(dtype) + g.to(dtype)

        if ctx.inverse is None:
            w0 = torch.zeros_like(g, dtype=dtype)
        else:  # SHINE: w J_g = −g with J_g⁻¹ ≈ H
            w0 = -ctx.inverse(g.to(dtype)).to(dtype)
            ctx.inverse = None  # frees the forward solver's memory
        w, bstats = get_solver(ctx.solver)(adjoint, w0, **ctx.solver_cfg)
        # A solve that never beats w = 0, whose residual is ‖g‖ (in
        # absolute residual, whatever the stop mode), would silently zero
        # or corrupt the gradient: fall back to the one-step gradient.
        failed = ((bstats.abs_lowest >= torch.linalg.vector_norm(
            g.to(dtype), dim=1)) & (bstats.reason != CONVERGED))
        failed |= ~torch.isfinite(w).all(1)
        n_failed = int(failed.sum())
        if n_failed:
            # one constant message: Python shows it once per process; the
            # counts are in the statistics (DEQTelemetryHook logs them)
            warnings.warn(
                'DEQ backward solve did not improve on its start for some '
                'samples; they use the one-step (phantom) gradient. Counts: '
                'DEQStats.fallback, logged as deq/bwd_fallback by '
                'DEQTelemetryHook. Consider a warm-up phase, a larger '
                'backward budget or Jacobian regularisation.')
            w = torch.where(failed[:, None], g.to(dtype), w)
        ctx.record.record(replace(bstats, fz=None), n_failed)
        return w.to(grad.dtype), None, None, None, None, None


@dataclass(frozen=True)
class SolverSettings:
    """Everything that decides how an :class:`ImplicitLayer` solves,
    validated as a whole (see :meth:`ImplicitLayer.configure`)."""
    solver: str
    solver_cfg: Mapping
    eval_solver_cfg: Optional[Mapping]
    grad: str
    grad_cfg: Mapping
    solver_dtype: Optional[str]

    def validated(self) -> 'SolverSettings':
        """These settings with the gradient's defaults filled in; raises
        ValueError naming the problem and the valid values."""
        if self.solver not in SOLVERS:
            raise ValueError(f'unknown solver {self.solver!r}; valid '
                             f'solvers: {sorted(SOLVERS)}')
        for name in ('solver_cfg', 'eval_solver_cfg'):
            cfg = getattr(self, name)
            if cfg is not None and not isinstance(cfg, Mapping):
                raise ValueError(
                    f'{name} must be a dict of solver options, got '
                    f'{type(cfg).__name__} {cfg!r}. On the command line give '
                    f'the keys one by one: --cfg-options '
                    f'model.backbone.{name}.max_iter=16 ...')
            if cfg is not None:
                check_solver_cfg(self.solver, cfg)
        if self.solver_dtype not in (None, 'float32', 'float64'):
            raise ValueError(f"solver_dtype must be None, 'float32' or "
                             f"'float64', got {self.solver_dtype!r}")
        return replace(self, grad_cfg=self._grad_cfg())

    def _grad_cfg(self) -> dict:
        grad = self.grad
        if grad not in GRAD_MODES:
            raise ValueError(f'unknown gradient strategy {grad!r}; valid: '
                             f'{list(GRAD_MODES)}')
        if not isinstance(self.grad_cfg, Mapping):
            raise ValueError(f'grad_cfg must be a dict, got '
                             f'{self.grad_cfg!r}')
        cfg = dict(self.grad_cfg)
        check_keys(cfg, GRAD_OPTIONS[grad], f'gradient {grad!r}')
        if grad == 'ift':
            cfg.setdefault('solver', 'broyden')
            cfg.setdefault('init', 'zero')
            if cfg['init'] not in ADJOINT_INITS:
                raise ValueError(f"ift init must be one of {ADJOINT_INITS}, "
                                 f"got {cfg['init']!r}")
            if cfg['init'] == 'shine' and self.solver != 'broyden':
                raise ValueError(
                    "init='shine' starts the backward solve from the forward "
                    "Broyden's inverse-Jacobian estimate; the forward solver "
                    f"is {self.solver!r}: use solver='broyden' forward or "
                    "set the backward init to 'zero' (grad_cfg.init)")
            if cfg['solver'] not in SOLVERS:
                raise ValueError(f"unknown backward solver {cfg['solver']!r}"
                                 f'; valid solvers: {sorted(SOLVERS)}')
            if cfg['solver'] in LEARNED_SOLVERS:
                raise ValueError(
                    f"backward solver {cfg['solver']!r}: a learned solver is "
                    'fitted to the forward problem, not to the adjoint; '
                    "use 'broyden', 'anderson' or 'fixed_point'")
            # the adjoint is a linear solve from w = 0: stop on and keep the
            # iterate with the lowest ‖r‖ / ‖g‖ by default ('rel' divides by
            # ‖w J + g‖, which grows without bound on a diverging solve)
            cfg['solver_cfg'] = dict(dict(stop_mode='initial'),
                                     **cfg.get('solver_cfg', {}))
            check_solver_cfg(cfg['solver'], cfg['solver_cfg'])
        elif grad == 'phantom':
            cfg.setdefault('k', 1)
            cfg.setdefault('tau', 1.0)
            if not is_int(cfg['k'], 1) or not is_number(cfg['tau']) or \
                    not 0 < cfg['tau'] <= 1:
                raise ValueError('phantom gradient needs an int k >= 1 and '
                                 f'0 < tau <= 1, got {cfg}')
        else:
            cfg.setdefault('depth', 5)
            if not is_int(cfg['depth'], 1):
                raise ValueError(f'unrolled depth must be an int >= 1: {cfg}')
        return cfg


_KEEP = object()


class ImplicitLayer:
    """Fixed-point solve plus a gradient strategy; owns no weights.

    Its solver settings have one owner, :meth:`configure` (and
    :meth:`set_solver`, :meth:`set_grad` on top of it): every change is
    validated as a whole, cross-rules included, before it takes effect.
    They are read through properties (``solver``, ``solver_cfg``, ...,
    copies) and :meth:`settings`.

    Args:
        solver (str): forward solver name ('broyden', 'anderson',
            'fixed_point' or any registered one).
        solver_cfg (dict): forward solver options in training.
        eval_solver_cfg (dict | None): options in evaluation (grad off);
            None reuses ``solver_cfg``.
        grad (str): 'ift', 'phantom' or 'unrolled'.
        grad_cfg (dict): options of the gradient strategy:
            'ift': solver (str, default 'broyden'), solver_cfg (dict;
            stop_mode defaults to 'initial': ‖r‖ / ‖g‖), init ('zero',
            default, or 'shine': start from the forward Broyden's
            estimate, which needs solver='broyden' forward);
            'phantom': k (int, default 1), tau (float, default 1.0);
            'unrolled': depth (int, default 5).
        solver_dtype (str | None): 'float64' runs the solvers' arithmetic
            (state, history, updates) in float64 while f keeps the model's
            dtype: float32 Broyden / Anderson lose about 1e-4 relative on
            large states (measured on MDEQ-Small at 512x1024), float64 ones
            about 1e-6. None: float32 (float64 for a float64 model).
        learned_solver (nn.Module | None): the fitted network of a learned
            forward solver (``solver='neural'``, which needs one; see
            :mod:`~mdeq_mm.ops.solvers.learned`). The layer holds it for
            its solves; the model that owns it registers it.
        correction (dict | None): fixed-point correction (Bai et al., DEQ
            flow, CVPR 2022): when gradients are tracked, the forward
            iterates z_k at k = round(i · max_iter / n_states),
            i = 1 .. n_states − 1, reached before the solve stops, each get
            one tracked damped step (1 − tau) z_k + tau f(z_k) (a phantom
            gradient) returned in ``DEQStats.corrections`` for a loss on
            each. Keys: n_states (>= 2, counting z* itself), tau (default
            1.0). None: off.
    """

    def __init__(self,
                 solver: str = 'broyden',
                 solver_cfg: Optional[dict] = None,
                 eval_solver_cfg: Optional[dict] = None,
                 grad: str = 'ift',
                 grad_cfg: Optional[dict] = None,
                 solver_dtype: Optional[str] = None,
                 correction: Optional[dict] = None,
                 learned_solver=None):
        self.learned_solver = learned_solver
        self._settings = self._checked(SolverSettings(
            solver, dict(solver_cfg or {}), eval_solver_cfg, grad,
            dict(grad_cfg or {}), solver_dtype))
        # trace the residual of every scale in every solver iteration
        # (forward and backward); for analysis, costs two passes per step
        self.trace_scales = False
        self.correction = self._correction_cfg(correction)

    @staticmethod
    def _correction_cfg(cfg: Optional[dict]) -> Optional[dict]:
        if cfg is None:
            return None
        check_keys(cfg, ('n_states', 'tau'), 'correction')
        cfg = dict(dict(n_states=2, tau=1.0), **cfg)
        if not is_int(cfg['n_states'], 2) or not is_number(cfg['tau']) or \
                not 0 < cfg['tau'] <= 1:
            raise ValueError('correction needs an int n_states >= 2 (z* '
                             f'counts as one) and 0 < tau <= 1, got {cfg}')
        return cfg

    # -- the settings: one owner --------------------------------------------
    def configure(self, *, solver=_KEEP, solver_cfg=_KEEP,
                  eval_solver_cfg=_KEEP, grad=_KEEP, grad_cfg=_KEEP,
                  solver_dtype=_KEEP) -> None:
        """Replace any of the settings (the constructor's arguments of the
        same names; ``eval_solver_cfg=None`` reuses ``solver_cfg``). The
        result is validated as a whole, cross-rules included (SHINE needs
        a Broyden forward solve), before it takes effect."""
        given = dict(solver=solver, solver_cfg=solver_cfg,
                     eval_solver_cfg=eval_solver_cfg, grad=grad,
                     grad_cfg=grad_cfg, solver_dtype=solver_dtype)
        changes = {k: (dict(v) if isinstance(v, Mapping) else v)
                   for k, v in given.items() if v is not _KEEP}
        self._settings = self._checked(replace(self._settings, **changes))

    def _checked(self, settings: SolverSettings) -> SolverSettings:
        settings = settings.validated()
        if settings.solver in LEARNED_SOLVERS and self.learned_solver is None:
            raise ValueError(
                f'solver {settings.solver!r} runs a learned solver fitted to '
                'this model, and the model has none: fit one with '
                'tools/train_solver.py CONFIG CHECKPOINT, then use the config '
                'and checkpoint it writes')
        return settings

    def set_grad(self, grad: str, grad_cfg: Optional[dict] = None) -> None:
        """Switch the gradient strategy (validated)."""
        self.configure(grad=grad, grad_cfg=dict(grad_cfg or {}))

    def set_solver_dtype(self, dtype: Optional[str]) -> None:
        """The solvers' arithmetic: None or 'float32' (float64 for a float64
        model), or 'float64' whatever the model's dtype."""
        self.configure(solver_dtype=dtype)

    def set_solver(self, phase: str = 'eval', solver: Optional[str] = None,
                   budget: Optional[int] = None, tol: Optional[float] = None,
                   options: Optional[dict] = None,
                   dtype=_KEEP) -> Dict:
        """Set a solve's solver, budget, tolerance and options (and the
        solvers' dtype), validated together: a rejected call changes
        nothing.

        Args:
            phase (str): the forward solve in 'eval' (``eval_solver_cfg``),
                'train' (``solver_cfg``) or 'both'; or the 'backward' solve
                of the 'ift' gradient.
            solver (str | None): a registered solver; None keeps it. The
                kept options the new solver accepts stay (a forward solver
                is shared by both phases: the other phase keeps its options
                that the new solver accepts).
            budget (int | None): f evaluations, >= 1; None keeps
                ``max_iter``.
            tol (float | None): stopping tolerance (0: the whole budget).
            options (dict | None): further options, merged over the kept
                ones; ``budget`` and ``tol`` win.
            dtype (str | None): the solvers' arithmetic, None / 'float32'
                or 'float64' (see ``solver_dtype``); not given: kept.

        Returns:
            dict: :meth:`settings` of ``phase`` ('eval' for 'both').
        """
        if phase not in SOLVE_PHASES:
            raise ValueError(f'phase must be one of {SOLVE_PHASES}, got '
                             f'{phase!r}')
        if solver is not None and solver not in SOLVERS:
            raise ValueError(f'unknown solver {solver!r}; valid solvers: '
                             f'{sorted(SOLVERS)}')

        def updated(old: dict, name: str) -> dict:
            valid = solver_options(name)
            cfg = {k: v for k, v in old.items() if k in valid}
            cfg.update(options or {})
            if budget is not None:
                cfg['max_iter'] = max_iter_for(budget)
            if tol is not None:
                cfg['tol'] = float(tol)
            return cfg

        st = self._settings
        if phase == 'backward':
            if st.grad != 'ift':
                raise ValueError(f"the {st.grad!r} gradient has no backward "
                                 "solve; set_grad('ift') first")
            name = solver or st.grad_cfg['solver']
            self.configure(grad_cfg=dict(
                st.grad_cfg, solver=name,
                solver_cfg=updated(st.grad_cfg['solver_cfg'], name)),
                solver_dtype=dtype)
            return self.settings('backward')
        name = solver or st.solver
        phases = ('train', 'eval') if phase == 'both' else (phase, )
        cfgs = {}
        for p in ('train', 'eval'):
            old = self.phase_cfg(p)
            if p in phases:
                cfgs[p] = updated(old, name)
            elif name != st.solver:  # the other phase follows along
                cfgs[p] = {k: v for k, v in old.items()
                           if k in solver_options(name)}
            else:
                cfgs[p] = old
        keep_eval = 'eval' in phases or st.eval_solver_cfg is not None
        self.configure(solver=name, solver_cfg=cfgs['train'],
                       eval_solver_cfg=cfgs['eval'] if keep_eval else None,
                       solver_dtype=dtype)
        return self.settings('train' if phase == 'train' else 'eval')

    def phase_cfg(self, phase: str) -> dict:
        """A copy of the solver options of 'train', 'eval' (the training
        ones when none are set for evaluation) or 'backward'."""
        st = self._settings
        if phase == 'backward':
            return dict(st.grad_cfg.get('solver_cfg', {}))
        if phase == 'eval' and st.eval_solver_cfg is not None:
            return dict(st.eval_solver_cfg)
        return dict(st.solver_cfg)

    def settings(self, phase: str = 'eval') -> Dict:
        """What a solve of ``phase`` ('eval', 'train' or 'backward') runs
        with: ``dict(solver, solver_cfg, budget, dtype)``, the budget in f
        evaluations."""
        st = self._settings
        name = st.grad_cfg['solver'] if phase == 'backward' else st.solver
        cfg = self.phase_cfg(phase)
        return dict(solver=name, solver_cfg=cfg, budget=budget_of(name, cfg),
                    dtype=st.solver_dtype or 'float32')

    # the settings, read-only (copies of the dicts): set them through the
    # methods above
    solver = property(lambda self: self._settings.solver)
    solver_cfg = property(lambda self: dict(self._settings.solver_cfg))
    eval_solver_cfg = property(lambda self: None if self._settings.
                               eval_solver_cfg is None else dict(
                                   self._settings.eval_solver_cfg))
    grad = property(lambda self: self._settings.grad)
    grad_cfg = property(lambda self: dict(self._settings.grad_cfg))

    @property
    def solver_dtype(self) -> Optional[torch.dtype]:
        """torch.float64 when set so, else None (the state's precision)."""
        return torch.float64 if self._settings.solver_dtype == 'float64' \
            else None

    # -- the call ------------------------------------------------------------
    # torch.compile (mmengine's compile=True) runs the solve eagerly: its
    # host-side stopping tests and the custom backward would break (or
    # recompile) the graph every step; the stem and heads around it compile
    @torch.compiler.disable
    def __call__(self,
                 f: Callable[[List[Tensor]], List[Tensor]],
                 z0: Sequence[Tensor],
                 training: Optional[bool] = None
                 ) -> Tuple[List[Tensor], DEQStats]:
        """Return the equilibrium state (a list like ``z0``) and statistics.

        Args:
            f (Callable): list of tensors -> list of tensors (same shapes).
            z0 (Sequence[Tensor]): initial state.
            training (bool | None): False selects ``eval_solver_cfg``; None
                selects it when grad mode is off.

        Gradients are attached only when torch grad mode is enabled (also in
        evaluation, for users who differentiate the output at test time).
        """
        st = self._settings
        if st.grad == 'unrolled':  # with or without grad
            z = list(z0)
            for _ in range(st.grad_cfg['depth']):
                z = f(z)
            return z, DEQStats('unrolled',
                               nfev_tracked=st.grad_cfg['depth'])
        packer = StatePacker.like(z0)
        state_dtype = z0[0].dtype
        dtype = torch.float64 if torch.float64 in (
            state_dtype, self.solver_dtype) else torch.float32

        def f_flat(z):  # f runs in the state's dtype, the solver in dtype
            return packer.pack(f(packer.unpack(z.to(state_dtype))), dtype)

        track = torch.is_grad_enabled()
        extra = dict(scales=packer.sizes) if self.trace_scales else {}
        # forward iterates for the fixed-point correction (tracked only)
        recorded = [] if track and self.correction is not None else None
        cfg = self.phase_cfg(
            'train' if (track if training is None else training) else 'eval')
        with torch.no_grad():
            solve_f = f_flat if recorded is None else self._recording(
                f_flat, cfg, recorded)
            net = (self.learned_solver, ) if st.solver in LEARNED_SOLVERS \
                else ()
            z_star, fstats = get_solver(st.solver)(
                solve_f, packer.pack(z0, dtype), *net, **cfg, **extra)
            fz = fstats.fz
            per_scale = packer.per_scale_norm(fz - z_star) / (
                packer.per_scale_norm(fz) + 1e-9)
        # f(z*) serves warm starts without grad; the forward Broyden's
        # estimate only the 'ift' backward: both leave the statistics
        inverse = fstats.inverse
        fstats = replace(fstats, fz=None, inverse=None)
        next_state = adjoint = None
        if not track:
            mode, nfev_tracked = 'solve', 0
            next_state = [t.to(a.dtype) for t, a in zip(packer.unpack(fz), z0)]
            z = packer.unpack(z_star)
        elif st.grad == 'phantom':
            mode, nfev_tracked = 'phantom', st.grad_cfg['k']
            # f takes the state's dtype (the solver's may be float64)
            z = self._phantom(f, packer.unpack(z_star.to(state_dtype)))
        else:
            mode, nfev_tracked, adjoint = 'ift', 1, BackwardRecord()
            z = packer.unpack(self._ift(f_flat, z_star, extra, adjoint,
                                        inverse))
        del fz, inverse
        corrections = None
        if recorded:
            corrections = self._corrections(f, packer, state_dtype, recorded)
            nfev_tracked += len(corrections)
        stats = DEQStats(mode, forward=fstats,
                         rel_residual_per_scale=per_scale,
                         nfev_tracked=nfev_tracked, corrections=corrections,
                         next_state=next_state, adjoint=adjoint,
                         far=_far(fstats, cfg, st.solver))
        return [t.to(z0[i].dtype) for i, t in enumerate(z)], stats

    def _recording(self, f_flat, cfg: dict, recorded: List[Tensor]):
        """f_flat that appends to ``recorded`` the iterates it is called at
        whose index is one of the correction's (the solvers evaluate f once
        per iterate, in order: call k is at z_k)."""
        max_iter = budget_of(self.solver, cfg) - 1
        n = self.correction['n_states']
        wanted = {round(i * max_iter / n) for i in range(1, n)} - {0}
        calls = [0]

        def f_rec(z):
            if calls[0] in wanted:
                recorded.append(z.detach())
            calls[0] += 1
            return f_flat(z)
        return f_rec

    def _corrections(self, f, packer: StatePacker, state_dtype,
                     recorded: List[Tensor]) -> Tuple[List[Tensor], ...]:
        """The tracked damped step from each recorded iterate."""
        tau = self.correction['tau']
        out = []
        for z in recorded:
            zs = packer.unpack(z.to(state_dtype))
            fz = f(zs)
            out.append(list(fz) if tau == 1 else
                       [(1 - tau) * a + tau * b for a, b in zip(zs, fz)])
        return tuple(out)

    def _phantom(self, f, z: List[Tensor]) -> List[Tensor]:
        """k tracked damped steps from z*."""
        k, tau = self._settings.grad_cfg['k'], self._settings.grad_cfg['tau']
        for _ in range(k):
            fz = f(z)
            z = fz if tau == 1 else [(1 - tau) * a + tau * b
                                     for a, b in zip(z, fz)]
        return list(z)

    def _ift(self, f_flat, z_star: Tensor, extra: dict,
             adjoint: BackwardRecord,
             inverse: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        """One tracked application; the adjoint solve happens in backward
        on the graph of this application."""
        cfg = self._settings.grad_cfg
        z_star = z_star.requires_grad_()
        z_plus = f_flat(z_star)

        def vjp(w):
            return torch.autograd.grad(
                z_plus, z_star, w, retain_graph=True)[0]

        if cfg['init'] != 'shine':
            inverse = None
        return _AdjointSolve.apply(z_plus, vjp, cfg['solver'],
                                   dict(cfg['solver_cfg'], **extra), adjoint,
                                   inverse)
