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
from dataclasses import dataclass
from typing import (Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

import torch
from torch import Tensor

from .solvers import (CONVERGED, SolverStats, check_solver_cfg, solve,
                      solver_default)
from .validation import check_keys

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


@dataclass
class DEQStats:
    """What one implicit-layer call did (tensors are per sample).

    Attributes:
        mode (str): 'ift', 'phantom', 'unrolled' or 'solve' (no graph).
        forward (SolverStats | None): forward solve statistics.
        rel_residual_per_scale (Tensor | None): (B, n_scales) relative
            residual ‖f(z)_i − z_i‖ / ‖f(z)_i‖ at the returned state.
        backward (SolverStats | None): backward solve statistics, filled in
            during backward ('ift' only).
        fallback (int): samples whose backward solve failed and fell back to
            the one-step gradient (filled in during backward).
        nfev_tracked (int): f applications with grad in this call (tracked
            by autograd; unrolled applications also without grad).
        jac_frobenius (Tensor | None): (B,) estimate of ‖J_f‖²_F / D at the
            returned state, when a Jacobian loss was computed.
        corrections (list | None): fixed-point correction states (training
            with ``correction``): per recorded solver iterate z_k, the
            tracked damped step (1 − tau) z_k + tau f(z_k), a list like the
            state, earliest first.
        next_state (list | None): f(z*) at the returned state z*, a list
            like the state, without grad (grad mode off only): one step
            past z*, the warm start MDEQ keeps for the next frame.
    """
    mode: str
    forward: Optional[SolverStats] = None
    rel_residual_per_scale: Optional[Tensor] = None
    backward: Optional[SolverStats] = None
    fallback: int = 0
    nfev_tracked: int = 0
    jac_frobenius: Optional[Tensor] = None
    corrections: Optional[List[List[Tensor]]] = None
    next_state: Optional[List[Tensor]] = None

    def summary(self) -> Dict[str, float]:
        """Scalars for logging (host syncs; call after backward)."""
        out = {}
        if self.forward is not None:
            out.update({f'fwd_{k}': v
                        for k, v in self.forward.summary().items()})
        if self.rel_residual_per_scale is not None:
            means = self.rel_residual_per_scale.mean(0).tolist()
            out.update({f'fwd_rel_residual_s{i}': v
                        for i, v in enumerate(means)})
        if self.backward is not None:
            out.update({f'bwd_{k}': v
                        for k, v in self.backward.summary().items()})
            out['bwd_fallback'] = float(self.fallback)
        out['nfev_tracked'] = float(self.nfev_tracked)
        if self.jac_frobenius is not None:
            out['jac_frobenius'] = self.jac_frobenius.mean().item()
        return out


class _AdjointSolve(torch.autograd.Function):
    """Identity forward; backward solves w = w J + g for the gradient."""

    @staticmethod
    def forward(ctx, z_out, vjp, solver, solver_cfg, stats, inverse):
        ctx.vjp, ctx.solver, ctx.solver_cfg = vjp, solver, solver_cfg
        ctx.stats, ctx.inverse = stats, inverse
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
        w, bstats = solve(ctx.solver, adjoint, w0, **ctx.solver_cfg)
        bstats.fz = None
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
        ctx.stats.backward = bstats
        ctx.stats.fallback = n_failed
        return w.to(grad.dtype), None, None, None, None, None


class ImplicitLayer:
    """Fixed-point solve plus a gradient strategy; owns no weights.

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
                 correction: Optional[dict] = None):
        self.solver = solver
        for name, cfg in (('solver_cfg', solver_cfg),
                          ('eval_solver_cfg', eval_solver_cfg)):
            if cfg is not None and not isinstance(cfg, Mapping):
                raise ValueError(
                    f'{name} must be a dict of solver options, got '
                    f'{type(cfg).__name__} {cfg!r}. On the command line give '
                    f'the keys one by one: --cfg-options '
                    f'model.backbone.{name}.max_iter=16 ...')
        self.solver_cfg = dict(solver_cfg or {})
        self.eval_solver_cfg = (None if eval_solver_cfg is None else
                                dict(eval_solver_cfg))
        check_solver_cfg(solver, self.solver_cfg)
        if self.eval_solver_cfg is not None:
            check_solver_cfg(solver, self.eval_solver_cfg)
        self.set_grad(grad, grad_cfg)
        # trace the residual of every scale in every solver iteration
        # (forward and backward); for analysis, costs two passes per step
        self.trace_scales = False
        self.set_solver_dtype(solver_dtype)
        self.correction = self._correction_cfg(correction)

    @staticmethod
    def _correction_cfg(cfg: Optional[dict]) -> Optional[dict]:
        if cfg is None:
            return None
        check_keys(cfg, ('n_states', 'tau'), 'correction')
        cfg = dict(dict(n_states=2, tau=1.0), **cfg)
        if cfg['n_states'] < 2 or not 0 < cfg['tau'] <= 1:
            raise ValueError('correction needs n_states >= 2 (z* counts as '
                             f'one) and 0 < tau <= 1, got {cfg}')
        return cfg

    def set_solver_dtype(self, dtype: Optional[str]) -> None:
        """The solvers' arithmetic: None or 'float32' (float64 for a float64
        model), or 'float64' whatever the model's dtype (f itself keeps
        the model's; see the class docstring)."""
        if dtype not in (None, 'float32', 'float64'):
            raise ValueError(f"solver_dtype must be None, 'float32' or "
                             f"'float64', got {dtype!r}")
        self.solver_dtype = torch.float64 if dtype == 'float64' else None

    def set_grad(self, grad: str, grad_cfg: Optional[dict] = None) -> None:
        """Switch the gradient strategy (validated)."""
        if grad not in GRAD_MODES:
            raise ValueError(f'unknown gradient strategy {grad!r}; valid: '
                             f'{list(GRAD_MODES)}')
        grad_cfg = dict(grad_cfg or {})
        check_keys(grad_cfg, GRAD_OPTIONS[grad], f'gradient {grad!r}')
        if grad == 'ift':
            grad_cfg.setdefault('solver', 'broyden')
            grad_cfg.setdefault('init', 'zero')
            if grad_cfg['init'] not in ADJOINT_INITS:
                raise ValueError(f"ift init must be one of {ADJOINT_INITS}, "
                                 f"got {grad_cfg['init']!r}")
            if grad_cfg['init'] == 'shine' and self.solver != 'broyden':
                raise ValueError(
                    "init='shine' starts the backward solve from the forward "
                    "Broyden's inverse-Jacobian estimate; the forward solver "
                    f"is {self.solver!r}: use solver='broyden' or init='zero'")
            # the adjoint is a linear solve from w = 0: stop on and keep the
            # iterate with the lowest ‖r‖ / ‖g‖ by default ('rel' divides by
            # ‖w J + g‖, which grows without bound on a diverging solve)
            grad_cfg['solver_cfg'] = dict(
                dict(stop_mode='initial'), **grad_cfg.get('solver_cfg', {}))
            check_solver_cfg(grad_cfg['solver'], grad_cfg['solver_cfg'])
        elif grad == 'phantom':
            grad_cfg.setdefault('k', 1)
            grad_cfg.setdefault('tau', 1.0)
            if grad_cfg['k'] < 1 or not 0 < grad_cfg['tau'] <= 1:
                raise ValueError('phantom gradient needs k >= 1 and '
                                 f'0 < tau <= 1, got {grad_cfg}')
        else:
            grad_cfg.setdefault('depth', 5)
            if grad_cfg['depth'] < 1:
                raise ValueError(f'unrolled depth must be >= 1: {grad_cfg}')
        self.grad, self.grad_cfg = grad, grad_cfg

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
        if self.grad == 'unrolled':  # with or without grad
            z = list(z0)
            for _ in range(self.grad_cfg['depth']):
                z = f(z)
            return z, DEQStats('unrolled',
                               nfev_tracked=self.grad_cfg['depth'])
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
        z_star, stats = self._solve(f_flat, packer, packer.pack(z0, dtype),
                                    track if training is None else training,
                                    extra, recorded)
        # the forward Broyden's estimate: only the 'ift' backward uses it
        inverse, stats.forward.inverse = stats.forward.inverse, None
        # f(z*): only warm starts without grad use it (freed before a
        # tracked pass, as it was)
        fz, stats.forward.fz = stats.forward.fz, None
        if not track:
            stats.next_state = [t.to(a.dtype)
                                for t, a in zip(packer.unpack(fz), z0)]
        del fz
        if not track:
            stats.mode = 'solve'
            z = packer.unpack(z_star)
        elif self.grad == 'phantom':
            # f takes the state's dtype (the solver's may be float64)
            z = self._phantom(f, packer.unpack(z_star.to(state_dtype)),
                              stats)
        else:
            z = packer.unpack(self._ift(f_flat, z_star, stats, extra,
                                        inverse))
        if recorded:
            self._corrections(f, packer, state_dtype, stats, recorded)
        return [t.to(z0[i].dtype) for i, t in enumerate(z)], stats

    def _solve(self, f_flat, packer: StatePacker, z0: Tensor, training: bool,
               extra: dict, recorded: Optional[List[Tensor]] = None
               ) -> Tuple[Tensor, DEQStats]:
        """The forward solve without a graph (training or evaluation
        options), with its statistics and the per-scale residuals."""
        cfg = self.solver_cfg
        if not training and self.eval_solver_cfg is not None:
            cfg = self.eval_solver_cfg
        if recorded is not None:
            f_flat = self._recording(f_flat, cfg, recorded)
        with torch.no_grad():
            z_star, fstats = solve(self.solver, f_flat, z0, **cfg, **extra)
            fz = fstats.fz
            per_scale = packer.per_scale_norm(fz - z_star) / (
                packer.per_scale_norm(fz) + 1e-9)
        return z_star, DEQStats(self.grad, forward=fstats,
                                rel_residual_per_scale=per_scale)

    def _recording(self, f_flat, cfg: dict, recorded: List[Tensor]):
        """f_flat that appends to ``recorded`` the iterates it is called at
        whose index is one of the correction's (the solvers evaluate f once
        per iterate, in order: call k is at z_k)."""
        max_iter = cfg.get('max_iter', solver_default(self.solver,
                                                      'max_iter'))
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
                     stats: DEQStats, recorded: List[Tensor]) -> None:
        """The tracked damped step from each recorded iterate."""
        tau = self.correction['tau']
        out = []
        for z in recorded:
            zs = packer.unpack(z.to(state_dtype))
            fz = f(zs)
            out.append(list(fz) if tau == 1 else
                       [(1 - tau) * a + tau * b for a, b in zip(zs, fz)])
            stats.nfev_tracked += 1
        stats.corrections = out

    def _phantom(self, f, z: List[Tensor], stats: DEQStats) -> List[Tensor]:
        """k tracked damped steps from z*."""
        k, tau = self.grad_cfg['k'], self.grad_cfg['tau']
        for _ in range(k):
            fz = f(z)
            z = fz if tau == 1 else [(1 - tau) * a + tau * b
                                     for a, b in zip(z, fz)]
        stats.nfev_tracked = k
        return list(z)

    def _ift(self, f_flat, z_star: Tensor, stats: DEQStats, extra: dict,
             inverse: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        """One tracked application; the adjoint solve happens in backward
        on the graph of this application."""
        z_star = z_star.requires_grad_()
        z_plus = f_flat(z_star)

        def vjp(w):
            return torch.autograd.grad(
                z_plus, z_star, w, retain_graph=True)[0]

        if self.grad_cfg['init'] != 'shine':
            inverse = None
        z_out = _AdjointSolve.apply(z_plus, vjp, self.grad_cfg['solver'],
                                    dict(self.grad_cfg['solver_cfg'],
                                         **extra), stats, inverse)
        stats.nfev_tracked = 1
        return z_out
