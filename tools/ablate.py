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
import time

from mdeq_mm.apis import summarize_run
from tool_utils import (ROOT, data_root_options, demo_cityscapes,
                        final_checkpoint, train_config)

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


def budget_rows(work_dir, opts):
    """The baseline at several evaluation budgets (as budget_curve.py)."""
    from mmengine.config import DictAction

    from mdeq_mm.apis import budget_curve
    config = osp.join(ROOT, A + 'baseline.py')
    return budget_curve(config, final_checkpoint(config, work_dir), BUDGETS,
                        osp.join(ROOT, work_dir + '_budget.png'),
                        work_dir + '_budget', {
                            k: DictAction._parse_iterable(v) for k, v in (
                                o.split('=', 1) for o in opts)})


def table(rows):
    from mdeq_mm.report import fmt, markdown_table
    return markdown_table(
        ['variant', 'mIoU', 'parameters', 'train s / iter',
         'peak train memory (MB)', 'inference s / image', 'f evaluations',
         'rel. residual'],
        [[r['name'], fmt(r['mIoU'], '.2f', 'n/a'), f"{r['params']:,}",
          f"{r['s_per_iter']:.2f}", f"{r['peak_mem_mb']:.0f}",
          f"{r['infer_s_per_image']:.3f}", f"{r['nfev']:.0f}",
          fmt(r.get('rel_residual'), '.2e', 'no solver')] for r in rows])


def plot(rows, path, title):
    from mdeq_mm.report import plot_panels
    names = [r['name'] for r in rows]
    plot_panels(path, [
        dict(title=f'{title}: {lab}', categories=names,
             bars={'': [r[key] or 0 for r in rows]}, legend=False)
        for key, lab in (('mIoU', 'mIoU'), ('s_per_iter', 'train s / iter'),
                         ('peak_mem_mb', 'peak memory (MB)'))],
        size=(4.3, 3.5))


def run_group(group, work, opts):
    start = time.time()
    print(f'== ablation group: {group}', flush=True)
    if group == 'budget':
        base = osp.join(work, 'baseline')
        train_config(A + 'baseline.py', base, opts)
        rows = budget_rows(base, opts)
        from mdeq_mm.report import markdown_table
        text = markdown_table(
            ['f evaluations at test time', 'mIoU', 'final rel. residual'],
            [[r['budget'], f"{r['value']:.2f}", f"{r['rel_residual']:.2e}"]
             for r in rows])
    else:
        rows = []
        for name, config in GROUPS[group]:
            wd = osp.join(work, osp.splitext(osp.basename(config))[0])
            train_config(config, wd, opts)
            rows.append(dict(summarize_run(
                name, osp.join(ROOT, config), osp.join(ROOT, wd)),
                config=config))
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
    opts = data_root_options(args.data_root or demo_cityscapes()) + list(
        args.cfg_options)
    groups = list(GROUPS) + ['budget'] if args.group == 'all' else [
        args.group
    ]
    return {g: run_group(g, args.work_dir, opts) for g in groups}


if __name__ == '__main__':
    main()
