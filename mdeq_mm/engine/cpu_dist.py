# Copyright (c) mdeq_mm authors. All rights reserved.
"""Distributed training on CPUs (gloo) with mmengine's Runner.

mmengine 0.10.7 assumes one GPU per process for ``--launcher pytorch``: it
calls ``torch.cuda.set_device`` while initialising and passes
``device_ids=[LOCAL_RANK]`` to DDP, both of which fail without CUDA. The
project's tools call :func:`setup_cpu_distributed`, which initialises a gloo
process group first (the Runner then skips its own initialisation) and
selects :class:`CPUDistributedDataParallel`, which drops ``device_ids``.
"""
import datetime
import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from mdeq_mm.registry import register


@register('MODEL_WRAPPERS', hosts=(), root=True)
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel for CPU modules (no ``device_ids``)."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg) -> bool:
    """Prepare ``cfg`` for a CPU multi-process run; True if it applies."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    if cfg.launcher != 'pytorch':
        raise ValueError(f'--launcher {cfg.launcher} without CUDA is not '
                         'supported; use torchrun with --launcher pytorch')
    if not dist.is_initialized():
        timeout = ((cfg.get('env_cfg') or {}).get('dist_cfg') or {}).get(
            'timeout')  # seconds, as mmengine takes it for NCCL
        dist.init_process_group(
            'gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **({} if timeout is None else dict(
                timeout=datetime.timedelta(seconds=timeout))))
    wrapper = cfg.get('model_wrapper_cfg') or {}
    wrapper = dict(wrapper)
    wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
