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


def main(argv=None):
    args = parse_args(argv)
    from mdeq_mm.engine.runs import (load_run_config, prepare_test,
                                     run_test, runner_for)
    runner = runner_for(lambda: prepare_test(
        load_run_config(args.config, args.cfg_options, args.work_dir,
                        args.launcher),
        args.checkpoint, out=args.out, show=args.show,
        show_dir=args.show_dir, wait_time=args.wait_time, tta=args.tta,
        partial_load=args.partial_load))
    return run_test(runner)


if __name__ == '__main__':
    main()
