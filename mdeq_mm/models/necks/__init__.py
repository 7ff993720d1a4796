# Copyright (c) mdeq_mm authors. All rights reserved.
import importlib.util

__all__ = []
if importlib.util.find_spec('mmseg') is not None:
    from .fuse_neck import MDEQFuseNeck  # noqa: F401
    __all__ += ['MDEQFuseNeck']
if importlib.util.find_spec('mmpretrain') is not None:
    from .cls_neck import MDEQClsNeck  # noqa: F401
    __all__ += ['MDEQClsNeck']
