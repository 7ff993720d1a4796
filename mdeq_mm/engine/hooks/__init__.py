# Copyright (c) mdeq_mm authors. All rights reserved.
from .deq_hooks import (DEQJacobianScheduleHook, DEQTelemetryHook,
                        DEQWarmupHook)
from .run_stats_hook import (RunStatsHook, last_entry, read_run_stats,
                             read_scalars, run_summary, runs_table,
                             training_phases)

__all__ = [
    'DEQWarmupHook', 'DEQJacobianScheduleHook', 'DEQTelemetryHook',
    'RunStatsHook', 'last_entry', 'read_run_stats', 'read_scalars',
    'run_summary', 'runs_table', 'training_phases'
]
