# Copyright (c) mdeq_mm authors. All rights reserved.
"""Run an ablation group and tabulate it.

Groups (configs in configs/ablations/, all on the segmentation demo data
unless --data-root points elsewhere, e.g. a Cityscapes folder):

* ``scales``: strides {4}, {4,8}, {4,8,16}, {4,8,16,32} (1 scale = the
  single-stream DEQ);
* ``injection``: input into the highest resolution only vs every branch;
* ``training``: implicit training vs the weight-tied network unrolled 2, 4
  and 8 times (trained and evaluated without a solver);
* ``jacobian``: without and with Jacobian regularisation (weights 0.1, 1);
* ``budget``: the baseline evaluated with 2, 4, 8, 16, 27 f evaluations.

Runs are sequential and resumable: a run whose final checkpoint and
run_stats.json exist is not redone. Prints one table per group (mIoU,
parameters, training time per iteration, peak training memory, inference
time per image, f evaluations at inference and the relative residual they
reach) and saves it with a PNG.

Usage:
    python tools/ablate.py {scales,injection,training,jacobian,budget,all}
        [--work-dir work_dirs/ablations] [--data-root data/demo/cityscapes]
        [--cfg-options k=v ...]
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from tool_utils import final_checkpoint, summarize_run, train_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
A = 'configs/ablations/'
GROUPS = {
    'scales': [('{4}', A + 'scales-4.py'), ('{4,8}', A + 'scales-4-8.py'),
               ('{4,8,16}', A + 'scales-4-8-16.py'),
               ('{4,8,16,32}', A + 'baseline.py')],
    'injection': [('highest only', A + 'baseline.py'),
                  ('every branch', A + 'inject-all.py')],
    'training': [('implicit', A + 'baseline.py'),
                 ('unrolled x2', A + 'unrolled-2.py'),
                 ('unrolled x4', A + 'unrolled-4.py'),
                 ('unrolled x8', A + 'unrolled-8.py')],
    'jacobian': [('no regularisation', A + 'baseline.py'),
                 ('Jacobian loss 0.1', A + 'jacobian-0.1.py'),
                 ('Jacobian loss 1.0', A + 'jacobian-1.py')],
}
BUDGETS = (2, 4, 8, 16, 27)


def data_opts(root):
    if not root:
        return []
    return [f'{d}.dataset.data_root={root}'
            for d in ('train_dataloader', 'val_dataloader',
                      'test_dataloader')]


def budget_rows(work_dir, opts):
    """The baseline at several evaluation budgets (budget_curve.py)."""
    config = A + 'baseline.py'
    ckpt = final_checkpoint(osp.join(ROOT, config), work_dir)
    out = osp.join(ROOT, work_dir + '_budget.png')
    cmd = [sys.executable, 'tools/analysis/budget_curve.py', config, ckpt,
           '--budgets', *map(str, BUDGETS), '--out', out, '--work-dir',
           work_dir + '_budget']
    if opts:
        cmd += ['--cfg-options'] + opts
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    with open(osp.splitext(out)[0] + '.json') as f:
        return json.load(f)


def table(rows):
    lines = ['| variant | mIoU | parameters | train s / iter | peak train '
             'memory (MB) | inference s / image | f evaluations | '
             'rel. residual |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        miou = f"{r['mIoU']:.2f}" if r['mIoU'] is not None else 'n/a'
        res = r.get('rel_residual')
        res = f'{res:.2e}' if res is not None else 'no solver'
        lines.append(f"| {r['name']} | {miou} | {r['params']:,} | "
                     f"{r['s_per_iter']:.2f} | {r['peak_mem_mb']:.0f} | "
                     f"{r['infer_s_per_image']:.3f} | {r['nfev']:.0f} | "
                     f'{res} |')
    return '\n'.join(lines)


def plot(rows, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    names = [r['name'] for r in rows]
    for ax, key, lab in zip(axes, ('mIoU', 's_per_iter', 'peak_mem_mb'),
                            ('mIoU', 'train s / iter', 'peak memory (MB)')):
        ax.bar(names, [r[key] or 0 for r in rows])
        ax.set_title(lab)
        ax.tick_params(axis='x', labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run_group(group, work, opts):
    start = time.time()
    print(f'== ablation group: {group}', flush=True)
    if group == 'budget':
        base = osp.join(work, 'baseline')
        train_config(A + 'baseline.py', base, opts)
        rows = budget_rows(base, opts)
        text = ('| f evaluations at test time | mIoU | final rel. residual |'
                '\n|---|---|---|\n' + '\n'.join(
                    f"| {r['budget']} | {r['value']:.2f} | "
                    f"{r['rel_residual']:.2e} |" for r in rows))
    else:
        rows = []
        for name, config in GROUPS[group]:
            wd = osp.join(work, osp.splitext(osp.basename(config))[0])
            train_config(config, wd, opts)
            rows.append(summarize_run(name, config, wd))
        text = table(rows)
        plot(rows, osp.join(ROOT, work, f'{group}.png'), group)
    minutes = (time.time() - start) / 60
    text += f'\n\n({group}: {minutes:.1f} min on this machine)'
    print(text, flush=True)
    with open(osp.join(ROOT, work, f'{group}.md'), 'w') as f:
        f.write(text + '\n')
    with open(osp.join(ROOT, work, f'{group}.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('group', choices=list(GROUPS) + ['budget', 'all'])
    parser.add_argument('--work-dir', default='work_dirs/ablations')
    parser.add_argument('--data-root', default=None,
                        help='dataset root in the Cityscapes layout '
                        '(default: the demo data, generated if missing)')
    parser.add_argument('--cfg-options', nargs='+', default=[])
    args = parser.parse_args(argv)
    os.makedirs(osp.join(ROOT, args.work_dir), exist_ok=True)
    if args.data_root is None:
        from mdeq_mm.datasets import convert_cityscapes
        from mdeq_mm.datasets.demo_data import write_cityscapes
        root = 'data/demo/cityscapes'
        if not osp.isdir(osp.join(ROOT, root, 'gtFine')):
            write_cityscapes(osp.join(ROOT, root))
            convert_cityscapes(osp.join(ROOT, root))
        args.data_root = root
    opts = data_opts(args.data_root) + list(args.cfg_options)
    groups = list(GROUPS) + ['budget'] if args.group == 'all' else [
        args.group
    ]
    return {g: run_group(g, args.work_dir, opts) for g in groups}


if __name__ == '__main__':
    main()
