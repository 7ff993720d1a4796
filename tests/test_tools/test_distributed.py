# Copyright (c) mdeq_mm authors. All rights reserved.
"""Two-process CPU training (torchrun, gloo)."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

from tests.helpers import cityscapes_train_ids

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    res = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def test_ddp_gradients_on_a_shared_batch_match_single_process(tmp_path):
    out = tmp_path / 'err.json'
    torchrun('tests/test_tools/dist_grad_check.py', str(out))
    result = json.loads(out.read_text())
    assert result['world'] == 2 and result['n'] > 50
    assert result['max_rel_err'] < 1e-4


def test_two_process_training_and_testing_with_the_tools(tmp_path):
    """Smoke test: torchrun + tools/train.py, then tools/dist_test.sh on
    the checkpoint, on CPUs (gloo); both must exit cleanly."""
    city = cityscapes_train_ids(tmp_path / 'city', n_train=4, n_val=2)
    work = str(tmp_path / 'work')
    log = torchrun(
        'tools/train.py', 'configs/demo/mdeq-demo_seg.py', '--launcher',
        'pytorch', '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={city}',
        f'val_dataloader.dataset.data_root={city}',
        'train_dataloader.batch_size=1', 'val_dataloader.batch_size=1',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        'model.backbone.solver_cfg.max_iter=2')
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert 'mIoU' in log
    # the launch script, with no torchrun on PATH: it runs $PYTHON's
    res = subprocess.run(
        ['bash', 'tools/dist_test.sh', 'configs/demo/mdeq-demo_seg.py',
         osp.join(work, 'iter_2.pth'), '2', '--work-dir',
         str(tmp_path / 'test'), '--cfg-options',
         f'test_dataloader.dataset.data_root={city}',
         'test_dataloader.batch_size=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1', PORT=str(free_port()),
                 PYTHON=sys.executable, PATH='/usr/bin:/bin'))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'mIoU' in res.stdout + res.stderr
