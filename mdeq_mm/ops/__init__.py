# Copyright (c) mdeq_mm authors. All rights reserved.
"""Deep-equilibrium ops in pure PyTorch (imports nothing from OpenMMLab)."""
from .implicit import GRAD_MODES, DEQStats, ImplicitLayer, StatePacker
from .regularizers import jacobian_frobenius, spectral_radius
from .solvers import (REASONS, SOLVERS, SolverStats, anderson, broyden,
                      check_solver_cfg, fixed_point, get_solver,
                      register_solver, solve, solver_options,
                      static_graph)

__all__ = [
    'GRAD_MODES', 'DEQStats', 'ImplicitLayer', 'StatePacker',
    'jacobian_frobenius', 'spectral_radius', 'REASONS', 'SOLVERS',
    'SolverStats', 'anderson', 'broyden', 'check_solver_cfg', 'fixed_point',
    'get_solver', 'register_solver', 'solve', 'solver_options',
    'static_graph'
]
