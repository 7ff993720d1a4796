# Copyright (c) mdeq_mm authors. All rights reserved.
"""tools/gpu_check.py --cpu --small: the GPU check's code path on the CPU
(tiny sizes), so that it works when a GPU host runs it."""
import json
import os.path as osp

import pytest

from tests.helpers import run_tool


@pytest.mark.slow
def test_gpu_check_runs_every_section_on_the_cpu(tmp_path):
    out = run_tool('gpu_check', '--cpu', '--small', '--out', tmp_path)
    result = json.loads((tmp_path / 'gpu_check.json').read_text())
    sections = result['sections']
    assert list(sections) == ['tests', 'train', 'train_amp', 'speed',
                              'syncbn']
    assert all(r['ok'] for r in sections.values()), sections
    # the cuda tests are collected and skip without a GPU
    assert sections['tests']['skipped'] >= 10
    assert sections['tests']['passed'] == 0
    # the flagship trained every iteration, unrolled then implicit, and
    # validated
    train = sections['train']
    assert train['iters'] == 4 and train['mIoU'] is not None
    assert train['s_per_iter_implicit'] > 0
    assert 0 < train['fwd_rel_residual'] < 1
    assert sections['syncbn']['distributed'] and \
        sections['syncbn']['iters'] == 2
    rows = sections['speed']['rows']
    assert 'nfev_fwd' not in rows['HRNet-W18']['train']
    for name, row in rows.items():
        assert row['train']['s'] > 0 and row['infer']['s'] > 0, name
        if name != 'HRNet-W18':  # --small: 4 f evaluations forward
            assert row['infer']['nfev_fwd'] == 4, name
            assert row['train']['nfev_fwd'] <= 4, name
    report = (tmp_path / 'gpu_check.md').read_text()
    assert report in out
    assert '| MDEQ-Small fast (JR + SHINE) |' in report
    assert '| syncbn | yes |' in report
    assert osp.isfile(tmp_path / 'cuda_tests.xml')
