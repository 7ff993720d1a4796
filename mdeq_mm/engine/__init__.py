# Copyright (c) mdeq_mm authors. All rights reserved.
from .checkpoint import (AtomicCheckpointHook, CheckpointFitHook,
                         CheckpointMismatch, CheckpointSaveError,
                         allow_mmengine_checkpoints, checkpoint_mismatch,
                         checkpoint_problem, config_drift,
                         describe_mismatch, model_state, publish_checkpoint,
                         require_fitting_checkpoints,
                         resume_checkpoint, write_last_checkpoint)
from .cpu_dist import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import (DEQJacobianScheduleHook, DEQTelemetryHook,
                    DEQWarmupHook, RunStatsHook, last_entry, read_run_stats,
                    read_scalars, run_summary, runs_table,
                    training_phases)
from .resilience import (DivergenceGuardHook, FiniteOptimWrapper,
                         GracefulStopHook, TrainingDiverged,
                         TrainingInterrupted, enable_fault_tolerance,
                         made_progress, save_interrupted)

__all__ = [
    'DEQWarmupHook', 'DEQJacobianScheduleHook', 'DEQTelemetryHook',
    'RunStatsHook', 'last_entry', 'read_run_stats', 'read_scalars',
    'run_summary', 'runs_table', 'training_phases',
    'CPUDistributedDataParallel',
    'setup_cpu_distributed',
    'AtomicCheckpointHook', 'CheckpointFitHook', 'CheckpointMismatch',
    'CheckpointSaveError',
    'checkpoint_mismatch', 'describe_mismatch', 'model_state',
    'config_drift', 'require_fitting_checkpoints',
    'allow_mmengine_checkpoints',
    'checkpoint_problem', 'publish_checkpoint', 'resume_checkpoint',
    'write_last_checkpoint', 'DivergenceGuardHook', 'FiniteOptimWrapper',
    'GracefulStopHook', 'TrainingDiverged', 'TrainingInterrupted',
    'enable_fault_tolerance', 'made_progress', 'save_interrupted'
]
