# Copyright (c) mdeq_mm authors. All rights reserved.
"""Fault injection with real processes and real signals on tools/train.py:
SIGTERM and resume (bit for bit), SIGKILL during a checkpoint save,
SIGTERM to one rank of a two-process run, a diverging run, corrupt
checkpoints."""
import glob
import os
import os.path as osp
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import cityscapes_train_ids, run_tool, tool_env
from tests.test_tools.test_distributed import free_port

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = osp.join(ROOT, 'configs/demo/mdeq-demo_seg.py')
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def city(tmp_path_factory):
    return cityscapes_train_ids(tmp_path_factory.mktemp('city'), n_train=6,
                                n_val=2)


def opts(city, iters, extra=()):
    return [
        '--cfg-options', *[f'{n}.dataset.data_root={city}' for n in (
            'train_dataloader', 'val_dataloader', 'test_dataloader')],
        'train_dataloader.batch_size=2', f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}', 'default_hooks.logger.interval=1',
        f'default_hooks.checkpoint.interval={iters}',
        'custom_hooks.0.warmup_iters=2', 'randomness.seed=0',
        'randomness.deterministic=True',
        'model.backbone.solver_cfg.max_iter=3',
        'model.backbone.grad_cfg.solver_cfg.max_iter=3', *extra
    ]


def start(args, env=None):
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env or tool_env())


def read_until(proc, text, log):
    """Read ``proc``'s output into ``log`` until a line contains ``text``."""
    for line in proc.stdout:
        log.append(line)
        if text in line:
            return line
    raise AssertionError(f'{text!r} never printed:\n' + ''.join(log[-40:]))


def state(path):
    return torch.load(path, map_location='cpu',
                      weights_only=False)['state_dict']


def derived_config(tmp_path, hooks):
    """The demo's config (its hooks first) with extra custom hooks."""
    path = tmp_path / 'derived.py'
    base = [dict(type='DEQWarmupHook', warmup_iters=2),
            dict(type='DEQTelemetryHook', interval=20),
            dict(type='RunStatsHook', interval=20)]
    path.write_text(
        f'_base_ = [{SEG!r}]\n'
        "custom_imports = dict(imports=['mdeq_mm', 'tests.plugins'],\n"
        '                      allow_failed_imports=False)\n'
        f'custom_hooks = {base + hooks!r}\n')
    return str(path)


def test_sigterm_saves_and_resume_equals_an_uninterrupted_run(city,
                                                              tmp_path):
    """SIGTERM at a random iteration of 6 (the Jacobian loss draws from
    torch's random stream, restored on resume): the resumed run's final
    weights equal the uninterrupted run's bit for bit."""
    straight = str(tmp_path / 'straight')
    run_tool('train', SEG, '--work-dir', straight, *opts(city, 6))
    at = random.randint(1, 4)
    work = str(tmp_path / 'work')
    proc = start(['tools/train.py', SEG, '--work-dir', work,
                  *opts(city, 6)])
    log = []
    read_until(proc, f'Iter(train) [{at}/6]', log)
    proc.send_signal(signal.SIGTERM)
    log += proc.stdout.readlines()
    assert proc.wait(60) == 128 + signal.SIGTERM, ''.join(log[-30:])
    out = ''.join(log)
    saved = glob.glob(osp.join(work, 'iter_*_interrupted.pth'))
    assert len(saved) == 1, (at, out[-3000:])
    n = int(osp.basename(saved[0]).split('_')[1])
    assert at <= n <= at + 1
    assert f'SIGTERM: training stopped after iteration {n}' in out
    assert open(osp.join(work, 'last_checkpoint')).read() == saved[0]
    # the printed command, run as printed (no options of the first run)
    cmd = out.split('Resume with: ')[1].splitlines()[0].split()
    assert cmd[:2] == ['python', 'tools/train.py'] and '--cfg-options' \
        not in cmd and cmd[-2:] == ['--resume', 'auto']
    assert cmd[2] == osp.join(work, osp.basename(SEG))  # the dumped config
    out = run_tool('train', *cmd[2:])
    assert f'resumed epoch: 0, iter: {n}' in out
    a, b = state(osp.join(straight, 'iter_6.pth')), state(
        osp.join(work, 'iter_6.pth'))
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), (at, n, key)


def test_sigkill_during_a_checkpoint_save_resumes_from_the_previous_one(
        city, tmp_path):
    cfg = derived_config(tmp_path, [dict(type='KillDuringSaveHook',
                                         at_iter=4)])
    work = str(tmp_path / 'work')
    every2 = ['default_hooks.checkpoint.interval=2']
    out, rc = run_tool('train', cfg, '--work-dir', work,
                       *opts(city, 6, every2), ok=False)
    assert rc == -signal.SIGKILL, out[-3000:]
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert not osp.isfile(osp.join(work, 'iter_4.pth'))  # never partial
    assert open(osp.join(work, 'last_checkpoint')).read().endswith(
        'iter_2.pth')
    killed_tmp = glob.glob(osp.join(work, '.*.tmp'))
    out = run_tool('train', SEG, '--work-dir', work, '--resume', 'auto',
                   *opts(city, 6, every2))
    assert 'resumed epoch: 0, iter: 2' in out
    assert osp.isfile(osp.join(work, 'iter_6.pth'))
    # the killed save's temporary file is gone
    assert killed_tmp and not glob.glob(osp.join(work, '.*.tmp'))


def test_sigterm_to_one_rank_stops_both_with_one_checkpoint(city,
                                                            tmp_path):
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = start([
        '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={free_port()}', 'tools/train.py', SEG, '--launcher',
        'pytorch', '--work-dir', work,
        *opts(city, 500, ['train_dataloader.batch_size=1'])
    ], env=env)
    log = []
    read_until(proc, 'Iter(train) [  2/500]', log)  # mmengine pads
    workers = subprocess.run(['pgrep', '-P', str(proc.pid), '-f', 'train.py'],
                             capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    t0 = time.time()
    os.kill(int(workers[-1]), signal.SIGTERM)
    log += proc.stdout.readlines()
    rc = proc.wait(120)
    elapsed = time.time() - t0
    out = ''.join(log)
    assert rc != 0 and elapsed < 60, (rc, elapsed, out[-3000:])
    saved = glob.glob(osp.join(work, '*.pth'))
    assert len(saved) == 1 and saved[0].endswith('_interrupted.pth'), saved
    assert 'SIGTERM: training stopped after iteration' in out
    for pid in workers:  # no rank left behind
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_sigterm_to_the_launch_script_stops_every_rank(city, tmp_path):
    """A scheduler's SIGTERM to tools/dist_train.sh reaches torchrun (the
    script execs ``$PYTHON -m torch.distributed.run``) and every rank: one
    checkpoint, nothing left running."""
    work = str(tmp_path / 'work')
    # no torchrun on PATH: the script runs the given interpreter's
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT=str(free_port()),
               PYTHON=sys.executable, PATH='/usr/bin:/bin')
    proc = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', SEG, '2', '--work-dir', work,
         *opts(city, 500, ['train_dataloader.batch_size=1'])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env)
    log = []
    read_until(proc, 'Iter(train) [  2/500]', log)
    workers = subprocess.run(['pgrep', '-f', work], capture_output=True,
                             text=True).stdout.split()
    assert len(workers) >= 3, workers  # torchrun and two ranks
    proc.send_signal(signal.SIGTERM)
    log += proc.stdout.readlines()
    rc = proc.wait(120)
    out = ''.join(log)
    assert rc != 0, out[-3000:]
    saved = glob.glob(osp.join(work, '*.pth'))
    assert len(saved) == 1 and saved[0].endswith('_interrupted.pth'), (
        saved, out[-3000:])
    time.sleep(1)
    left = subprocess.run(['pgrep', '-f', work], capture_output=True,
                          text=True).stdout.split()
    assert not left, (left, out[-3000:])


def test_a_rank_that_stops_answering_ends_the_job_with_the_rank_named(
        city, tmp_path):
    """SIGSTOP to one rank of two: with --dist-timeout the other rank's
    collective times out, it ends with one line naming itself, and torchrun
    ends the job (nothing is left running)."""
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = start([
        '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={free_port()}', 'tools/train.py', SEG, '--launcher',
        'pytorch', '--work-dir', work, '--dist-timeout', '10',
        *opts(city, 500, ['train_dataloader.batch_size=1'])
    ], env=env)
    log = []
    read_until(proc, 'Iter(train) [  2/500]', log)
    workers = subprocess.run(['pgrep', '-P', str(proc.pid), '-f', 'train.py'],
                             capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGSTOP)
    try:
        log += proc.stdout.readlines()
        rc = proc.wait(180)
    finally:
        for pid in workers:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    out = ''.join(log)
    assert rc != 0, out[-3000:]
    assert 'a collective operation timed out waiting for another rank' in \
        out, out[-3000:]
    assert re.search(r'error: rank [01]: a collective', out)
    time.sleep(1)
    assert not subprocess.run(['pgrep', '-f', work], capture_output=True,
                              text=True).stdout.split()


def test_diverging_run_stops_cleanly_with_the_last_finite_weights(
        city, tmp_path):
    """The loss turns NaN at once: the last finite weights (the skipped
    steps left them unchanged) are saved, resumable."""
    cfg = derived_config(tmp_path, [dict(type='NaNLossAfterHook', start=3)])
    work = str(tmp_path / 'work')
    out, rc = run_tool('train', cfg, '--work-dir', work, '--max-bad-steps',
                       '2', *opts(city, 6), ok=False)
    assert rc == 1, out[-3000:]
    assert 'Traceback' not in out
    assert 'error: training diverged: 2 consecutive non-finite steps up ' \
        'to iteration 4' in out
    assert 'iteration 3: optimiser step skipped, non-finite loss' in out
    ckpt = osp.join(work, 'iter_4_interrupted.pth')
    assert f'The last finite weights are in {ckpt}' in out
    assert open(osp.join(work, 'last_checkpoint')).read() == ckpt
    weights = state(ckpt)
    assert all(torch.isfinite(v).all() for v in weights.values()
               if v.is_floating_point())


def test_an_exploding_run_saves_weights_from_before_the_explosion(
        city, tmp_path):
    """lr 1e6: the loss explodes while still finite, then turns NaN. The
    weights saved are the last healthy ones (as small as at the start),
    not the finite but exploded weights of the last finite step."""
    work = str(tmp_path / 'work')
    out, rc = run_tool('train', SEG, '--work-dir', work, '--max-bad-steps',
                       '2', *opts(city, 40, [
                           'optim_wrapper.optimizer.lr=1e6',
                           'optim_wrapper.clip_grad=None',
                           'custom_hooks.0.warmup_iters=40']), ok=False)
    assert rc == 1 and 'training diverged' in out, out[-3000:]
    saved = glob.glob(osp.join(work, 'iter_*_healthy.pth'))
    assert len(saved) == 1, out[-3000:]
    from mdeq_mm.apis import init_model
    start = init_model(SEG).state_dict()
    weights = state(saved[0])
    biggest = max(float(v.abs().max()) for k, v in weights.items()
                  if v.is_floating_point() and 'running' not in k)
    initial = max(float(v.abs().max()) for k, v in start.items()
                  if v.is_floating_point() and 'running' not in k)
    assert biggest < 10 * initial, (biggest, initial)


def test_corrupt_checkpoints_are_named_in_one_line(city, tmp_path):
    bad = tmp_path / 'iter_3.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(10000))), bad)
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 3])
    for args in (['test', SEG, str(bad)],
                 ['train', SEG, '--resume', str(bad)],
                 ['train', SEG, '--cfg-options', f'load_from={bad}']):
        out, rc = run_tool(*args, '--work-dir', str(tmp_path / 'w'),
                           ok=False)
        assert rc == 1 and 'Traceback' not in out, (args, out[-2000:])
        assert f'error: cannot load {bad}: not a torch checkpoint' in out


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB file system (tmpfs; skipped where mounting is refused): room
    for one demo checkpoint (14 MB with the optimiser) and the logs."""
    path = tmp_path / 'small'
    path.mkdir()
    res = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=24m', 'tmpfs',
                          str(path)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f'cannot mount a small tmpfs here: {res.stderr.strip()}')
    yield str(path)
    subprocess.run(['umount', '-l', str(path)])


def test_full_disk_is_one_line_and_the_previous_checkpoint_survives(
        city, small_disk):
    from mdeq_mm.engine import checkpoint_problem
    work = osp.join(small_disk, 'work')
    out, rc = run_tool('train', SEG, '--work-dir', work,
                       *opts(city, 3, ['default_hooks.checkpoint.interval=1']),
                       ok=False)
    assert rc == 1 and 'Traceback' not in out, out[-3000:]
    line = next(x for x in out.splitlines() if x.startswith('error:'))
    assert 'no space left in' in line and 'intact' in line
    assert checkpoint_problem(osp.join(work, 'iter_1.pth')) is None
    assert not glob.glob(osp.join(work, '.*.tmp'))
    assert not glob.glob(osp.join(work, '*interrupted*'))
