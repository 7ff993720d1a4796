# Copyright (c) mdeq_mm authors. All rights reserved.
from .deq_hooks import (DEQJacobianScheduleHook, DEQTelemetryHook,
                        DEQWarmupHook)
from .run_stats_hook import RunStatsHook

__all__ = [
    'DEQWarmupHook', 'DEQJacobianScheduleHook', 'DEQTelemetryHook',
    'RunStatsHook'
]
