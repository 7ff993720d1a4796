# Copyright (c) mdeq_mm authors. All rights reserved.
from .mdeq import (ARCH_SETTINGS, MDEQ, FixedPointMap, MDEQOutput,
                   resolve_arch, swap_backbone)

__all__ = ['MDEQ', 'MDEQOutput', 'FixedPointMap', 'ARCH_SETTINGS',
           'resolve_arch', 'swap_backbone']
