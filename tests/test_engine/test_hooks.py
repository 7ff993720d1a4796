# Copyright (c) mdeq_mm authors. All rights reserved.
"""DEQ hooks under a real mmengine Runner."""
import itertools

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mdeq_mm  # noqa: F401
from mdeq_mm.apis import find_mdeq
from mdeq_mm.models import MDEQ


class TinyDEQNet(BaseModel):

    def __init__(self, **backbone):
        super().__init__()
        with torch.random.fork_rng():  # the same weights in any test order
            torch.manual_seed(0)
            self.backbone = MDEQ(
                'tiny', solver_cfg=dict(max_iter=3, tol=1e-6),
                grad_cfg=dict(solver_cfg=dict(max_iter=3)),
                **dict(dict(warmup_iters=0), **backbone))
            self.head = torch.nn.Linear(24, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        feat = self.backbone(inputs)[0].mean((2, 3))
        out = self.head(feat)
        if mode == 'loss':
            return dict(loss=(out - labels).pow(2).mean())
        return out


class Record(Hook):
    """Appends ``read(backbone)`` after every training iteration."""
    priority = 'LOWEST'

    def __init__(self, read):
        self.read, self.rows = read, []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.rows.append(self.read(find_mdeq(runner.model)))


_RUNS = itertools.count()


def tiny_runner(work_dir, model, hooks, iters, **overrides):
    """A real Runner training ``model`` for ``iters`` iterations of 2
    (``overrides``: other Runner arguments)."""
    g = torch.Generator().manual_seed(0)
    data = [dict(inputs=torch.randn(3, 8, 8, generator=g),
                 labels=torch.randn(1, generator=g))
            for _ in range(2 * iters)]
    kwargs = dict(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data, sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'), batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        custom_hooks=hooks,
        default_hooks=dict(checkpoint=None),
        default_scope='mmengine',
        log_level='WARNING',
        # its own message hub and logger (Runners created in the same
        # second would share the timestamp-named ones)
        experiment_name=f'tiny_{next(_RUNS)}')
    kwargs.update(overrides)
    return Runner(**kwargs)


def test_warmup_switch_and_telemetry_under_a_runner(tmp_path):
    recorder = Record(lambda backbone: (backbone.last_stats.mode,
                                        backbone.last_stats.fallback))
    runner = tiny_runner(tmp_path, TinyDEQNet(), [
        dict(type='DEQWarmupHook', warmup_iters=3),
        dict(type='DEQTelemetryHook'), recorder
    ], 5)
    runner.train()
    assert [m for m, _ in recorder.rows] == ['unrolled'] * 3 + ['ift'] * 2
    hub = runner.message_hub
    # unrolled iterations pushed nfev_tracked = depth, implicit ones 1
    tracked = hub.get_scalar('train/deq/nfev_tracked').data[0].tolist()
    assert tracked == [5, 5, 5, 1, 1]
    assert hub.get_scalar('train/deq/fwd_nfev').current() == 4
    assert hub.get_scalar('train/deq/bwd_nfev').current() >= 1
    assert 'train/deq/fwd_rel_residual_s1' in hub.log_scalars
    # the running total of fallbacks
    assert hub.get_scalar('train/deq/bwd_fallback').current() == sum(
        n for _, n in recorder.rows)
    # evaluation always solves, whatever the training mode
    backbone = find_mdeq(runner.model)
    backbone.mode = 'unrolled'
    runner.model.eval()
    with torch.no_grad():
        runner.model(torch.randn(1, 3, 8, 8))
    assert backbone.last_stats.mode == 'solve'


def test_hooks_need_an_mdeq():
    with pytest.raises(TypeError, match='no MDEQ backbone'):
        find_mdeq(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError):
        from mdeq_mm.engine import DEQWarmupHook
        DEQWarmupHook(-1)


def test_jacobian_schedule_follows_the_reference(tmp_path):
    """Warm-up weight while unrolled, +increment per increment_every
    iterations after the warm-up, nothing from stop_iter on."""
    recorder = Record(lambda backbone: (backbone.jac_loss_cfg['weight'],
                                        backbone.last_output.jac_loss
                                        is not None))
    runner = tiny_runner(tmp_path, TinyDEQNet(jac_loss=dict(weight=0.5)), [
        dict(type='DEQWarmupHook', warmup_iters=2),
        dict(type='DEQJacobianScheduleHook', warmup_weight=0.05,
             increment=0.1, increment_every=2, stop_iter=7), recorder
    ], 8)
    runner.train()
    weights = [w for w, _ in recorder.rows]
    assert weights == pytest.approx(
        [0.05, 0.05, 0.5, 0.5, 0.6, 0.6, 0.7, 0.0])
    # computed whenever the weight is positive (freq 1), never at 0
    assert [c for _, c in recorder.rows] == [True] * 7 + [False]
    with pytest.raises(ValueError, match='jac_loss'):
        tiny_runner(tmp_path / 'b', TinyDEQNet(),
                    [dict(type='DEQJacobianScheduleHook')], 1).train()


def test_backward_fallbacks_are_totalled_and_logged_once_per_interval(
        tmp_path):
    """A backward solve with no iterations never improves on w = 0: every
    sample falls back. The hook keeps running totals and logs them through
    the logger once per interval (not a warning per batch)."""
    net = TinyDEQNet()
    net.backbone.deq.set_grad(
        'ift', dict(solver='fixed_point', solver_cfg=dict(max_iter=0,
                                                          tol=0)))
    runner = tiny_runner(tmp_path, net,
                         [dict(type='DEQTelemetryHook', interval=2)], 5)
    runner.train()
    hub = runner.message_hub
    totals = hub.get_scalar('train/deq/bwd_fallback').data[0].tolist()
    assert totals == [4, 8, 10]  # after iterations 2, 4 and the last (5)
    log = open(next(h.baseFilename for h in runner.logger.handlers
                    if hasattr(h, 'baseFilename'))).read()
    reports = [line for line in log.splitlines()
               if 'fell back to the one-step gradient' in line]
    assert len(reports) == 3
    assert '10 of 10 so far' in reports[-1]


def test_forward_solves_far_from_tolerance_are_counted_and_warned(tmp_path):
    """Budget 4 at tol 1e-6 on a random f: the solves stop far above
    their tolerance; each is counted (the running total equals the
    per-iteration records) and warned once per interval."""
    import glob
    recorder = Record(lambda backbone: int(backbone.last_stats.far.sum()))
    runner = tiny_runner(tmp_path, TinyDEQNet(), [
        dict(type='DEQTelemetryHook', interval=2), recorder], 4)
    runner.train()
    assert sum(recorder.rows) >= 6  # of 8 samples
    hub = runner.message_hub
    assert hub.get_scalar('train/deq/fwd_far').current() == sum(recorder.rows)
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert log.count('stopped unconverged over 10x their tolerance') == 2
    # a fixed budget (tol 0) is never far
    backbone = find_mdeq(runner.model)
    backbone.deq.set_solver('train', tol=0.)
    runner.model.train()
    runner.model(torch.randn(2, 3, 8, 8), torch.randn(2, 1), mode='loss')
    assert backbone.last_stats.far is None


def test_backbone_warms_up_and_reports_without_hooks(tmp_path):
    """No DEQ hook: the backbone trains unrolled before its warmup_iters
    (the Runner's iteration) and pushes its statistics, backward included,
    to the message hub itself."""
    recorder = Record(lambda backbone: (
        backbone.last_stats.mode,
        backbone.last_stats.backward.nfev.float().mean().item()
        if backbone.last_stats.backward is not None else None))
    runner = tiny_runner(tmp_path, TinyDEQNet(warmup_iters=3), [recorder], 5)
    runner.train()
    assert [m for m, _ in recorder.rows] == ['unrolled'] * 3 + ['ift'] * 2
    hub = runner.message_hub
    assert hub.get_scalar('train/deq/nfev_tracked').data[0].tolist() == [
        5, 5, 5, 1, 1]
    assert hub.get_scalar('train/deq/fwd_nfev').current() == 4
    # pushed after the backward solve: this iteration's, not the last one's
    assert hub.get_scalar('train/deq/bwd_nfev').current() == \
        recorder.rows[-1][1]
    assert 'train/deq/bwd_fallback' in hub.log_scalars


def test_warmup_follows_the_runner_iteration():
    """The default warm-up (2000 iterations) applies under a Runner only,
    and follows the Runner's iteration: a resumed run continues it."""
    from mmengine.logging import MessageHub

    from mdeq_mm.models.backbones.mdeq import AUTO_WARMUP_ITERS
    net = TinyDEQNet(warmup_iters=None)
    x = torch.randn(2, 3, 8, 8)

    def mode_at(it):
        if it is not None:
            MessageHub.get_current_instance().update_info('iter', it)
        net.train()
        net(x)
        return net.backbone.last_stats.mode

    assert mode_at(None) == 'ift'  # no Runner: the configured mode
    assert mode_at(0) == 'unrolled'
    assert mode_at(AUTO_WARMUP_ITERS - 1) == 'unrolled'
    assert mode_at(AUTO_WARMUP_ITERS) == 'ift'  # e.g. after a resume
    net.backbone.warmup_iters = 0
    assert mode_at(0) == 'ift'
    with pytest.raises(ValueError, match='warmup_iters'):
        TinyDEQNet(warmup_iters=-1)
