# Copyright (c) mdeq_mm authors. All rights reserved.
"""The solver benchmark's measurements on a small problem."""
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from benchmark_solvers import TOL, conv_contraction, run_case  # noqa: E402


def test_conv_contraction_is_contractive_around_its_fixed_point():
    f, dim = conv_contraction(1e4, 'cpu')
    with torch.no_grad():
        z = torch.zeros(1, dim)
        for _ in range(300):
            z = f(z)
        u = torch.randn(1, dim) * 1e-3
        ratio = (f(z + u) - f(z)).norm() / u.norm()
    assert (f(z) - z).norm() / f(z).norm() < 1e-4
    assert ratio < 1


@pytest.mark.parametrize('options', [{}, {'history': None}])
def test_run_case_reports_the_solve(options):
    with torch.enable_grad():  # run_case turns grad off for its process
        r = run_case('conv', 1e4, 'mdeq_mm', 'broyden', options, 'cpu', 150)
    assert r['rel'] <= TOL  # recomputed from the returned iterate
    # the solver stops at the first evaluation below the tolerance
    assert r['to_tol'] == r['nfev']
    assert r['t_f'] > 0
    assert r['solver'] == ('broyden (history=None)' if options else 'broyden')
