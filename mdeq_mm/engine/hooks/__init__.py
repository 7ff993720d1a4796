# Copyright (c) mdeq_mm authors. All rights reserved.
from .deq_hooks import (DEQJacobianScheduleHook, DEQTelemetryHook,
                        DEQWarmupHook, find_mdeq_backbone)
from .run_stats_hook import RunStatsHook

__all__ = [
    'DEQWarmupHook', 'DEQJacobianScheduleHook', 'DEQTelemetryHook',
    'RunStatsHook', 'find_mdeq_backbone'
]
