# Copyright (c) mdeq_mm authors. All rights reserved.
"""Training time and peak memory of a run, also on CPU."""
import json
import os.path as osp
import time

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mdeq_mm.engine.profiling import peak_memory_bytes
from mdeq_mm.registry import register


@register('HOOKS', root=True)
class RunStatsHook(Hook):
    """Log the peak memory so far as ``train/peak_mem_mb`` (CUDA: torch's
    max allocated memory; CPU: the process's peak resident set size,
    VmHWM), so LoggerHook and the visualisation backends record it, and
    write ``<work_dir>/run_stats.json`` (training wall time, iterations,
    seconds per iteration, peak memory) when training ends.

    Args:
        interval (int): training iterations between memory updates.
    """
    priority = 'NORMAL'  # before LoggerHook, like DEQTelemetryHook

    def __init__(self, interval: int = 50):
        self.interval = interval

    @staticmethod
    def peak_mb() -> float:
        return peak_memory_bytes(torch.cuda.is_available()) / 2**20

    def before_train(self, runner) -> None:
        self.start, self.start_iter = time.perf_counter(), runner.iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval) or \
                self.is_last_train_iter(runner):
            runner.message_hub.update_scalar('train/peak_mem_mb',
                                             self.peak_mb())

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        seconds = time.perf_counter() - self.start
        iters = runner.iter - self.start_iter
        stats = dict(
            train_time_s=seconds,
            iters=iters,
            s_per_iter=seconds / max(1, iters),
            peak_mem_mb=self.peak_mb(),
            device='cuda' if torch.cuda.is_available() else 'cpu')
        with open(osp.join(runner.work_dir, 'run_stats.json'), 'w') as f:
            json.dump(stats, f, indent=1)
