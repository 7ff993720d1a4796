# Copyright (c) mdeq_mm authors. All rights reserved.
"""Models. The backbone needs only mmengine/mmcv; the segmentation parts are
imported when mmseg is installed, the classification parts when mmpretrain
is."""
import importlib.util

from .backbones import MDEQ, FixedPointMap, MDEQOutput, swap_backbone
from .layers import MDEQLayer, VariationalDropout2d, WeightNormConv2d
from .regularized import add_deq_losses
from .solver_fitter import LearnedSolverFitter

__all__ = [
    'MDEQ', 'MDEQOutput', 'FixedPointMap', 'MDEQLayer', 'VariationalDropout2d',
    'WeightNormConv2d', 'add_deq_losses', 'swap_backbone',
    'LearnedSolverFitter'
]

if importlib.util.find_spec('mmseg') is not None:
    from .decode_heads import MDEQHead  # noqa: F401
    from .losses import WeightedCrossEntropyLoss  # noqa: F401
    from .necks import MDEQFuseNeck  # noqa: F401
    from .regularized import DEQEncoderDecoder  # noqa: F401
    __all__ += [
        'MDEQHead', 'MDEQFuseNeck', 'DEQEncoderDecoder',
        'WeightedCrossEntropyLoss'
    ]
if importlib.util.find_spec('mmpretrain') is not None:
    from .necks import MDEQClsNeck  # noqa: F401
    from .regularized import DEQImageClassifier  # noqa: F401
    __all__ += ['MDEQClsNeck', 'DEQImageClassifier']
