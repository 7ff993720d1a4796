# Copyright (c) mdeq_mm authors. All rights reserved.
"""Compare segmentation runs (e.g. scratch / fine-tuned / frozen backbone):
final mIoU, training time and peak memory, one markdown table.

Reads, per work dir, the last ``mIoU`` logged by the Runner
(``<timestamp>/vis_data/scalars.json``) and ``run_stats.json`` written by
``RunStatsHook``.

Usage:
    python tools/analysis/compare_transfer.py WORK_DIR [WORK_DIR ...]
        [--names scratch finetune frozen] [--out table.md]
"""
import argparse
import glob
import json
import os
import os.path as osp


def last_metric(work_dir: str, key: str = 'mIoU'):
    """The last value of ``key`` in the newest run's scalars.json."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    for path in reversed(files):
        value = None
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if key in entry:
                    value = entry[key]
        if value is not None:
            return value
    return None


def summarize(work_dir: str, name: str) -> dict:
    stats_file = osp.join(work_dir, 'run_stats.json')
    stats = {}
    if osp.isfile(stats_file):
        with open(stats_file) as f:
            stats = json.load(f)
    return dict(name=name, work_dir=work_dir, mIoU=last_metric(work_dir),
                **stats)


def table(rows) -> str:
    lines = [
        '| run | mIoU | train time (s) | s / iter | iterations | '
        'peak memory (MB) |', '|---|---|---|---|---|---|'
    ]
    for r in rows:
        miou = f"{r['mIoU']:.2f}" if r.get('mIoU') is not None else 'n/a'

        def fmt(key, spec):
            return format(r[key], spec) if key in r else 'n/a'

        lines.append(f"| {r['name']} | {miou} | {fmt('train_time_s', '.0f')}"
                     f" | {fmt('s_per_iter', '.2f')} | {fmt('iters', 'd')} |"
                     f" {fmt('peak_mem_mb', '.0f')} |")
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--names', nargs='+')
    parser.add_argument('--out', help='also write the table to this file')
    args = parser.parse_args(argv)
    names = args.names or [osp.basename(osp.normpath(d))
                           for d in args.work_dirs]
    if len(names) != len(args.work_dirs):
        raise SystemExit('--names needs one name per work dir')
    rows = [summarize(d, n) for d, n in zip(args.work_dirs, names)]
    text = table(rows)
    print(text)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return rows


if __name__ == '__main__':
    main()
