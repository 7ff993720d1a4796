# Copyright (c) mdeq_mm authors. All rights reserved.
from .deq_hooks import DEQTelemetryHook, DEQWarmupHook, find_mdeq_backbone

__all__ = ['DEQWarmupHook', 'DEQTelemetryHook', 'find_mdeq_backbone']
