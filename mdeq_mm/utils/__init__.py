# Copyright (c) mdeq_mm authors. All rights reserved.
from .checkpoint import allow_mmengine_checkpoints, publish_checkpoint
from .config import load_config

__all__ = ['allow_mmengine_checkpoints', 'publish_checkpoint', 'load_config']
