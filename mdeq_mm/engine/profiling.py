# Copyright (c) mdeq_mm authors. All rights reserved.
"""Peak-memory and timing helpers for the benchmark tools.

On CUDA the peak is torch's ``max_memory_allocated``. On CPU it is the
process's peak resident set size (VmHWM), reset at the start of the
measured region through ``/proc/self/clear_refs``, so it counts PyTorch's CPU
allocations (and everything else the region allocates). Run each case in its
own process (:func:`run_isolated`) so that earlier cases do not leave freed
memory behind that later ones reuse.
"""
import json
import multiprocessing as mp
import os
import os.path as osp
import time
from typing import Any, Callable, Dict

import torch


def _proc_status(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_memory_bytes(cuda: bool) -> int:
    """Peak so far: torch's max allocated memory on CUDA, the process's
    peak resident set size (VmHWM) on CPU."""
    if cuda:
        return torch.cuda.max_memory_allocated()
    return _proc_status('VmHWM')


class PeakMemory:
    """Context manager measuring the peak memory above the entry level.

    Attributes:
        delta (int): bytes of peak memory above the level at entry.
    """

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == 'cuda'
        self.delta = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset VmHWM to the current RSS
            self.base = _proc_status('VmRSS')
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.delta = max(0, peak_memory_bytes(self.cuda) - self.base)
        return False


def timed(fn: Callable, device, repeat: int = 1) -> float:
    """Median time of ``repeat`` calls of ``fn()`` in seconds: wall time on
    the CPU; on CUDA the time between CUDA events recorded around each
    call on the current stream (host gaps inside the call included)."""
    cuda = torch.device(device).type == 'cuda'
    times = []
    for _ in range(repeat):
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def run_isolated(target: Callable[..., Dict[str, Any]],
                 **kwargs) -> Dict[str, Any]:
    """Run ``target(**kwargs)`` in a fresh spawned process; return its dict.

    ``target`` must be importable (a module-level function).
    """
    ctx = mp.get_context('spawn')
    with ctx.Pool(1) as pool:
        return pool.apply(target, kwds=kwargs)


def save_results(data, png_path: str, plot: Callable) -> str:
    """Save ``data`` as JSON beside ``png_path`` (same stem; first, so that
    a failing plot loses nothing), then draw ``plot(data, png_path)``;
    creates the folder and returns the JSON path."""
    os.makedirs(osp.dirname(osp.abspath(png_path)), exist_ok=True)
    json_path = osp.splitext(png_path)[0] + '.json'
    with open(json_path, 'w') as f:
        json.dump(data, f, indent=1)
    plot(data, png_path)
    return json_path
