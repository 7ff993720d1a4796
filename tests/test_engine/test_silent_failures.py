# Copyright (c) mdeq_mm authors. All rights reserved.
"""Nothing wrong passes silently: checkpoints that do not fit the model
stop tools/test.py, load_from and --resume with one line naming the keys
(real files and processes; partial loading only with --partial-load,
summarised); option values of hooks and regularisers are checked when they
are built."""
import glob
import os
import os.path as osp

import pytest
import torch

from mdeq_mm.apis import init_model
from mdeq_mm.engine import (DEQJacobianScheduleHook, DEQTelemetryHook,
                            DEQWarmupHook, GracefulStopHook, RunStatsHook,
                            checkpoint_mismatch)
from mdeq_mm.models import MDEQ
from tests.helpers import cityscapes_train_ids, run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = 'configs/demo/mdeq-demo_seg.py'
OTHER = 'configs/speed/mdeq-small_default.py'  # MDEQ-Small: other shapes


def save(path, state):
    torch.save(dict(state_dict=state, meta=dict()), path)
    return str(path)


def test_mismatch_names_missing_unexpected_and_mis_shaped_keys():
    model = init_model(SEG)
    own = model.state_dict()
    assert checkpoint_mismatch(model, dict(state_dict=own)) is None
    # a DDP checkpoint (module. prefix) fits as mmengine loads it
    ddp = {f'module.{k}': v for k, v in own.items()}
    assert checkpoint_mismatch(model, dict(state_dict=ddp)) is None
    # a TTA wrapper loads into its module
    from mmseg.models import SegTTAModel
    assert checkpoint_mismatch(SegTTAModel(module=model), own) is None
    foo = checkpoint_mismatch(model, dict(foo=1))
    assert foo['unexpected'] == ['foo']
    assert len(foo['missing']) == len(
        [k for k in own if not k.endswith('num_batches_tracked')])
    other = checkpoint_mismatch(model, init_model(OTHER).state_dict())
    assert not other['missing'] and not other['unexpected']
    assert 'backbone.bn1.bias: (32,) vs (16,)' in \
        other['mis_shaped']
    # a file that holds no state dict names what it holds
    for held, name in ((torch.zeros(2), 'Tensor'), ([own], 'list'),
                       (dict(state_dict=[1]), 'list')):
        bad = checkpoint_mismatch(model, held)
        assert bad['missing'] == ['<everything>']
        assert bad['mis_shaped'] == [
            f'the file holds a {name}, not a state dict']


@pytest.fixture(scope='module')
def city(tmp_path_factory):
    return cityscapes_train_ids(tmp_path_factory.mktemp('city'), n_train=2,
                                n_val=1)


def data_opts(city):
    return [f'{n}.dataset.data_root={city}' for n in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]


@pytest.mark.slow
def test_tools_stop_on_a_checkpoint_that_does_not_fit(city, tmp_path):
    foo = str(tmp_path / 'foo.pth')
    torch.save({'foo': 1}, foo)
    other = save(tmp_path / 'other.pth', init_model(OTHER).state_dict())
    train = ['train_dataloader.batch_size=1', 'train_cfg.max_iters=1',
             'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']
    for i, (args, ckpt, opts) in enumerate([
            (['test', SEG, foo], foo, []),
            (['test', SEG, other], other, []),
            (['train', SEG], other, [f'load_from={other}']),
            (['train', SEG, '--resume', foo], foo, [])]):
        work = str(tmp_path / f'w{i}')
        out, rc = run_tool(*args, '--work-dir', work, '--cfg-options',
                           *opts, *data_opts(city), *train, ok=False)
        assert rc == 1 and 'Traceback' not in out, (args, out[-3000:])
        line = next(x for x in out.splitlines() if x.startswith('error:'))
        assert f'{ckpt} does not fit the model' in line
        assert ('unexpected (foo)' if ckpt == foo else
                'mis-shaped (backbone.') in line
        assert '--partial-load' in line
        # nothing was trained or written
        assert not glob.glob(osp.join(work, '*.pth'))
    # --resume auto on a work dir whose checkpoint does not fit: every
    # retry stops the same way and writes nothing
    work = tmp_path / 'auto'
    work.mkdir()
    save(work / 'iter_4.pth', init_model(OTHER).state_dict())
    for _ in range(2):
        out, rc = run_tool('train', SEG, '--work-dir', str(work), '--resume',
                           'auto', '--cfg-options', *data_opts(city), *train,
                           ok=False)
        assert rc == 1 and 'does not fit the model' in out, out[-3000:]
        assert [n for n in os.listdir(work) if n.endswith('.pth')] == [
            'iter_4.pth']


@pytest.mark.slow
def test_partial_load_is_explicit_and_summarised(city, tmp_path):
    other = save(tmp_path / 'other.pth', init_model(OTHER).state_dict())
    out = run_tool('test', SEG, other, '--partial-load', '--work-dir',
                   str(tmp_path / 'w'), '--cfg-options', *data_opts(city))
    assert 'partial load:' in out and 'mis-shaped' in out
    assert 'mIoU' in out


def test_max_bad_steps_below_one_is_a_usage_error():
    out, rc = run_tool('train', SEG, '--max-bad-steps', '0', ok=False)
    assert rc == 2 and 'Traceback' not in out
    assert '--max-bad-steps: must be >= 1, got 0' in out


@pytest.mark.parametrize('build,match', [
    (lambda: DEQWarmupHook(-1), 'warmup_iters must be an int >= 0'),
    (lambda: DEQWarmupHook(2.5), 'warmup_iters must be an int >= 0'),
    (lambda: DEQTelemetryHook(0), 'interval must be an int >= 1'),
    (lambda: RunStatsHook(interval=-5), 'interval must be an int >= 1'),
    (lambda: DEQJacobianScheduleHook(increment_every=0),
     'increment_every must be None or an int >= 1'),
    (lambda: DEQJacobianScheduleHook(warmup_weight=-1.),
     'warmup_weight must be None or a number >= 0'),
    (lambda: GracefulStopHook(signals=['SIGTERMM']), "unknown \\['SIGTERMM'"),
    (lambda: MDEQ('tiny', jac_loss=dict(weight=1., freq=2.)),
     'freq must be a number in'),
    (lambda: MDEQ('tiny', jac_loss=dict(weight=1., n_samples=0)),
     'n_samples must be an int >= 1'),
])
def test_hook_and_regulariser_values_are_checked_at_build(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.slow
def test_a_resume_with_another_config_is_warned(city, tmp_path):
    work = str(tmp_path / 'w')
    base = [*data_opts(city), 'train_dataloader.batch_size=2',
            'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
            'default_hooks.checkpoint.interval=1']
    run_tool('train', SEG, '--work-dir', work, '--cfg-options', *base)
    # the same options: no warning
    out = run_tool('train', SEG, '--work-dir', work, '--resume', 'auto',
                   '--cfg-options', *base)
    assert 'with another config' not in out
    # the defaults (batch 8, 800 iterations) instead of the run's options
    more = [*data_opts(city), 'train_cfg.max_iters=3',
            'train_cfg.val_interval=3']
    out = run_tool('train', SEG, '--work-dir', work, '--resume', 'auto',
                   '--cfg-options', *more)
    assert 'warning: resuming' in out and 'with another config' in out
    assert 'train_dataloader.batch_size: checkpoint 2, now 8' in out
    assert "train_cfg: checkpoint {'max_iters': 2" in out
    assert f'python tools/train.py {work}/mdeq-demo_seg.py' in out


@pytest.mark.slow
def test_bad_option_values_stop_the_tools_in_one_line(city, tmp_path):
    for opt, match in (
            ('model.backbone.grad_cfg.solver_cfg.stop_mode=relative',
             "stop_mode must be one of ('abs', 'rel', 'initial')"),
            ('model.backbone.solver_cfg.max_iter=-1',
             'max_iter must be an int >= 0'),
            ('custom_hooks.1.interval=0', 'interval must be an int >= 1')):
        out, rc = run_tool('train', SEG, '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', *data_opts(city), opt, ok=False)
        assert rc == 1 and 'Traceback' not in out, (opt, out[-3000:])
        line = next(x for x in out.splitlines() if x.startswith('error:'))
        assert match in line, (opt, line)


@pytest.mark.slow
def test_far_solves_are_counted_and_warned_in_testing(city, tmp_path):
    ckpt = save(tmp_path / 'seg.pth', init_model(SEG).state_dict())
    out = run_tool('test', SEG, ckpt, '--work-dir', str(tmp_path / 'w'),
                   '--cfg-options', *data_opts(city),
                   'model.backbone.solver_cfg.max_iter=0')
    assert 'DEQ forward solve (test): 1 sample(s) in this test stopped ' \
        'unconverged over 10x their tolerance' in out
