# Copyright (c) mdeq_mm authors. All rights reserved.
"""Register mdeq_mm modules into the host packages' registries."""
import importlib
from typing import Sequence

HOSTS = ('mmseg', 'mmpretrain')


def register(cls, kind: str, hosts: Sequence[str] = HOSTS,
             root: bool = False):
    """Register ``cls`` in the ``kind`` registry (e.g. 'MODELS',
    'TRANSFORMS', 'HOOKS') of every installed host package among
    ``hosts``, and in mmengine's root registry when ``root`` (for Runners
    with ``default_scope='mmengine'``) or when no host is installed;
    returns ``cls``."""
    registered = False
    for host in hosts:
        try:
            registry = getattr(importlib.import_module(f'{host}.registry'),
                               kind)
        except ImportError:
            continue
        registry.register_module(module=cls)
        registered = True
    if root or not registered:
        registry = getattr(importlib.import_module('mmengine.registry'),
                           kind)
        registry.register_module(module=cls)
    return cls
