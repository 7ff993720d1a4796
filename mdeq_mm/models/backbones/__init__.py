# Copyright (c) mdeq_mm authors. All rights reserved.
from .mdeq import ARCH_SETTINGS, MDEQ, resolve_arch

__all__ = ['MDEQ', 'ARCH_SETTINGS', 'resolve_arch']
