# Copyright (c) mdeq_mm authors. All rights reserved.
from .checkpointing import (AtomicCheckpointHook, checkpoint_problem,
                            resume_checkpoint, write_last_checkpoint)
from .cpu_dist import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import (DEQJacobianScheduleHook, DEQTelemetryHook,
                    DEQWarmupHook, RunStatsHook, find_mdeq_backbone)
from .resilience import (DivergenceGuardHook, FiniteOptimWrapper,
                         GracefulStopHook, TrainingDiverged,
                         TrainingInterrupted, enable_fault_tolerance,
                         save_interrupted)

__all__ = [
    'DEQWarmupHook', 'DEQJacobianScheduleHook', 'DEQTelemetryHook',
    'RunStatsHook', 'find_mdeq_backbone', 'CPUDistributedDataParallel',
    'setup_cpu_distributed', 'AtomicCheckpointHook', 'checkpoint_problem',
    'resume_checkpoint', 'write_last_checkpoint', 'DivergenceGuardHook',
    'FiniteOptimWrapper', 'GracefulStopHook', 'TrainingDiverged',
    'TrainingInterrupted', 'enable_fault_tolerance', 'save_interrupted'
]
