# Copyright (c) mdeq_mm authors. All rights reserved.
"""Video inference cold vs warm-started for every MDEQ speed recipe (a
benchmark, not a test).

Every MDEQ recipe (trained as by tools/benchmark_recipes.py, in the same
work dirs) runs on demo ``leftImg8bit_sequence`` snippets cold vs
warm-started, in both protocols of :mod:`mdeq_mm.video` (as
tools/analysis/sequence.py runs them): f evaluations per frame to relative
residual 1e-2, and with fixed budgets the fewest f evaluations per frame at
equal mIoU (within 1 of cold at 28) with the pixel agreement with that
reference on every frame. Prints a markdown table, writes ``video.json``
and ``video.png``.

Usage:
    python tools/benchmark_video.py [--out-dir DIR] [--quick]
        [--cfg-options k=v ...]

``--quick`` trains 12 iterations per recipe (a smoke run).
"""
import argparse
import json
import os.path as osp

from mdeq_mm.report import markdown_table, plot_panels, save_results
from tool_utils import (RECIPES, ROOT, SEQUENCE_BUDGETS, cached_row,
                        demo_video, train_recipe)

# relative residual the video solves stop at: the recipes' models reach
# ~5e-2 at their training budgets; at 1e-3 none converges in 28 evaluations
SEQUENCE_TOL = 1e-2


def run_video(args):
    """Every MDEQ recipe on the demo snippets (the module docstring)."""
    from mdeq_mm.apis import init_model, set_solver
    from mdeq_mm.datasets import cityscapes_sequences
    from mdeq_mm.video import (compare_starts, equal_miou_budgets,
                               plot_rows, sweep_budgets)
    snippets = cityscapes_sequences(demo_video(), 'val')
    train_dir = osp.join(osp.dirname(args.out_dir), 'recipes')
    rows = []
    for name, config in RECIPES[1:]:
        stem = osp.splitext(osp.basename(config))[0]
        cached = osp.join(ROOT, args.out_dir, stem + '_video.json')
        row = cached_row(cached, args.quick)
        if row is None:
            _, ckpt = train_recipe(config, train_dir, args.quick,
                                   args.cfg_options)
            print(f'  {name}: video inference cold vs warm', flush=True)
            out = osp.join(ROOT, args.out_dir, stem)
            model = init_model(config, ckpt)
            set_solver(model, budget=max(SEQUENCE_BUDGETS), tol=SEQUENCE_TOL,
                       options=dict(stop_mode='rel'))
            tol = compare_starts(model, snippets)
            save_results(tol, out + '_tol.png', plot_rows)
            fixed = sweep_budgets(model, snippets, SEQUENCE_BUDGETS)
            fixed = dict(rows=fixed, equal_mIoU=equal_miou_budgets(fixed))
            save_results(fixed, out + '_budgets.png',
                         lambda _, png: plot_rows(fixed['rows'], png))
            row = dict(name=name, tolerance=[
                {k: v for k, v in r.items() if k != 'nfev_trace'}
                for r in tol], **fixed)
            with open(cached, 'w') as f:
                json.dump(row, f, indent=1)
        rows.append(row)
    print_video(rows)
    png = osp.join(args.out_dir, 'video.png')
    print(f'\nwrote {save_results(rows, png, plot_video)} and {png}')
    return rows


def print_video(rows):
    print('\n### Video inference, cold vs warm start (demo snippets)\n')
    print(f'To tolerance: relative residual {SEQUENCE_TOL:g}, at most '
          f'{max(SEQUENCE_BUDGETS)} f evaluations. Fixed budgets: every '
          f'frame gets b of {SEQUENCE_BUDGETS}; equal mIoU: within 1 of the '
          f'reference, cold at {max(SEQUENCE_BUDGETS)}; agreement: pixels '
          'of all frames predicted as the reference does.\n')
    lines = []
    for r in rows:
        cold, warm = (x['nfev_per_frame'] for x in r['tolerance'])
        eq = r['equal_mIoU']
        at = {(x['start'], x['budget']): x for x in r['rows']}
        c, w = at['cold', eq['cold']], at['warm', eq['warm']]
        lines.append([r['name'], f'{cold:.1f}', f'{warm:.1f}',
                      f'{warm / cold:.2f}', f"{eq['reference_mIoU']:.2f}",
                      eq['cold'], eq['warm'], f"{eq['saving']:.2f}",
                      f"{c['mIoU']:.2f}", f"{w['mIoU']:.2f}",
                      f"{c['agreement']:.1f}", f"{w['agreement']:.1f}"])
    print(markdown_table(
        ['model', 'to tol.: f evals / frame cold', 'warm', 'warm / cold',
         'reference mIoU', 'equal mIoU: f evals / frame cold', 'warm',
         'fewer (x)', 'mIoU cold', 'mIoU warm', 'agreement cold (%)',
         'agreement warm (%)'], lines))


def plot_video(rows, path):
    panels = [dict(ylabel='mIoU (annotated frames)', lines=[]),
              dict(ylabel='agreement with the reference (%)', lines=[],
                   legend=False)]
    for k, r in enumerate(rows):
        name = r['name'].replace('MDEQ-Small ', '')
        for start, style in (('cold', '--'), ('warm', '-')):
            mine = [x for x in r['rows'] if x['start'] == start]
            b = [x['budget'] for x in mine]
            for p, key in zip(panels, ('mIoU', 'agreement')):
                p['lines'].append((f'{name} {start}', b,
                                   [x[key] for x in mine], f'C{k}o{style}'))
    for p in panels:
        p.update(xlabel='f evaluations per frame', xscale='log2')
    plot_panels(path, panels, size=(6, 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='work_dirs/benchmarks/video')
    parser.add_argument('--quick', action='store_true',
                        help='12 training iterations (a smoke run)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='overrides for every training run')
    return run_video(parser.parse_args())


if __name__ == '__main__':
    main()
