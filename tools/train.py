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
skipped) stop the run with the last finite weights saved. The run is
:mod:`mdeq_mm.engine.runs`'s; the safety net :mod:`mdeq_mm.engine.resilience`.
"""
import argparse


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


def main(argv=None):
    args = parse_args(argv)
    from mdeq_mm.engine.runs import (load_run_config, prepare_train,
                                     run_train, runner_for)
    if args.dist_timeout:
        args.cfg_options = dict(args.cfg_options or {},
                                **{'env_cfg.dist_cfg.timeout':
                                   args.dist_timeout})
    runner = runner_for(lambda: prepare_train(
        load_run_config(args.config, args.cfg_options, args.work_dir,
                        args.launcher),
        resume=args.resume, amp=args.amp, validate=not args.no_validate,
        max_bad_steps=args.max_bad_steps, partial_load=args.partial_load))
    run_train(runner)


if __name__ == '__main__':
    main()
