# Copyright (c) mdeq_mm authors. All rights reserved.
"""Train an mdeq_mm model with mmsegmentation or mmpretrain.

The task follows the config's ``default_scope`` ('mmseg' or 'mmpretrain').
Flags follow the OpenMMLab tools. Works from a checkout without PYTHONPATH.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]]
        [--amp] [--no-validate] [--max-bad-steps K] [--partial-load]
        [--dist-timeout SECONDS] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Progress is never lost: SIGTERM / SIGUSR1 / Ctrl-C stop after the current
iteration with a checkpoint that ``--resume auto`` continues from;
checkpoints are written atomically; K non-finite steps in a row (each is
skipped) stop the run with the last finite weights saved. See
:mod:`mdeq_mm.engine.resilience`.
"""
import argparse
import sys


def _collective_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a distributed collective that timed out."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        'timed out' in text or 'timeout' in text) and (
            'gloo' in text or 'nccl' in text or 'recv' in text
            or 'collective' in text or 'watchdog' in text)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def parse_args(argv=None):
    from mmengine.config import DictAction

    from tool_utils import parse_with_launcher
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the latest checkpoint in the work_dir (no value, '
        'or "auto"), or from the given checkpoint')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision (GPU)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate during training')
    parser.add_argument(
        '--max-bad-steps', type=_at_least_one, default=5,
        help='consecutive non-finite steps (each skipped) that stop '
        'training with the last finite weights saved (>= 1)')
    parser.add_argument(
        '--dist-timeout', type=_at_least_one, metavar='SECONDS',
        help='end a multi-process run when a collective operation waits '
        'longer than this for another rank (default: the backend\'s, '
        '30 min)')
    parser.add_argument(
        '--partial-load', action='store_true',
        help='let load_from / --resume load a checkpoint that does not fit '
        'the model (the keys that do not fit keep their initialisation, '
        'summarised); by default such a checkpoint stops the run')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    return parse_with_launcher(parser, argv)


def _warn_drift(cfg) -> None:
    """Warn when a resume changes what the checkpoint's run trained with
    (batch, schedule, model, optimiser): such a resume is another run."""
    import os.path as osp

    from mdeq_mm.engine import config_drift
    drift = config_drift(cfg, cfg.load_from)
    if drift:
        dumped = osp.join(cfg.work_dir, osp.basename(cfg.filename or ''))
        print(f'warning: resuming {cfg.load_from} with another config than '
              'the one it was trained with:\n  ' + '\n  '.join(drift) +
              f'\n  To continue that run unchanged: python tools/train.py '
              f'{dumped} --work-dir {cfg.work_dir} --resume auto',
              file=sys.stderr)


def build_cfg(args):
    """The config with the command-line options applied."""
    from mdeq_mm.datasets import check_datasets
    from mdeq_mm.engine import (checkpoint_problem, enable_fault_tolerance,
                                require_fitting_checkpoints,
                                resume_checkpoint)
    from tool_utils import load_tool_cfg
    if args.dist_timeout:
        args.cfg_options = dict(args.cfg_options or {},
                                **{'env_cfg.dist_cfg.timeout':
                                   args.dist_timeout})
    cfg = load_tool_cfg(args.config, args.cfg_options, args.work_dir,
                        args.launcher)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device (mmengine\'s '
                             'AmpOptimWrapper); drop --amp on CPU')
        optim = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, resume_checkpoint(
            cfg.work_dir, warn=lambda m: print(f'warning: {m}',
                                               file=sys.stderr))
        if cfg.load_from is None:
            print(f'no checkpoint to resume in {cfg.work_dir}: training '
                  'starts from iteration 0', file=sys.stderr)
            cfg.resume = False
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.resume != 'auto' and cfg.get('load_from'):
        # (--resume auto: resume_checkpoint has checked its choice)
        problem = checkpoint_problem(cfg.load_from)
        if problem:
            raise SystemExit(f'error: cannot load {cfg.load_from}: {problem}')
    enable_fault_tolerance(cfg, args.max_bad_steps)
    require_fitting_checkpoints(cfg, partial=args.partial_load)
    if cfg.get('resume') and cfg.get('load_from'):
        _warn_drift(cfg)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    check_datasets(
        cfg, ['train_dataloader'] +
        ([] if args.no_validate else ['val_dataloader']))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mdeq_mm.engine import (TrainingDiverged, TrainingInterrupted,
                                made_progress, save_interrupted)
    from mdeq_mm.engine.resilience import resume_command
    from tool_utils import close_distributed, runner_for, user_error_exit
    runner = runner_for(build_cfg, args)
    try:
        runner.train()
    except TrainingInterrupted as e:  # a signal; the checkpoint is saved
        close_distributed(runner)
        print(f'\n{e}', file=sys.stderr)
        sys.exit(128 + e.signum)
    except TrainingDiverged as e:  # the last finite weights are saved
        close_distributed(runner)
        raise SystemExit(f'error: {e}')
    except BaseException as e:
        # Never lose the progress of a run that dies (out of memory, a bad
        # file, an error in a hook): save where it stopped, then re-raise.
        from mdeq_mm.engine import CheckpointSaveError
        # (a save that failed for want of space would fail again)
        if made_progress(runner) and runner.rank == 0 and not isinstance(
                e, CheckpointSaveError):
            path = save_interrupted(runner)
            runner.logger.error(
                f'training failed in iteration {runner.iter + 1}; saved '
                f'{path}: the weights after iteration {runner.iter}, '
                'counted as after the failed one (a resume skips its '
                f'batch). Resume with: {resume_command(runner, path)}')
        exit_ = user_error_exit(e, data_only=True)
        if exit_ is not None:
            raise exit_ from None
        if _collective_timeout(e):
            raise SystemExit(
                f'error: rank {runner.rank}: a collective operation timed '
                'out waiting for another rank, which stopped answering '
                f'(hung, stopped or killed): {str(e).splitlines()[0][:200]}'
                '. Its own log names why; the checkpoints are intact: '
                'restart with --resume auto') from None
        raise
    close_distributed(runner)


if __name__ == '__main__':
    main()
