# Copyright (c) mdeq_mm authors. All rights reserved.
from .cpu_dist import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import (DEQJacobianScheduleHook, DEQTelemetryHook,
                    DEQWarmupHook, RunStatsHook, find_mdeq_backbone)

__all__ = [
    'DEQWarmupHook', 'DEQJacobianScheduleHook', 'DEQTelemetryHook',
    'RunStatsHook', 'find_mdeq_backbone',
    'CPUDistributedDataParallel', 'setup_cpu_distributed'
]
