# Copyright (c) mdeq_mm authors. All rights reserved.
from .mdeq import ARCH_SETTINGS, MDEQ, MDEQOutput, resolve_arch, swap_backbone

__all__ = ['MDEQ', 'MDEQOutput', 'ARCH_SETTINGS', 'resolve_arch',
           'swap_backbone']
