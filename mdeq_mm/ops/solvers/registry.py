# Copyright (c) mdeq_mm authors. All rights reserved.
"""Solvers by name: registration, option lists and the ``solve`` entry."""
import inspect
from typing import Callable, Dict, Tuple

from torch import Tensor

from ..validation import check_keys
from .loop import SolverStats

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


def solver_default(name: str, option: str):
    """The default value of one option of a registered solver."""
    return inspect.signature(get_solver(name)).parameters[option].default


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
