# Copyright (c) mdeq_mm authors. All rights reserved.
"""mmengine hooks for MDEQ training: warm-up switch and solver telemetry.

They only read and set plain attributes of the backbone (``mode``,
``last_stats``); the backbone knows nothing of the Runner.
"""
import importlib

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS as ROOT_HOOKS

from mdeq_mm.models.backbones.mdeq import MDEQ


def find_mdeq_backbone(model) -> MDEQ:
    """The MDEQ inside a (possibly DDP-wrapped) segmentor or classifier."""
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, MDEQ):
        return model
    for m in model.modules():
        if isinstance(m, MDEQ):
            return m
    raise TypeError(f'{type(model).__name__} contains no MDEQ backbone; '
                    'remove the DEQ hooks from custom_hooks or use '
                    "backbone=dict(type='MDEQ', ...)")


class DEQWarmupHook(Hook):
    """Train unrolled (weight-tied, no solver) before ``warmup_iters``
    optimiser steps, implicitly after; evaluation always solves.

    The reference counts the warm-up ("PRETRAIN_STEPS") in optimiser
    iterations; rescale it when your total batch size differs.

    Args:
        warmup_iters (int): iterations in unrolled mode (0: none).
    """
    priority = 'NORMAL'

    def __init__(self, warmup_iters: int):
        if warmup_iters < 0:
            raise ValueError(f'warmup_iters must be >= 0: {warmup_iters}')
        self.warmup_iters = warmup_iters

    def _set(self, runner, it: int) -> None:
        backbone = find_mdeq_backbone(runner.model)
        mode = 'unrolled' if it < self.warmup_iters else 'implicit'
        if backbone.mode != mode:
            runner.logger.info(
                f'DEQWarmupHook: iteration {it}: MDEQ switches from '
                f'{backbone.mode} to {mode} training')
            backbone.mode = mode

    def before_train(self, runner) -> None:
        self._set(runner, runner.iter)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._set(runner, runner.iter)


class DEQTelemetryHook(Hook):
    """Push the backbone's solver statistics to the MessageHub after every
    training and validation iteration, so LoggerHook and the visualisation
    backends (local, TensorBoard) record them.

    Scalars, under ``train/deq/`` and ``val/deq/``: forward relative and
    absolute residual, evaluations, lowest step, converged fraction,
    per-scale relative residuals, backward residual and evaluations,
    fallbacks to the one-step gradient, and the tracked f applications.

    Args:
        interval (int): push every ``interval`` training iterations (the
            statistics cost a host sync).
    """
    # before LoggerHook (BELOW_NORMAL), so each logged line carries the
    # statistics of its own iteration
    priority = 'NORMAL'

    def __init__(self, interval: int = 1):
        self.interval = interval

    def _push(self, runner, prefix: str) -> None:
        stats = find_mdeq_backbone(runner.model).last_stats
        if stats is None:
            return
        for key, value in stats.summary().items():
            runner.message_hub.update_scalar(f'{prefix}/deq/{key}', value)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self._push(runner, 'train')

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self._push(runner, 'val')


def _register(*classes):
    for name in ('mmseg.registry', 'mmpretrain.registry'):
        try:
            registry = importlib.import_module(name).HOOKS
        except ImportError:
            continue
        for cls in classes:
            registry.register_module(module=cls)
    for cls in classes:
        ROOT_HOOKS.register_module(module=cls)


from .run_stats_hook import RunStatsHook  # noqa: E402

_register(DEQWarmupHook, DEQTelemetryHook, RunStatsHook)
