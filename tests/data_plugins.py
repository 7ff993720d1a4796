# Copyright (c) mdeq_mm authors. All rights reserved.
"""Dataset classes for runs on generated data (imported by the tool runs
of the tests through ``custom_imports``)."""
import os.path as osp

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
