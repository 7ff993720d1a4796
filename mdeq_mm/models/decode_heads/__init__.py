# Copyright (c) mdeq_mm authors. All rights reserved.
from .mdeq_head import MDEQHead

__all__ = ['MDEQHead']
