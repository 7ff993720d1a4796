# Copyright (c) mdeq_mm authors. All rights reserved.
"""Models. The backbone needs only mmengine/mmcv; the segmentation parts are
imported when mmseg is installed, the classification parts when mmpretrain
is."""
import importlib.util

from .backbones import MDEQ
from .layers import MDEQLayer, VariationalDropout2d, WeightNormConv2d

__all__ = ['MDEQ', 'MDEQLayer', 'VariationalDropout2d', 'WeightNormConv2d']

if importlib.util.find_spec('mmseg') is not None:
    from .decode_heads import MDEQHead  # noqa: F401
    from .necks import MDEQFuseNeck  # noqa: F401
    __all__ += ['MDEQHead', 'MDEQFuseNeck']
if importlib.util.find_spec('mmpretrain') is not None:
    from .necks import MDEQClsNeck  # noqa: F401
    __all__ += ['MDEQClsNeck']
