# Copyright (c) mdeq_mm authors. All rights reserved.
"""Time, peak memory, f evaluations and FLOPs of any model's training step
or inference.

On CUDA the peak is torch's ``max_memory_allocated`` and times come from
CUDA events. On CPU the peak is the process's peak resident set size
(VmHWM), reset at the start of the measured region through
``/proc/self/clear_refs``, so it counts PyTorch's CPU allocations (and
everything else the region allocates); run each case in its own process
(:func:`run_isolated`) so that earlier cases leave no freed memory behind
that later ones reuse.

Typical use::

    model = init_model(config, checkpoint, 'cuda')
    print(measure_config(model, 'infer', repeat=10, size=(1024, 2048)))
"""
import contextlib
import multiprocessing as mp
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn


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


def random_batch(task: str, bsz: int, size, device):
    """A seeded random batch for timing: (images (B, 3, H, W), data
    samples with random labels), ``task`` 'seg' (19 classes) or 'cls'."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bsz, 3, *size, generator=g).to(device)
    if task == 'seg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(bsz):
            s = SegDataSample()
            s.gt_sem_seg = PixelData(data=torch.randint(
                0, 19, (1, *size), generator=g).to(device))
            s.set_metainfo(dict(img_shape=size, ori_shape=size,
                                pad_shape=size))
            samples.append(s)
    else:
        from mmpretrain.structures import DataSample
        samples = [DataSample().set_gt_label(i) for i in range(bsz)]
    return x, samples


def make_step(net, kind: str, x, samples):
    """One training step (forward, loss, backward; the model in train mode)
    or one inference forward without grad (eval mode), as a callable."""
    if kind == 'train':
        net.train()

        def step():
            losses = net(x, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if 'loss' in k)
            loss.backward()
            net.zero_grad(set_to_none=True)
    else:
        net.eval()

        def step():
            with torch.no_grad():
                net(x, mode='tensor')
    return step


def _time(step, device, repeat, mean_of):
    if mean_of:
        return sum(timed(step, device) for _ in range(mean_of)) / mean_of
    return timed(step, device, repeat)


def measure(net, kind: str, x, samples, device, repeat: int = 1,
            mean_of: Optional[int] = None) -> Dict[str, Any]:
    """Time ``net``'s training step or inference (:func:`make_step`) on
    ``(x, samples)``: one warm-up (lazy initialisation, cudnn's algorithm
    search), then the median of ``repeat`` calls (or the mean of
    ``mean_of``). A training step of an MDEQ whose Jacobian loss runs on a
    random fraction p of the steps is timed with and without it (each with
    its own warm-up) and reported as the expectation (1 - p) t₀ + p t₁, so
    the figure does not depend on how many timed steps drew the loss.

    Returns:
        dict: ``s`` (seconds), ``peak_mb`` (peak memory above the level
        before the warm-up), ``mode`` (the first MDEQ's gradient mode, or
        None), ``nfev_fwd`` / ``nfev_bwd`` (the f evaluations of its
        forward / backward solve in the last step, mean over the batch;
        absent where there was none) and, for a Jacobian loss on a
        fraction of the steps, ``s_without_jac``, ``s_with_jac`` and
        ``jac_freq``.
    """
    from mdeq_mm.apis import find_mdeqs
    step = make_step(net, kind, x, samples)
    # the peak is taken from before the first step: on CPU, memory freed by
    # a step stays in the process and would hide the next step's peak
    mdeqs = find_mdeqs(net)
    # a Jacobian loss on a random fraction p of the training steps: the
    # steps with and without it timed apart, the expectation reported
    p = next((m.jac_loss_cfg['freq'] for m in mdeqs if m.jac_loss_cfg and
              m.jac_loss_cfg['weight']), None) if kind == 'train' else None
    parts = {}
    with PeakMemory(device) as mem:
        if p is not None and 0 < p < 1:
            for on in (False, True):
                with contextlib.ExitStack() as stack:
                    for m in mdeqs:
                        stack.enter_context(m.jacobian_loss_on(on))
                    step()
                    parts[on] = _time(step, device, repeat, mean_of)
            seconds = (1 - p) * parts[False] + p * parts[True]
        else:
            step()
            seconds = _time(step, device, repeat, mean_of)
    out = dict(s=seconds, peak_mb=mem.delta / 2**20, mode=None)
    if parts:
        out.update(s_without_jac=parts[False], s_with_jac=parts[True],
                   jac_freq=p)
    stats = [m.last_stats for m in mdeqs][:1]
    if stats and stats[0] is not None:
        out['mode'] = stats[0].mode
        for key, solve in (('nfev_fwd', stats[0].forward),
                           ('nfev_bwd', stats[0].backward)):
            if solve is not None:
                out[key] = solve.nfev.float().mean().item()
        if stats[0].forward is not None:
            out['rel_residual'] = stats[0].forward.rel_lowest.mean().item()
    return out


def measure_random(net, kind: str, size: Sequence[int], bsz: int, device,
                   repeat: int, task: str = 'seg') -> Dict[str, Any]:
    """:func:`measure` on a :func:`random_batch` of ``bsz`` images."""
    x, samples = random_batch(task, bsz, size, device)
    return measure(net, kind, x, samples, device, repeat)


def measure_config(model, kind: str, repeat: int = 1,
                   mean_of: Optional[int] = None,
                   size: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """:func:`measure` a model from :func:`mdeq_mm.apis.init_model` on its
    config's own data: a training batch (``kind`` 'train', the config's
    batch size) or one validation image (``'infer'``), resized to ``size``
    (H, W) when given."""
    import torch.nn.functional as F

    from mdeq_mm.apis import data_batch
    device = next(model.parameters()).device
    if kind == 'train':
        x, samples = data_batch(model, model.cfg.train_dataloader.batch_size,
                                split='train', training=True)
    else:
        x, samples = data_batch(model, 1)
    if size is not None:
        x = F.interpolate(x, size=tuple(size), mode='bilinear')
    return measure(model, kind, x, samples, device, repeat, mean_of)


def _layer_cost(module: nn.Module, inputs, output) -> Tuple[int, int]:
    """(MACs, other FLOPs) of one call of a leaf layer (see
    :func:`count_flops`)."""
    from mdeq_mm.models.layers import WeightNormConv2d
    x = inputs[0] if inputs else None
    if isinstance(module, WeightNormConv2d):
        c_out, c_in, kh, kw = module.weight_v.shape
        return output.numel() * c_in * kh * kw, 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * module.in_channels // module.groups * \
            kh * kw, 0
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features, 0
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)):
        affine = getattr(module, 'affine', None)
        if affine is None:  # LayerNorm
            affine = module.elementwise_affine
        return 0, x.numel() * (4 + 2 * bool(affine))
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        batch_stats = module.training or not module.track_running_stats
        return 0, x.numel() * ((4 if batch_stats else 2) +
                               2 * bool(module.affine))
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU,
                           nn.SiLU, nn.Sigmoid, nn.Hardswish)):
        return 0, x.numel()
    return 0, 0


COUNTED = 'convolutions, linear layers, normalisations, activations'


def count_flops(model: nn.Module, inputs: Tensor) -> Dict[str, Any]:
    """Count the FLOPs of one inference forward of ``model`` on ``inputs``
    (batch 1 for per-image figures), and of one f evaluation of each MDEQ
    in it, with forward hooks on the leaf layers:

    * convolutions (nn.Conv2d, the weight-normed convs) and linear layers:
      multiply-accumulates (MACs), one per weight and output element, 2
      FLOPs each;
    * normalisations: per input element 4 FLOPs with batch statistics
      (GroupNorm, LayerNorm, InstanceNorm, BatchNorm in training: mean,
      variance, subtract, divide) or 2 with running statistics (BatchNorm
      in evaluation), plus 2 when affine;
    * activations (ReLU and the like): 1 per element.

    Element-wise tensor arithmetic outside layers (residual sums,
    resizing) and the solver's own arithmetic are not counted.

    Returns:
        dict: ``params``; ``macs`` and ``flops`` of the whole forward;
        ``f_macs`` / ``f_flops`` of one f evaluation (summed over the
        MDEQs), ``f_calls`` (f evaluations in this forward) and
        ``outside_flops`` (everything but f), so that the FLOPs at a budget
        of b evaluations are ``outside_flops + b * f_flops``.
    """
    from mdeq_mm.apis import find_mdeqs
    layers = {id(m) for mdeq in find_mdeqs(model)
              for m in mdeq.deq_layer.modules()}
    totals = dict(macs=0, other=0, f_macs=0, f_other=0)
    calls = [0]

    def hook(module, inputs, output):
        macs, other = _layer_cost(module, inputs, output)
        totals['macs'] += macs
        totals['other'] += other
        if id(module) in layers:
            totals['f_macs'] += macs
            totals['f_other'] += other

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children())]
    handles += [mdeq.deq_layer.register_forward_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1))
        for mdeq in find_mdeqs(model)]
    try:
        with torch.no_grad():
            if hasattr(model, 'data_preprocessor'):  # an OpenMMLab model
                model(inputs, mode='tensor')
            else:
                model(inputs)
    finally:
        for h in handles:
            h.remove()
    n = max(calls[0], 1)
    flops = 2 * totals['macs'] + totals['other']
    f_flops = (2 * totals['f_macs'] + totals['f_other']) / n
    return dict(params=sum(p.numel() for p in model.parameters()),
                macs=totals['macs'], flops=flops,
                f_macs=totals['f_macs'] / n, f_flops=f_flops,
                f_calls=calls[0], outside_flops=flops - calls[0] * f_flops)


__all__ = ['PeakMemory', 'peak_memory_bytes', 'timed', 'run_isolated',
           'random_batch', 'make_step', 'measure', 'measure_random',
           'measure_config', 'count_flops']
