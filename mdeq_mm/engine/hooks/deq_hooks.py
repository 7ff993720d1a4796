# Copyright (c) mdeq_mm authors. All rights reserved.
"""mmengine hooks for MDEQ training: warm-up switch, Jacobian loss schedule
and solver telemetry.

They set the backbone's settings (``mode``, the Jacobian loss weight) and
read the record of its last forward (``last_output``); the backbone knows
nothing of the Runner.
"""
from mmengine.hooks import Hook

from mdeq_mm.apis import find_mdeq
from mdeq_mm.ops.implicit import FAR
from mdeq_mm.ops.validation import check_value, is_int, is_number
from mdeq_mm.registry import register


@register('HOOKS', root=True)
class DEQWarmupHook(Hook):
    """Train unrolled (weight-tied, no solver) before ``warmup_iters``
    optimiser steps, implicitly after; evaluation always solves. Sets the
    backbone's ``warmup_iters`` (which the backbone follows by itself,
    2000 by default) and logs the switch.

    The reference counts the warm-up ("PRETRAIN_STEPS") in optimiser
    iterations; rescale it when your total batch size differs.

    Args:
        warmup_iters (int): iterations in unrolled mode (0: none).
    """
    priority = 'NORMAL'

    def __init__(self, warmup_iters: int):
        check_value('DEQWarmupHook warmup_iters', warmup_iters,
                    is_int(warmup_iters, 0), 'an int >= 0')
        self.warmup_iters = warmup_iters

    def before_run(self, runner) -> None:
        # before every hook's before_train, so that they all read the
        # length from the backbone
        find_mdeq(runner.model).warmup_iters = self.warmup_iters

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter == self.warmup_iters and self.warmup_iters and \
                find_mdeq(runner.model).mode == 'implicit':
            runner.logger.info(
                f'DEQWarmupHook: iteration {runner.iter}: MDEQ switches '
                'from unrolled to implicit training')


@register('HOOKS', root=True)
class DEQJacobianScheduleHook(Hook):
    """The reference's schedule of the Jacobian loss weight (the backbone's
    ``jac_loss``), set before every training iteration:

    * during the unrolled warm-up: ``warmup_weight`` (None: the configured
      weight);
    * after it: the configured weight + ``increment`` for every
      ``increment_every`` iterations since the warm-up ended (None: never);
    * from ``stop_iter`` on: 0 (no Jacobian loss is computed).

    The warm-up length is the backbone's (``warmup_iters``, which a
    :class:`DEQWarmupHook` sets).

    Args:
        warmup_weight (float | None): weight while training unrolled.
        increment (float): added per ``increment_every`` iterations.
        increment_every (int | None): iterations per increment.
        stop_iter (int | None): first iteration without the loss.
    """
    priority = 'NORMAL'

    def __init__(self, warmup_weight=None, increment: float = 0.1,
                 increment_every=None, stop_iter=None):
        what = 'DEQJacobianScheduleHook '
        check_value(what + 'warmup_weight', warmup_weight,
                    warmup_weight is None or is_number(warmup_weight, 0),
                    'None or a number >= 0')
        check_value(what + 'increment', increment,
                    is_number(increment), 'a number')
        check_value(what + 'increment_every', increment_every,
                    increment_every is None or is_int(increment_every, 1),
                    'None or an int >= 1')
        check_value(what + 'stop_iter', stop_iter,
                    stop_iter is None or is_int(stop_iter, 0),
                    'None or an int >= 0')
        self.warmup_weight = warmup_weight
        self.increment = increment
        self.increment_every = increment_every
        self.stop_iter = stop_iter

    def before_train(self, runner) -> None:
        cfg = find_mdeq(runner.model).jac_loss_cfg
        if cfg is None:
            raise ValueError('DEQJacobianScheduleHook needs the backbone '
                             "built with jac_loss=dict(weight=...)")
        self.base = cfg['weight']
        self.warmup_iters = find_mdeq(runner.model).effective_warmup()

    def weight(self, it: int) -> float:
        if self.stop_iter is not None and it >= self.stop_iter:
            return 0.0
        if it < self.warmup_iters:
            return self.base if self.warmup_weight is None else \
                self.warmup_weight
        steps = 0 if not self.increment_every else \
            (it - self.warmup_iters) // self.increment_every
        return self.base + self.increment * steps

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        backbone = find_mdeq(runner.model)
        backbone.jac_loss_cfg['weight'] = self.weight(runner.iter)


@register('HOOKS', root=True)
class DEQTelemetryHook(Hook):
    """Push the backbone's solver statistics to the MessageHub after every
    training, validation and test iteration, so LoggerHook and the
    visualisation backends (local, TensorBoard) record them.

    Scalars, under ``train/deq/``, ``val/deq/`` and ``test/deq/``: forward
    relative and absolute residual, evaluations, lowest step, converged
    fraction, per-scale relative residuals, backward residual and
    evaluations, the tracked f applications, and ``bwd_fallback``: the
    running total of samples whose backward solve failed and used the
    one-step gradient, and ``fwd_far``: the running total of samples whose
    forward solve stopped unconverged over 10x its tolerance (per phase).
    Both are counted in every iteration and warned about through the
    logger at most once per ``interval`` in training (with the totals so
    far) and once per validation or test.

    Args:
        interval (int): push every ``interval`` training iterations (the
            statistics cost a host sync).
    """
    # before LoggerHook (BELOW_NORMAL), so each logged line carries the
    # statistics of its own iteration
    priority = 'NORMAL'

    def __init__(self, interval: int = 1):
        check_value('DEQTelemetryHook interval', interval, is_int(interval, 1),
                    'an int >= 1')
        self.interval = interval
        self.fallback_total = 0  # samples, since this process started
        self.fallback_window = 0  # samples, since the last report
        self.backward_total = 0  # samples with a backward solve
        # forward solves far from their tolerance, per phase: total since
        # this process started, since the last report, samples solved
        self.far = {p: [0, 0, 0] for p in ('train', 'val', 'test')}

    def before_run(self, runner) -> None:
        find_mdeq(runner.model).telemetry = False  # this hook reports

    def _count_far(self, runner, phase: str) -> None:
        output = find_mdeq(runner.model).last_output
        far = output.stats.far if output is not None else None
        if far is not None:
            # summed on the device: the host reads the counts only when it
            # reports them (once per interval in training)
            n = far.sum()
            counts = self.far[phase]
            counts[0] = counts[0] + n
            counts[1] = counts[1] + n
            counts[2] += far.shape[0]

    def _warn_far(self, runner, phase: str, window: str) -> None:
        total, new, solved = (int(c) for c in self.far[phase])
        if new:
            runner.logger.warning(
                f'DEQ forward solve ({phase}): {new} sample(s) in {window} '
                f'stopped unconverged over {FAR:g}x their tolerance; '
                f'{total} of {solved} so far. Consider a larger budget '
                '(set_solver / solver_cfg.max_iter), a Jacobian loss, or '
                'a longer unrolled warm-up.')
        self.far[phase][1] = 0

    def _push(self, runner, prefix: str) -> None:
        output = find_mdeq(runner.model).last_output
        if output is None:
            return
        scalars = output.summary()
        if 'bwd_fallback' in scalars:  # the running total, not this batch's
            scalars['bwd_fallback'] = float(self.fallback_total)
        if 'fwd_far' in scalars:
            scalars['fwd_far'] = float(self.far[prefix][0])
        for key, value in scalars.items():
            runner.message_hub.update_scalar(f'{prefix}/deq/{key}', value)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._count_far(runner, 'train')
        stats = find_mdeq(runner.model).last_stats
        if stats is not None and stats.backward is not None:
            self.fallback_total += stats.fallback
            self.fallback_window += stats.fallback
            self.backward_total += stats.backward.nfev.shape[0]
        if not (self.every_n_train_iters(runner, self.interval)
                or self.is_last_train_iter(runner)):
            return
        self._push(runner, 'train')
        if self.fallback_window:
            runner.logger.warning(
                f'DEQ backward solve: {self.fallback_window} sample(s) in '
                f'the last {self.interval} iteration(s) fell back to the '
                'one-step gradient (their solve did not improve on its '
                f'start); {self.fallback_total} of {self.backward_total} '
                'so far. Consider a longer unrolled warm-up, a larger '
                'backward budget or a Jacobian loss.')
            self.fallback_window = 0
        self._warn_far(runner, 'train',
                       f'the last {self.interval} iteration(s)')

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self._count_far(runner, 'val')
        self._push(runner, 'val')

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        self._count_far(runner, 'test')
        self._push(runner, 'test')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._warn_far(runner, 'val', 'this validation')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._warn_far(runner, 'test', 'this test')
