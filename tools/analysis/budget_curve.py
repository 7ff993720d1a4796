# Copyright (c) mdeq_mm authors. All rights reserved.
"""Accuracy against the evaluation solver budget.

Evaluates a checkpoint with the config's test loop (real Runner, real
metric) at several forward budgets (f evaluations) and reports mIoU or
top-1 against the budget, as a table and a PNG.

Usage:
    python tools/analysis/budget_curve.py CONFIG CHECKPOINT
        [--budgets 2 4 8 16 27] [--out budget_curve.png]
        [--work-dir DIR] [--cfg-options k=v ...]
"""
import argparse


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--budgets', type=int, nargs='+',
                        default=[2, 4, 8, 16, 27])
    parser.add_argument('--out', default='budget_curve.png')
    parser.add_argument('--work-dir', default='work_dirs/budget_curve')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    from mdeq_mm.apis import budget_curve
    from mdeq_mm.report import markdown_table
    rows = budget_curve(args.config, args.checkpoint, args.budgets, args.out,
                        args.work_dir, args.cfg_options)
    print(markdown_table(
        ['f evaluations', rows[0]['metric'], 'final rel. residual'],
        [[r['budget'], f"{r['value']:.2f}", f"{r['rel_residual']:.2e}"]
         for r in rows]))
    print(f"\nwrote {args.out.rsplit('.', 1)[0]}.json and {args.out}")
    return rows


if __name__ == '__main__':
    main()
