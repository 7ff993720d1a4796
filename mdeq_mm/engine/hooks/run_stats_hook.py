# Copyright (c) mdeq_mm authors. All rights reserved.
"""Training time and peak memory of a run, also on CPU, and the one
reader of what a run logged (``run_stats.json`` and mmengine's
``<timestamp>/vis_data/scalars.json``)."""
import glob
import json
import os.path as osp
import time
from typing import Dict, List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mdeq_mm.measure import peak_memory_bytes
from mdeq_mm.ops.validation import check_value, is_int
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
        check_value('RunStatsHook interval', interval, is_int(interval, 1),
                    'an int >= 1')
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


def read_run_stats(work_dir: str) -> Dict:
    """What :class:`RunStatsHook` wrote for the run in ``work_dir``
    (empty when it did not run)."""
    path = osp.join(work_dir, 'run_stats.json')
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_scalars(work_dir: str) -> List[List[Dict]]:
    """The logged scalars of every run in ``work_dir``, oldest run first:
    per run, the entries of its ``<timestamp>/vis_data/scalars.json`` (one
    per logged training iteration or validation) in order."""
    runs = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            runs.append([json.loads(line) for line in f if line.strip()])
    return runs


def last_entry(work_dir: str, key: str) -> Optional[Dict]:
    """The last logged entry holding ``key`` (e.g. 'mIoU') of the newest
    run in ``work_dir`` that logged one; None if none did."""
    for run in reversed(read_scalars(work_dir)):
        found = [e for e in run if key in e]
        if found:
            return found[-1]
    return None


def run_summary(work_dir: str, name: Optional[str] = None) -> Dict:
    """One run in ``work_dir``: its name (default: the folder's), the last
    validation entry (``val``: mIoU, the solver telemetry, time), the last
    ``mIoU`` and what :class:`RunStatsHook` wrote (train_time_s,
    s_per_iter, iters, peak_mem_mb)."""
    val = last_entry(work_dir, 'mIoU') or {}
    return dict(name=name or osp.basename(osp.normpath(work_dir)),
                work_dir=work_dir, mIoU=val.get('mIoU'), val=val,
                **read_run_stats(work_dir))


def training_phases(work_dir: str, warmup_iters: int) -> Dict:
    """The newest run's training log in ``work_dir``, split at the unrolled
    warm-up: logged iterations, the median seconds per iteration of each
    phase (the first iteration left out), the largest logged memory, and
    the last implicit iteration's loss, forward relative residual and the
    backward fallbacks summed over the implicit phase; the last mIoU."""
    import statistics
    runs = read_scalars(work_dir)
    rows = runs[-1] if runs else []
    steps = [r for r in rows if 'loss' in r and 'time' in r]
    implicit = [r for r in steps if r['iter'] > warmup_iters + 1]
    unrolled = [r for r in steps if 1 < r['iter'] <= warmup_iters]
    val = [r for r in rows if 'mIoU' in r]
    last = implicit[-1] if implicit else {}

    def median(rows):
        return statistics.median_high(r['time'] for r in rows) \
            if rows else None

    return dict(
        iters=len(steps), s_per_iter_unrolled=median(unrolled),
        s_per_iter_implicit=median(implicit),
        memory_mb=max([r.get('memory', 0) for r in steps], default=None),
        final_loss=last.get('loss'),
        fwd_rel_residual=last.get('deq/fwd_rel_residual'),
        bwd_fallback=sum(r.get('deq/bwd_fallback', 0) for r in implicit),
        mIoU=val[-1]['mIoU'] if val else None)


def runs_table(rows: List[Dict]) -> str:
    """:func:`run_summary` rows as a markdown table: mIoU, training time,
    s / iter, iterations, peak memory ('n/a' where a run lacks one)."""
    from mdeq_mm.report import fmt, markdown_table
    return markdown_table(
        ['run', 'mIoU', 'train time (s)', 's / iter', 'iterations',
         'peak memory (MB)'],
        [[r['name']] + [fmt(r.get(k), spec, 'n/a') for k, spec in (
            ('mIoU', '.2f'), ('train_time_s', '.0f'), ('s_per_iter', '.2f'),
            ('iters', 'd'), ('peak_mem_mb', '.0f'))] for r in rows])
