# Copyright (c) mdeq_mm authors. All rights reserved.
"""Solvers by name: registration, option checks, the budget unit and the
``solve`` entry.

**A budget counts f evaluations**: a solver with ``max_iter=N`` evaluates f
at most N + 1 times (f(z0), then once per iteration). :func:`budget_of` and
:func:`max_iter_for` are the one conversion between the two.
"""
import inspect
from typing import Callable, Dict, Optional, Tuple

from torch import Tensor

from ..validation import check_keys, is_int
from .loop import LoopOptions, SolverStats

SOLVERS: Dict[str, Callable] = {}
# name -> check(options): raises ValueError on a bad value of the
# solver's own options (the shared ones are LoopOptions')
_CHECKS: Dict[str, Callable[[dict], None]] = {}
#: solvers that run a fitted network, passed after z0 by the implicit layer
#: that owns it (never a backward solver)
LEARNED_SOLVERS = set()
_LOOP_KEYS = ('max_iter', 'tol', 'stop_mode', 'check_every', 'divergence',
              'scales')


def register_solver(name: str,
                    check: Optional[Callable[[dict], None]] = None,
                    learned: bool = False):
    """Register ``fn(f, z0, *, <options>)`` under ``name``; ``check``
    validates the values of its own options (given with every option,
    defaults filled in). A ``learned`` solver is ``fn(f, z0, net, *,
    <options>)``, ``net`` the fitted network its owner passes."""

    def deco(fn):
        if name in SOLVERS:
            raise KeyError(f'solver {name!r} is already registered')
        SOLVERS[name] = fn
        if learned:
            LEARNED_SOLVERS.add(name)
        if check is not None:
            _CHECKS[name] = check
        return fn

    return deco


def solver_options(name: str) -> Tuple[str, ...]:
    """The option names accepted by a registered solver."""
    sig = inspect.signature(get_solver(name))
    return tuple(p.name for p in sig.parameters.values()
                 if p.kind == p.KEYWORD_ONLY)


def solver_default(name: str, option: str):
    """The default value of one option of a registered solver."""
    return inspect.signature(get_solver(name)).parameters[option].default


def get_solver(name: str) -> Callable:
    if name not in SOLVERS:
        raise KeyError(f'unknown solver {name!r}; valid solvers: '
                       f'{sorted(SOLVERS)}')
    return SOLVERS[name]


def check_solver_cfg(name: str, cfg: dict) -> None:
    """Raise ValueError naming any option ``name`` does not accept and any
    value out of its range (the valid ones named)."""
    check_keys(cfg, solver_options(name), f'solver {name!r}')
    params = inspect.signature(get_solver(name)).parameters
    full = {k: cfg.get(k, params[k].default) for k in solver_options(name)}
    try:
        LoopOptions(**{k: full[k] for k in _LOOP_KEYS})
        if name in _CHECKS:
            _CHECKS[name](full)
    except ValueError as e:
        raise ValueError(f'solver {name!r}: {e}') from None


def max_iter_for(budget: int) -> int:
    """The ``max_iter`` of a budget of ``budget`` f evaluations (>= 1)."""
    if not is_int(budget, 1):
        raise ValueError(f'a solver budget counts f evaluations and must '
                         f'be an int >= 1, got {budget!r}')
    return budget - 1


def budget_of(name: str, cfg: dict) -> int:
    """The budget in f evaluations of solver ``name`` with options
    ``cfg`` (its default ``max_iter`` where ``cfg`` sets none)."""
    return cfg.get('max_iter', solver_default(name, 'max_iter')) + 1


def solve(name: str, f: Callable[[Tensor], Tensor], z0: Tensor,
          net=None, **cfg) -> Tuple[Tensor, SolverStats]:
    """Solve z = f(z) from z0 with the solver registered as ``name``, its
    options checked (:class:`~mdeq_mm.ops.ImplicitLayer` checks its own
    once, where they are set, and calls the solver directly); ``net``: a
    learned solver's fitted network."""
    check_solver_cfg(name, cfg)
    if name in LEARNED_SOLVERS:
        return get_solver(name)(f, z0, net, **cfg)
    if net is not None:
        raise ValueError(f'solver {name!r} takes no network; learned '
                         f'solvers: {sorted(LEARNED_SOLVERS)}')
    return get_solver(name)(f, z0, **cfg)
