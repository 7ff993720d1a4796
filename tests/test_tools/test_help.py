# Copyright (c) mdeq_mm authors. All rights reserved.
"""Every command line answers --help with its usage and exit code 0."""
import glob
import os.path as osp
import subprocess
import sys

import pytest

from tests.helpers import run_tool, tool_env

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = sorted(
    osp.splitext(osp.relpath(p, osp.join(ROOT, 'tools')))[0]
    for p in glob.glob(osp.join(ROOT, 'tools', '**', '*.py'), recursive=True)
    if osp.basename(p) != 'tool_utils.py')


@pytest.mark.parametrize('tool', TOOLS)
def test_tool_help_exits_0(tool):
    out, rc = run_tool(tool, '--help', ok=False)
    assert rc == 0 and 'usage:' in out, out[-2000:]


def test_converter_module_help_exits_0():
    res = subprocess.run([sys.executable, '-m', 'mdeq_mm.converters',
                          '--help'], capture_output=True, text=True,
                         cwd=ROOT, env=tool_env(), timeout=300)
    assert res.returncode == 0 and 'usage:' in res.stdout
    res = subprocess.run([sys.executable, '-m', 'mdeq_mm.converters'],
                         capture_output=True, text=True, cwd=ROOT,
                         env=tool_env(), timeout=300)
    assert res.returncode == 1 and 'usage:' in res.stderr
