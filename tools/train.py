# Copyright (c) mdeq_mm authors. All rights reserved.
"""Train an mdeq_mm model with mmsegmentation or mmpretrain.

The task follows the config's ``default_scope`` ('mmseg' or 'mmpretrain').
Flags follow the OpenMMLab tools. Works from a checkout without PYTHONPATH.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]]
        [--amp] [--no-validate] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parse_args(argv=None):
    from mmengine.config import DictAction

    from mdeq_mm.utils.tool_cfg import parse_with_launcher
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
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    return parse_with_launcher(parser, argv)


def build_cfg(args):
    """The config with the command-line options applied."""
    from mdeq_mm.datasets import check_datasets
    from mdeq_mm.utils.tool_cfg import load_tool_cfg
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
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    check_datasets(
        cfg, ['train_dataloader'] +
        ([] if args.no_validate else ['val_dataloader']))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mdeq_mm.datasets import data_error_message
    try:
        cfg = build_cfg(args)
    except (FileNotFoundError, ValueError) as e:
        if data_error_message(e) is None:
            raise
        raise SystemExit(f'Dataset error: {data_error_message(e)}')
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mdeq_mm.utils.tool_cfg import close_distributed
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
              RUNNERS.build(cfg))
    try:
        runner.train()
    except BaseException as e:
        # Never lose the progress of a run that dies (diverged solver,
        # Ctrl-C, out of memory): save where it stopped, then re-raise.
        if runner.iter > 0 and runner.rank == 0:
            name = f'iter_{runner.iter}_interrupted.pth'
            runner.save_checkpoint(runner.work_dir, name, save_optimizer=True,
                                   save_param_scheduler=True)
            runner.logger.error(
                f'training stopped at iteration {runner.iter}; saved '
                f'{osp.join(runner.work_dir, name)} (resume with --resume '
                f'{osp.join(runner.work_dir, name)})')
        if data_error_message(e) is not None:
            raise SystemExit(f'Dataset error: {data_error_message(e)}')
        raise
    close_distributed()
    return runner


if __name__ == '__main__':
    main()
