# Copyright (c) mdeq_mm authors. All rights reserved.
"""Shared fixtures: small datasets in the formats users have them.

* ``cityscapes``: the official download's layout and files (label ids with
  void regions, instance ids, colour maps), converted to train ids by the
  project's converter, as a user would.
* ``imagenet``: train in class folders (with a grayscale JPEG, a CMYK JPEG
  and a PNG named .JPEG) plus ``meta/train.txt``; val flat with
  ``meta/val.txt``. ``imagenet_folders``: the same with val in class
  folders.
* ``cifar10``: CIFAR-10's python pickle batches.

Tests marked ``slow`` run real tool processes; ``pytest -m 'not slow'``
skips them for a quick local run. Tests marked ``cuda`` need a CUDA GPU and
skip without one (``pytest -m cuda`` runs just them; tools/gpu_check.py).
"""
import faulthandler
import os

import pytest

from mdeq_mm.datasets.demo_data import write_cifar10, write_imagenet
from tests.helpers import cityscapes_train_ids


_STDERR = []  # the terminal's stderr (tests run with fd 2 captured)


def pytest_configure(config):
    _STDERR.append(os.fdopen(os.dup(2), 'w'))
    config.addinivalue_line(
        'markers', 'slow: runs tool subprocesses (skip: -m "not slow")')
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU (skipped without one)')


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


#: seconds one test may take (its setup, call and teardown) before the run
#: ends with every thread's stack printed: a hang fails fast and names
#: where it is (the slowest test takes about a minute on 2 cores)
TEST_LIMIT_S = float(os.environ.get('MDEQ_MM_TEST_LIMIT_S', 600))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    faulthandler.dump_traceback_later(TEST_LIMIT_S, exit=True,
                                      file=_STDERR[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _fresh_message_hub(request):
    """Each test starts with a message hub of its own (the current one is
    the newest), so a Runner of an earlier test leaves no training
    iteration behind for the backbones of this one."""
    from mmengine.logging import MessageHub
    MessageHub.get_instance(f'test:{request.node.nodeid}')


@pytest.fixture(scope='session')
def cityscapes(tmp_path_factory):
    return cityscapes_train_ids(tmp_path_factory.mktemp('cityscapes'),
                                n_train=6, n_val=3)


@pytest.fixture(scope='session')
def imagenet(tmp_path_factory):
    return write_imagenet(str(tmp_path_factory.mktemp('imagenet')),
                          n_train=3, n_val=2, val_layout='flat')


@pytest.fixture(scope='session')
def imagenet_folders(tmp_path_factory):
    return write_imagenet(str(tmp_path_factory.mktemp('imagenet_folders')),
                          n_train=3, n_val=2, val_layout='folders')


@pytest.fixture(scope='session')
def cifar10(tmp_path_factory):
    return write_cifar10(str(tmp_path_factory.mktemp('cifar10')))
