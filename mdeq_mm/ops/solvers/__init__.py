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

Layout: ``loop`` (the iteration shared by every solver: residuals,
per-sample stopping, lowest iterate, statistics, static-graph mode),
``registry`` (solvers by name, option checks, :func:`solve`), one module
per method (``fixed_point``, ``broyden``, ``anderson``, ``learned``:
the fitted ``'neural'`` solver) and ``linalg`` (the
small systems, also as unrolled elimination for static graphs). A new
solver is a ``_Method`` plus a function registered with
:func:`register_solver`.
"""
from .anderson import anderson
from .broyden import broyden
from .fixed_point import fixed_point
from .learned import LearnedSolver, neural, unrolled_losses
from .loop import (CONVERGED, DIVERGED, MAX_ITER, NON_FINITE, REASONS,
                   STOP_MODES, LoopOptions, SolverStats, is_static,
                   static_graph)
from .registry import (LEARNED_SOLVERS, SOLVERS, budget_of,
                       check_solver_cfg, get_solver, max_iter_for,
                       register_solver, solve, solver_default,
                       solver_options)

__all__ = [
    'anderson', 'broyden', 'fixed_point', 'neural', 'LearnedSolver',
    'unrolled_losses', 'LEARNED_SOLVERS', 'CONVERGED', 'DIVERGED',
    'MAX_ITER', 'NON_FINITE', 'REASONS', 'STOP_MODES', 'LoopOptions',
    'SolverStats', 'is_static', 'static_graph', 'SOLVERS', 'budget_of',
    'check_solver_cfg', 'get_solver', 'max_iter_for', 'register_solver',
    'solve', 'solver_default', 'solver_options'
]
