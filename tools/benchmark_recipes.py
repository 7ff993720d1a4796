# Copyright (c) mdeq_mm authors. All rights reserved.
"""Train HRNet-W18 and the MDEQ-Small speed recipes side by side on the
demo segmentation task and compare them (a benchmark, not a test).

The recipes (``configs/speed/``: the reference's budgets, SHINE backward,
Jacobian-regularised reduced budgets, fixed-point correction, combined) are
trained on the segmentation demo data with the same schedule and reported
side by side: mIoU at equal iterations, the training step (s / iteration,
batch 4 64x128, implicit phase, mean of 6), inference s / image at
1024x2048, f evaluations (forward and backward in training, forward at
inference), peak memory (the process's peak RSS on CPU, torch's allocator
on CUDA). Runs are resumable (finished trainings and measured recipes are
reused). Prints markdown tables, writes ``recipes.json`` and
``recipes.png``.

Usage:
    python tools/benchmark_recipes.py [--device cpu] [--out-dir DIR]
        [--quick] [--repeat N] [--cfg-options k=v ...]

``--quick`` trains 12 iterations per recipe (a smoke run of the whole
pipeline; its numbers mean nothing).
"""
import argparse
import json
import os
import os.path as osp

import torch

from mdeq_mm.apis import summarize_run
from mdeq_mm.measure import run_isolated
from mdeq_mm.report import fmt, markdown_table, plot_panels, save_results
from tool_utils import (RECIPES, ROOT, cached_row, demo_cityscapes,
                        train_recipe)


def time_recipe(config, checkpoint, data_root, device, kind, repeat):
    """One recipe's training step (a batch of the demo training data,
    implicit phase; the mean of 6) or inference at 1024x2048 (a
    preprocessed demo validation image resized; the median of ``repeat``),
    in this fresh process: time, peak memory and the f evaluations."""
    from mdeq_mm.apis import init_model
    from mdeq_mm.measure import measure_config
    torch.manual_seed(0)
    opts = {f'{d}.dataset.data_root': data_root
            for d in ('train_dataloader', 'val_dataloader')}
    model = init_model(config, checkpoint, device, cfg_options=opts)
    r = measure_config(model, kind, repeat, mean_of=6 if kind == 'train'
                       else None, size=None if kind == 'train' else
                       (1024, 2048))
    out = dict(time_s=r['s'], peak_mb=r['peak_mb'])
    for key, name in (('nfev_fwd', 'fwd_nfev'), ('nfev_bwd', 'bwd_nfev'),
                      ('rel_residual', 'fwd_rel_residual')):
        if key in r:
            out[name] = r[key]
    return out


def run_recipes(args):
    """Train, time and compare every recipe (the module docstring)."""
    city = demo_cityscapes()
    os.makedirs(osp.join(ROOT, args.out_dir), exist_ok=True)
    rows = []
    for name, config in RECIPES:
        cached = osp.join(ROOT, args.out_dir, osp.splitext(
            osp.basename(config))[0] + '_row.json')
        row = cached_row(cached, args.quick)
        if row is None:
            wd, ckpt = train_recipe(config, args.out_dir, args.quick,
                                    args.cfg_options)
            row = dict(summarize_run(name, osp.join(ROOT, config),
                                     osp.join(ROOT, wd)), config=config)
            for kind in ('train', 'infer'):
                r = run_isolated(time_recipe, config=config, checkpoint=ckpt,
                                 data_root=city, device=args.device,
                                 kind=kind, repeat=args.repeat)
                row.update({f'{kind}_{k}': v for k, v in r.items()})
            with open(cached, 'w') as f:
                json.dump(row, f, indent=1)
        rows.append(row)
        print(f"  {name}: mIoU {row['mIoU']}, train step "
              f"{row['train_time_s']:.2f} s, 1024x2048 inference "
              f"{row['infer_time_s']:.2f} s", flush=True)
    print_recipes(rows)
    png = osp.join(args.out_dir, 'recipes.png')
    print(f'\nwrote {save_results(rows, png, plot_recipes)} and {png}')
    return rows


def print_recipes(rows):
    base = rows[0]
    print('\n### Recipes on the demo task (batch 4, 64x128, equal '
          'iterations)\n')
    print(markdown_table(
        ['model', 'mIoU', 'train step (s)', 'x HRNet',
         'inference 1024x2048 (s)', 'x HRNet', 'f evals train fwd / bwd',
         'f evals inference', 'peak train memory (MB)',
         'peak inference memory (MB)'],
        [[r['name'], fmt(r['mIoU'], '.2f', 'n/a'), f"{r['train_time_s']:.3f}",
          f"{r['train_time_s'] / base['train_time_s']:.2f}",
          f"{r['infer_time_s']:.2f}",
          f"{r['infer_time_s'] / base['infer_time_s']:.2f}",
          f"{fmt(r.get('train_fwd_nfev'), '.1f')} / "
          f"{fmt(r.get('train_bwd_nfev'), '.1f')}",
          fmt(r.get('infer_fwd_nfev'), '.1f'), f"{r['train_peak_mb']:.0f}",
          f"{r['infer_peak_mb']:.0f}"] for r in rows]))
    ok = [r for r in rows[1:] if r['mIoU'] is not None and
          base['mIoU'] is not None and r['mIoU'] >= base['mIoU'] - 1]
    print('\n### Targets\n')
    if not ok:
        print('- no MDEQ recipe within 1 mIoU of HRNet-W18 '
              f"({base['mIoU']})")
        return
    best = min(ok, key=lambda r: r['train_time_s'])
    print(f"- fastest MDEQ recipe within 1 mIoU of HRNet-W18: {best['name']}"
          f" (mIoU {best['mIoU']:.2f} vs {base['mIoU']:.2f}): training step "
          f"{best['train_time_s'] / base['train_time_s']:.2f}x, inference "
          f"{best['infer_time_s'] / base['infer_time_s']:.2f}x (target <= 2.0"
          ' for both)')
    print('- warm starts: tools/benchmark_video.py')


def plot_recipes(rows, path):
    names = [r['name'].replace('MDEQ-Small ', '') for r in rows]
    plot_panels(path, [
        dict(title=title, categories=names,
             bars={'': [r[key] or 0 for r in rows]}, legend=False)
        for key, title in (
            ('mIoU', 'mIoU (demo, equal iterations)'),
            ('train_time_s', 'training step (s)'),
            ('infer_time_s', 'inference 1024x2048 (s)'),
            ('train_peak_mb', 'peak training memory (MB)'))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out-dir', default='work_dirs/benchmarks/recipes')
    parser.add_argument('--quick', action='store_true',
                        help='12 training iterations (a smoke run)')
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='overrides for every training run')
    return run_recipes(parser.parse_args())


if __name__ == '__main__':
    main()
