# Copyright (c) mdeq_mm authors. All rights reserved.
"""Test (evaluate) an mdeq_mm model with mmsegmentation or mmpretrain.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT]
        [--show] [--show-dir DIR] [--tta] [--partial-load]
        [--cfg-options k=v ...] [--launcher ...]

A checkpoint that does not fit the model (missing, unexpected or
mis-shaped keys) stops with one line naming them, unless ``--partial-load``.

``--out``: segmentation, a folder receiving one prediction PNG per image
(train ids); classification, a pickle file of the predictions.
"""
import argparse


def parse_args(argv=None):
    from mmengine.config import DictAction

    from tool_utils import parse_with_launcher
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='folder for the metrics log')
    parser.add_argument('--out', help='where to write the predictions')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument('--show-dir', help='folder for painted results')
    parser.add_argument('--wait-time', type=float, default=2)
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (flip/multi-scale)')
    parser.add_argument(
        '--partial-load', action='store_true',
        help='evaluate with a checkpoint that does not fit the model: the '
        'keys that do not fit keep their initialisation (summarised)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parse_with_launcher(parser, argv)


def build_cfg(args):
    from mdeq_mm.datasets import check_datasets
    from tool_utils import load_tool_cfg
    cfg = load_tool_cfg(args.config, args.cfg_options, args.work_dir,
                        args.launcher)
    from mdeq_mm.engine import checkpoint_problem, require_fitting_checkpoints
    require_fitting_checkpoints(cfg, partial=args.partial_load)
    problem = checkpoint_problem(args.checkpoint)
    if problem:
        raise SystemExit(f'error: cannot load {args.checkpoint}: {problem}')
    cfg.load_from = args.checkpoint
    seg = cfg.get('default_scope', 'mmseg') == 'mmseg'
    if args.show or args.show_dir:
        hooks = cfg.default_hooks
        if seg:
            hooks.visualization.draw = True
            hooks.visualization.show = args.show
            hooks.visualization.wait_time = args.wait_time
            if args.show_dir:
                cfg.visualizer.save_dir = args.show_dir
        else:
            hooks.visualization.enable = True
            hooks.visualization.show = args.show
            hooks.visualization.wait_time = args.wait_time
            hooks.visualization.out_dir = args.show_dir
    if args.out:
        if seg:
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:
            evaluators = cfg.test_evaluator
            if isinstance(evaluators, dict):
                evaluators = [evaluators]
            cfg.test_evaluator = list(evaluators) + [
                dict(type='DumpResults', out_file_path=args.out)
            ]
    if args.tta:
        from tool_utils import apply_tta
        apply_tta(cfg)
    check_datasets(cfg, ['test_dataloader'])
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from tool_utils import runner_for, user_error_exit
    runner = runner_for(build_cfg, args)
    try:
        metrics = runner.test()
    except (FileNotFoundError, ValueError) as e:  # a file a worker loaded
        exit_ = user_error_exit(e, data_only=True)
        if exit_ is None:
            raise
        raise exit_ from None
    from tool_utils import close_distributed
    close_distributed(runner)
    return metrics


if __name__ == '__main__':
    main()
