# Copyright (c) mdeq_mm authors. All rights reserved.
"""Register mdeq_mm modules into the host packages' registries."""
import importlib
from typing import Sequence

HOSTS = ('mmseg', 'mmpretrain')


def register(kind: str, hosts: Sequence[str] = HOSTS, root: bool = False):
    """The one way mdeq_mm registers a class: a decorator that puts it in
    the ``kind`` registry (e.g. 'MODELS', 'TRANSFORMS', 'HOOKS') of every
    installed host package among ``hosts``, and in mmengine's root registry
    when ``root`` (for Runners with ``default_scope='mmengine'``, and for
    mmengine-only registries such as 'MODEL_WRAPPERS' with ``hosts=()``)
    or when no host is installed.

    Example::

        @register('MODELS', hosts=('mmseg', ))
        class MDEQHead(BaseDecodeHead):
            ...
    """

    def decorate(cls):
        registered = False
        for host in hosts:
            try:
                registry = getattr(
                    importlib.import_module(f'{host}.registry'), kind)
            except ImportError:
                continue
            registry.register_module(module=cls)
            registered = True
        if root or not registered:
            registry = getattr(importlib.import_module('mmengine.registry'),
                               kind)
            registry.register_module(module=cls)
        return cls

    return decorate


def scope_of(cfg) -> str:
    """The host package of a config: its ``default_scope`` ('mmseg' when
    unset, as the project's segmentation configs assume)."""
    scope = cfg.get('default_scope', None) or 'mmseg'
    if scope not in HOSTS:
        raise ValueError(f'default_scope {scope!r}: mdeq_mm builds models '
                         f'of {list(HOSTS)}; set default_scope to one of '
                         'them in the config')
    return scope


def build_model(cfg, model_cfg=None):
    """Build ``cfg.model`` (or ``model_cfg``) in the MODELS registry of the
    config's scope (:func:`scope_of`), inside that default scope."""
    from mmengine.registry import DefaultScope
    scope = scope_of(cfg)
    models = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return models.build(cfg.model if model_cfg is None else model_cfg)
