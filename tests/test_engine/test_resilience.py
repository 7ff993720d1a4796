# Copyright (c) mdeq_mm authors. All rights reserved.
"""Never lose progress, under a real Runner: skipped non-finite steps, the
divergence stop, atomic checkpoints and the resume choice."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import mdeq_mm  # noqa: F401
from mdeq_mm.engine import (TrainingDiverged, checkpoint_problem,
                            resume_checkpoint)
from mdeq_mm.engine.checkpoint import atomic_write, remove_stale_temporaries
from tests.test_engine.test_hooks import Record, TinyDEQNet, tiny_runner


class PoisonedNet(TinyDEQNet):
    """TinyDEQNet whose loss is NaN (or whose gradient is infinite) in the
    given 1-based training iterations."""

    def __init__(self, nan_iters=(), inf_grad_iters=()):
        super().__init__()
        self.nan_iters, self.inf_grad_iters = set(nan_iters), set(
            inf_grad_iters)
        self.calls = 0

    def forward(self, inputs, labels=None, mode='tensor'):
        out = super().forward(inputs, labels, mode)
        if mode != 'loss':
            return out
        self.calls += 1
        if self.calls in self.nan_iters:
            out['loss'] = out['loss'] * float('nan')
        elif self.calls in self.inf_grad_iters:
            # finite value, infinite gradient: d sqrt(x) / dx at x = 0
            zero = (self.head.weight * 0).sum()
            out['loss'] = out['loss'] + zero.abs().sqrt()
        return out


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def guarded_runner(tmp_path, net, iters, max_consecutive=5):
    recorder = Record(lambda backbone: weights(net))
    runner = tiny_runner(
        tmp_path, net, [
            dict(type='DivergenceGuardHook', max_consecutive=max_consecutive),
            dict(type='GracefulStopHook'), recorder
        ], iters,
        optim_wrapper=dict(type='FiniteOptimWrapper',
                           optimizer=dict(type='SGD', lr=0.01)))
    return runner, recorder


def test_finite_optim_wrapper_is_used_by_the_tool_config():
    from mmengine.config import Config

    from mdeq_mm.engine import enable_fault_tolerance
    cfg = Config.fromfile('configs/demo/mdeq-demo_seg.py')
    enable_fault_tolerance(cfg, 3)
    assert cfg.optim_wrapper.type == 'FiniteOptimWrapper'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    types = [h['type'] for h in cfg.custom_hooks]
    assert types[-2:] == ['DivergenceGuardHook', 'GracefulStopHook']
    enable_fault_tolerance(cfg, 3)  # idempotent
    assert [h['type'] for h in cfg.custom_hooks] == types


@pytest.mark.parametrize('poison', ['nan_iters', 'inf_grad_iters'])
def test_non_finite_step_is_skipped_and_weights_are_unchanged(
        tmp_path, poison):
    net = PoisonedNet(**{poison: [3]})
    runner, rec = guarded_runner(tmp_path, net, 5)
    runner.train()
    rows = rec.rows
    for key in rows[0]:
        assert torch.equal(rows[2][key], rows[1][key]), key  # skipped
    changed = [k for k in rows[0] if not torch.equal(rows[3][k], rows[2][k])]
    assert changed  # the next (finite) step updates again
    assert all(torch.isfinite(v).all() for v in rows[-1].values()
               if v.is_floating_point())
    assert runner.optim_wrapper.skipped == 1
    assert runner.message_hub.get_scalar(
        'train/skipped_steps').current() == 1


def test_consecutive_non_finite_steps_stop_with_the_last_finite_weights(
        tmp_path):
    net = PoisonedNet(nan_iters=range(3, 100))
    runner, rec = guarded_runner(tmp_path, net, 10, max_consecutive=3)
    with pytest.raises(TrainingDiverged) as e:
        runner.train()
    msg = str(e.value)
    assert '3 consecutive non-finite steps up to iteration 5' in msg
    assert 'non-finite loss' in msg and 'warm-up' in msg
    assert 'relative residual' in msg  # the forward solve's state
    path = e.value.checkpoint
    assert path.endswith('iter_5_interrupted.pth') and path in msg
    saved = torch.load(path, map_location='cpu', weights_only=False)
    assert saved['meta']['iter'] == 5
    for key, value in rec.rows[1].items():  # the weights after iteration 2
        assert torch.equal(saved['state_dict'][key], value), key
    assert open(osp.join(tmp_path, 'last_checkpoint')).read() == path


def test_atomic_checkpoint_hook_prunes_after_saving(tmp_path):
    # interrupted checkpoints of earlier runs count in the kept window
    for n in (1, 3, 9):
        torch.save({}, tmp_path / f'iter_{n}_interrupted.pth')
    runner = tiny_runner(tmp_path, TinyDEQNet(), [], 4, default_hooks=dict(
        checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False,
                        interval=1, max_keep_ckpts=2)))
    runner.train()
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    # regular ones keep their window (3, 4); interrupted ones outside the
    # newest two checkpoints of any kind (9, 4) are gone
    assert names == ['iter_3.pth', 'iter_4.pth', 'iter_9_interrupted.pth']
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]
    assert open(tmp_path / 'last_checkpoint').read().endswith('iter_4.pth')
    assert checkpoint_problem(str(tmp_path / 'iter_4.pth')) is None


def test_checkpoint_problems_and_the_resume_choice(tmp_path):
    good = tmp_path / 'iter_2.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1000))), good)
    newest = tmp_path / 'iter_4.pth'
    data = open(good, 'rb').read()
    open(newest, 'wb').write(data[:len(data) // 2])  # a kill mid-write
    (tmp_path / 'last_checkpoint').write_text(str(newest))
    assert 'truncated' in checkpoint_problem(str(newest))
    assert checkpoint_problem(str(tmp_path / 'none.pth')) == 'no such file'
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == \
        'the file is empty'
    warnings = []
    assert resume_checkpoint(str(tmp_path), warnings.append) == str(good)
    assert str(newest) in warnings[0] and 'truncated' in warnings[0]
    os.remove(good)
    assert resume_checkpoint(str(tmp_path)) is None


@pytest.mark.slow
def test_sigkill_during_atomic_write_never_leaves_a_partial_file(tmp_path):
    """A real process killed while writing 256 MB: the target is either
    absent or complete, never partial."""
    target = tmp_path / 'big.pth'
    code = ('import sys, torch, io; from mdeq_mm.engine.checkpoint '
            'import atomic_write\nbuf = io.BytesIO(); torch.save(torch.ones'
            '(64 * 2**20), buf)\nprint("ready", flush=True)\n'
            f'atomic_write(buf.getvalue(), {str(target)!r})\n'
            'print("done", flush=True)\n')
    proc = subprocess.Popen([sys.executable, '-c', code],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'ready'
    while not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]:
        pass  # the temporary file exists: the write has begun
    proc.kill()
    proc.wait()
    assert not target.exists() or checkpoint_problem(str(target)) is None
    assert not target.exists()  # killed before the rename
    atomic_write(b'x', str(target))  # a later save still works
    assert target.read_bytes() == b'x'
    stale = remove_stale_temporaries(str(tmp_path))
    assert len(stale) == 1 and os.listdir(tmp_path) == ['big.pth']


@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(b'x', str(tmp_path / 'a.pth'))
        with open(tmp_path / 'b.pth', 'wb') as f:  # as open() would
            f.write(b'x')
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / 'a.pth').st_mode & 0o777
    assert mode == 0o666 & ~umask == os.stat(tmp_path / 'b.pth').st_mode & \
        0o777


def test_a_process_forked_after_a_failed_run_still_ends_on_sigterm(
        tmp_path):
    """A run that ends with an exception calls no hook after it, so its
    signal handlers stay installed; a process forked later (a pool or data
    loader worker) must still end on SIGTERM (a pool's terminate() waits
    for that)."""
    import multiprocessing
    import signal
    import time
    net = PoisonedNet(nan_iters=range(1, 100))
    runner, _ = guarded_runner(tmp_path, net, 5, max_consecutive=1)
    with pytest.raises(TrainingDiverged):
        runner.train()
    child = multiprocessing.get_context('fork').Process(
        target=time.sleep, args=(60, ))
    child.start()
    time.sleep(0.5)
    child.terminate()  # SIGTERM
    child.join(20)
    alive = child.is_alive()
    if alive:
        child.kill()
        child.join()
    assert not alive and child.exitcode == -signal.SIGTERM
