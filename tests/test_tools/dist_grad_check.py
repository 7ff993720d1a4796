# Copyright (c) mdeq_mm authors. All rights reserved.
"""Run under torchrun (2 processes, gloo, CPU): each rank computes the loss
of its half of a shared global batch through DDP; rank 0 compares the
averaged gradients with a single-process run on the whole batch and writes
the largest relative error to the file given as argv[1]."""
import json
import sys

import torch
import torch.distributed as dist
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

import mdeq_mm  # noqa: F401


def build():
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    gn = dict(type='GN', num_groups=4, requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(
            ConfigDict(
                type='EncoderDecoder',
                data_preprocessor=dict(
                    type='SegDataPreProcessor', size_divisor=32,
                    mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375]),
                backbone=dict(
                    type='MDEQ', norm_cfg=gn,
                    arch=dict(base='small', num_channels=(8, 16, 32, 64),
                              expansion=2),
                    solver_cfg=dict(max_iter=6, tol=1e-4),
                    grad_cfg=dict(solver_cfg=dict(max_iter=6, tol=1e-4))),
                decode_head=dict(type='MDEQHead', in_channels=[8, 16, 32, 64],
                                 num_classes=3, norm_cfg=gn),
                train_cfg=dict(), test_cfg=dict(mode='whole')))


def grads(model, batch):
    module = getattr(model, 'module', model)
    data = module.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return {n: p.grad.detach().clone()
            for n, p in module.named_parameters() if p.grad is not None}


def main():
    from tests.helpers import seg_batch
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    batch = seg_batch(4, 64, 64, num_classes=3)
    half = {k: v[2 * rank:2 * rank + 2] for k, v in batch.items()}
    model = torch.nn.parallel.DistributedDataParallel(build())
    model.train()
    dist_grads = grads(model, half)
    if rank == 0:
        single = build()
        single.train()
        ref = grads(single, batch)
        assert set(ref) == set(dist_grads)
        err = max(((dist_grads[k] - ref[k]).norm() /
                   (ref[k].norm() + 1e-12)).item() for k in ref)
        with open(sys.argv[1], 'w') as f:
            json.dump(dict(max_rel_err=err, world=world, n=len(ref)), f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
