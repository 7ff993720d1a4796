# Copyright (c) mdeq_mm authors. All rights reserved.
"""Modules for the tool runs of the tests, imported through
``custom_imports=dict(imports=['mdeq_mm', 'tests.plugins'])``: a dataset
class for generated CIFAR files and fault injectors."""
import os
import os.path as osp
import signal
import threading
import time

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmpretrain.datasets import CIFAR10
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
class CIFAR10GeneratedFiles(CIFAR10):
    """mmpretrain's CIFAR10 on files in the real format written by
    :func:`mdeq_mm.datasets.demo_data.write_cifar10`: everything as in
    CIFAR10 (pickle batches, splits, labels) except the md5 check of the
    official files, which generated files cannot pass."""

    def _check_integrity(self):
        folder = osp.join(self.data_prefix['root'], self.base_folder)
        return all(
            osp.isfile(osp.join(folder, name))
            for name, _ in self.train_list + self.test_list)


@HOOKS.register_module()
class KillDuringSaveHook(Hook):
    """SIGKILL this process while it writes the checkpoint of iteration
    ``at_iter`` to disk: 256 MB of ballast make the write long, and a
    watcher thread kills the process as soon as the file being written
    appears in the work dir (before it is complete)."""

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta'].get('iter') != self.at_iter:
            return
        checkpoint['ballast'] = torch.ones(64 * 2**20)
        before = set(os.listdir(runner.work_dir))

        def watch():
            while True:
                new = set(os.listdir(runner.work_dir)) - before
                if any(n.startswith(f'iter_{self.at_iter}') or
                       n.endswith('.tmp') for n in new):
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(0.0005)

        threading.Thread(target=watch, daemon=True).start()


@HOOKS.register_module()
class NaNLossAfterHook(Hook):
    """From iteration ``start`` on (1-based), make the segmentor's loss
    NaN by poisoning the images of the batch (a diverging run)."""

    def __init__(self, start: int):
        self.start = start

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 >= self.start:
            data_batch['inputs'] = [
                torch.full_like(x, float('nan'), dtype=torch.float32)
                for x in data_batch['inputs']
            ]
