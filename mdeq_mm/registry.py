# Copyright (c) mdeq_mm authors. All rights reserved.
"""Register mdeq_mm modules into the host packages' registries."""
import importlib
from typing import Sequence

HOSTS = ('mmseg', 'mmpretrain')


def register(cls, kind: str, hosts: Sequence[str] = HOSTS):
    """Register ``cls`` in the ``kind`` registry (e.g. 'MODELS',
    'TRANSFORMS', 'HOOKS') of every installed host package among
    ``hosts``; returns ``cls`` (usable as a decorator through
    functools.partial). Falls back to mmengine's root registry when no host
    is installed."""
    registered = False
    for host in hosts:
        try:
            registry = getattr(importlib.import_module(f'{host}.registry'),
                               kind)
        except ImportError:
            continue
        registry.register_module(module=cls)
        registered = True
    if not registered:
        registry = getattr(importlib.import_module('mmengine.registry'),
                           kind)
        registry.register_module(module=cls)
    return cls
