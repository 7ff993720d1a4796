# Copyright (c) mdeq_mm authors. All rights reserved.
"""The offline install (tools/setup_env.py --wheelhouse) in a fresh virtual
environment that sees this environment's packages except the OpenMMLab
stack, mdeq_mm and everything the wheelhouse carries (a GPU host: torch
and the large compiled packages present, nothing else), with the network
cut (``unshare -n`` where it works; pip's ``--no-index`` always)."""
import importlib.metadata as metadata
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STACK = ('mmcv', 'mmengine', 'mmsegmentation', 'mmpretrain', 'mdeq-mm')


def _norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def host_site(dest, hidden):
    """A folder of links to this environment's site-packages entries,
    without those of the distributions in ``hidden``."""
    site = sysconfig.get_paths()['purelib']
    drop = set()
    for dist in metadata.distributions():
        if _norm(dist.metadata['Name']) in hidden:
            for f in dist.files or []:
                drop.add(f.parts[0])
    os.makedirs(dest)
    for entry in os.listdir(site):
        if entry not in drop and not entry.endswith('.pth') and \
                not entry.startswith('__editable__'):
            os.symlink(osp.join(site, entry), osp.join(dest, entry))
    return dest


def no_network():
    """The command prefix that cuts the network, if this machine allows."""
    ok = shutil.which('unshare') and subprocess.run(
        ['unshare', '-n', 'true'], capture_output=True).returncode == 0
    return ['unshare', '-n'] if ok else []


@pytest.mark.slow
def test_wheelhouse_install_into_a_fresh_venv_offline(tmp_path):
    wheelhouse = str(tmp_path / 'wheelhouse')
    fill = subprocess.run(
        [sys.executable, 'tools/setup_env.py', '--fill-wheelhouse',
         wheelhouse], cwd=ROOT, capture_output=True, text=True)
    assert fill.returncode == 0, fill.stdout[-3000:] + fill.stderr
    assert osp.isfile(osp.join(wheelhouse, 'mmcv-2.1.0.tar.gz'))
    carried = {_norm(f.split('-')[0]) for f in os.listdir(wheelhouse)
               if f.endswith('.whl')}
    assert {'mmengine', 'mmsegmentation', 'mmpretrain'} <= carried
    assert not carried & {'torch', 'numpy', 'opencv-python'}
    size = sum(osp.getsize(osp.join(wheelhouse, f))
               for f in os.listdir(wheelhouse))
    assert size < 40 * 2**20

    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    purelib = subprocess.run(
        [python, '-c', 'import sysconfig; '
         'print(sysconfig.get_paths()["purelib"])'],
        capture_output=True, text=True, check=True).stdout.strip()
    host = host_site(str(tmp_path / 'host'), carried | set(STACK))
    with open(osp.join(purelib, 'host.pth'), 'w') as f:
        f.write(host + '\n')
    # the host has torch but none of the stack
    probe = subprocess.run(
        [python, '-c', 'import torch, importlib.util as u; '
         'print(u.find_spec("mmengine"), u.find_spec("mdeq_mm"))'],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert probe.stdout.split() == ['None', 'None'], probe.stderr

    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PIP_')}
    res = subprocess.run(
        no_network() + [python, 'tools/setup_env.py', '--wheelhouse',
                        wheelhouse], cwd=ROOT, capture_output=True,
        text=True, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert 'kept torch/torchvision' in out
    assert 'installed from the wheelhouse: mmengine==0.10.7' in out
    assert 'all requirements met' in out
    check = subprocess.run(
        [python, '-c', 'import mmcv.ops, mmseg.models, mmpretrain.models, '
         'mdeq_mm, mmengine; print(mmengine.__file__)'],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip().startswith(str(venv))
