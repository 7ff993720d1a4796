# Copyright (c) mdeq_mm authors. All rights reserved.
from .checkpoint import allow_mmengine_checkpoints, publish_checkpoint

__all__ = ['allow_mmengine_checkpoints', 'publish_checkpoint']
