# Copyright (c) mdeq_mm authors. All rights reserved.
"""mdeq_mm: Multiscale Deep Equilibrium Models for OpenMMLab.

``custom_imports=dict(imports=['mdeq_mm'])`` registers everything: the MDEQ
backbone (mmseg and mmpretrain), the segmentation head and necks, the hooks,
and the checkpoint-loading fix for torch >= 2.6 (see
:mod:`mdeq_mm.engine.checkpoint`). Operations on a built model (load a
config's model, find its MDEQs, set their solver and budget) are in
:mod:`mdeq_mm.apis`.
"""
from . import apis, datasets, engine, models, ops
from .engine.checkpoint import allow_mmengine_checkpoints
from .version import __version__, version_info

allow_mmengine_checkpoints()

__all__ = [
    'apis', 'datasets', 'engine', 'models', 'ops', '__version__',
    'version_info'
]
