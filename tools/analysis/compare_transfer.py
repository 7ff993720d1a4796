# Copyright (c) mdeq_mm authors. All rights reserved.
"""Compare segmentation runs (e.g. scratch / fine-tuned / frozen backbone):
final mIoU, training time and peak memory, one markdown table.

Reads, per work dir, the last ``mIoU`` logged by the Runner and what
``RunStatsHook`` wrote (:func:`mdeq_mm.engine.run_summary`).

Usage:
    python tools/analysis/compare_transfer.py WORK_DIR [WORK_DIR ...]
        [--names scratch finetune frozen] [--out table.md]
"""
import argparse
import os
import os.path as osp


def main(argv=None):
    from mdeq_mm.engine import run_summary, runs_table
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--names', nargs='+')
    parser.add_argument('--out', help='also write the table to this file')
    args = parser.parse_args(argv)
    names = args.names or [None] * len(args.work_dirs)
    if len(names) != len(args.work_dirs):
        raise SystemExit('--names needs one name per work dir')
    rows = [run_summary(d, n) for d, n in zip(args.work_dirs, names)]
    text = runs_table(rows)
    print(text)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return rows


if __name__ == '__main__':
    main()
