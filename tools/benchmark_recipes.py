# Copyright (c) mdeq_mm authors. All rights reserved.
"""Train HRNet-W18 and the MDEQ-Small speed recipes side by side on the
demo segmentation task and compare them (a benchmark, not a test).

The recipes (``configs/speed/``: the reference's budgets, SHINE backward,
Jacobian-regularised reduced budgets, fixed-point correction, combined) are
trained on the segmentation demo data with the same schedule and reported
side by side: mIoU at equal iterations, the training step (s / iteration,
batch 4 64x128, implicit phase, mean of 6; with a Jacobian loss on a
fraction p of the steps, the expectation over steps with and without it),
inference s / image at 1024x2048, f evaluations (forward and backward in
training, forward at inference), peak memory (the process's peak RSS on
CPU, torch's allocator on CUDA). Then, per MDEQ recipe, the learned solver:
fitted to the trained model (tools/train_solver.py, timed), the test mIoU
at 1 to 28 f evaluations with Broyden, Anderson and the learned solver, and
with Broyden and the learned solver cold and warm-started on the demo video
snippets (every frame gets the budget; a warm start begins at the previous
frame's state); the smallest budget at equal mIoU (from which on every
budget is within 1 of the same solver cold at 28; Broyden's on the test
images) of each; 1024x2048 inference with the learned solver at its budget;
the targets against HRNet-W18. Runs are resumable (finished trainings, fits
and measured recipes are reused). Prints markdown tables, writes
``recipes.json``, ``recipes.png`` and ``recipes_solvers.png``.

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
from mdeq_mm.video import equal_budget
from tool_utils import (RECIPES, ROOT, SEQUENCE_BUDGETS, cached_row,
                        demo_cityscapes, demo_video, fit_recipe_solver,
                        train_recipe)

SOLVERS = ('broyden', 'anderson', 'neural')


def time_recipe(config, checkpoint, data_root, device, kind, repeat,
                solver=None, budget=None):
    """One recipe's training step (a batch of the demo training data,
    implicit phase; the mean of 6) or inference at 1024x2048 (a
    preprocessed demo validation image resized; the median of ``repeat``;
    with ``solver`` / ``budget``, that solver running that many f
    evaluations), in this fresh process: time, peak memory and the f
    evaluations."""
    from mdeq_mm.apis import init_model, set_solver
    from mdeq_mm.measure import measure_config
    torch.manual_seed(0)
    opts = {f'{d}.dataset.data_root': data_root
            for d in ('train_dataloader', 'val_dataloader')}
    model = init_model(config, checkpoint, device, cfg_options=opts)
    if budget:
        set_solver(model, solver, budget, tol=0.)
    r = measure_config(model, kind, repeat, mean_of=6 if kind == 'train'
                       else None, size=None if kind == 'train' else
                       (1024, 2048))
    out = dict(time_s=r['s'], peak_mb=r['peak_mb'])
    for key, name in (('nfev_fwd', 'fwd_nfev'), ('nfev_bwd', 'bwd_nfev'),
                      ('rel_residual', 'fwd_rel_residual'),
                      ('s_without_jac', 'time_s_without_jac'),
                      ('s_with_jac', 'time_s_with_jac')):
        if key in r:
            out[name] = r[key]
    return out


def solver_curves(config, checkpoint, data_root, video_root, work_dir):
    """In this fresh process: the recipe's test mIoU at every budget of
    SEQUENCE_BUDGETS (the whole budget, cold) for each solver, and the
    learned solver cold and warm-started on the demo video."""
    from mmengine.runner import Runner

    from mdeq_mm.apis import (find_mdeq, init_model, load_config,
                              set_solver, test_at_budgets)
    from mdeq_mm.datasets import cityscapes_sequences
    from mdeq_mm.video import sweep_budgets
    cfg = load_config(config, {'test_dataloader.dataset.data_root':
                               data_root}, work_dir)
    cfg.load_from = checkpoint
    runner = Runner.from_cfg(cfg)
    curves = {}
    for solver in SOLVERS:
        set_solver(find_mdeq(runner.model), solver)
        curves[solver] = [dict(budget=r['budget'], mIoU=r['value'])
                          for r in test_at_budgets(runner, SEQUENCE_BUDGETS)]
    model = init_model(config, checkpoint)
    snippets = cityscapes_sequences(video_root, 'val')
    for solver in ('broyden', 'neural'):
        set_solver(model, solver, tol=0.)
        video = sweep_budgets(model, snippets, SEQUENCE_BUDGETS)
        for start in ('cold', 'warm'):
            curves[f'{solver} video {start}'] = [
                dict(budget=r['budget'], mIoU=r['mIoU']) for r in video
                if r['start'] == start]
    return curves


def learned_solver_rows(name, config, ckpt, city, args):
    """The learned solver of one trained recipe: fitted, its budget curves
    against Broyden's and Anderson's, the smallest budget at equal mIoU
    (within 1 of Broyden at the largest budget) of each, and 1024x2048
    inference with the learned solver at its budget."""
    cfg, fitted, fit_s = fit_recipe_solver(config, ckpt, args.out_dir,
                                           args.quick)
    curves = run_isolated(solver_curves, config=cfg, checkpoint=fitted,
                          data_root=city, video_root=demo_video(),
                          work_dir=osp.join(args.out_dir, 'curves'))
    # the reference of each curve: its solver cold at the largest budget
    # on the same frames (Broyden's on the test images)
    ref = {s: curves[s.replace('warm', 'cold') if 'video' in s
                     else 'broyden'][-1]['mIoU'] for s in curves}
    equal = {s: equal_budget(c, ref[s]) for s, c in curves.items()}
    row = dict(fit_s=fit_s, curves=curves, equal=equal,
               own28=ref['broyden'])
    if equal['neural']:
        r = run_isolated(time_recipe, config=cfg, checkpoint=fitted,
                         data_root=city, device=args.device, kind='infer',
                         repeat=args.repeat, solver='neural',
                         budget=equal['neural'])
        row.update(neural_infer_s=r['time_s'], neural_mIoU=next(
            c['mIoU'] for c in curves['neural']
            if c['budget'] == equal['neural']))
    print(f'  {name}: equal-mIoU budgets {equal}', flush=True)
    return row


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
            if 'hrnet' not in config:
                row['learned'] = learned_solver_rows(name, config, ckpt,
                                                     city, args)
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
    learned = [r for r in rows[1:] if r.get('learned')]
    if learned:
        print_learned(base, learned)


def print_learned(base, rows):
    """The learned solver against Broyden and Anderson, and the targets."""
    print('\n### Solvers at equal mIoU (within 1 of Broyden at '
          f'{max(SEQUENCE_BUDGETS)} f evaluations; video: of the same '
          'solver cold at the largest budget)\n')
    print(markdown_table(
        ['model', 'mIoU at 28', 'Broyden', 'Anderson', 'learned',
         'Broyden, video cold', 'video warm', 'learned, video cold',
         'video warm',
         'Broyden / learned', 'fitting (s)', 'inference 1024x2048 at the '
         'learned budget (s)', 'x HRNet', 'train step x HRNet'],
        [[r['name'], f"{r['learned']['own28']:.2f}"] +
         [fmt(r['learned']['equal'][k], 'd') for k in (
             'broyden', 'anderson', 'neural', 'broyden video cold',
             'broyden video warm', 'neural video cold',
             'neural video warm')] +
         [fmt(ratio(r['learned']['equal']['broyden'],
                    r['learned']['equal']['neural']), '.2f'),
          f"{r['learned']['fit_s']:.0f}",
          fmt(r['learned'].get('neural_infer_s'), '.2f'),
          fmt(ratio(r['learned'].get('neural_infer_s'),
                    base['infer_time_s']), '.2f'),
          f"{r['train_time_s'] / base['train_time_s']:.2f}"]
         for r in rows]))
    print('\n### Targets\n')
    for r in rows:
        lr = r['learned']
        infer = ratio(lr.get('neural_infer_s'), base['infer_time_s'])
        train = r['train_time_s'] / base['train_time_s']
        miou = lr.get('neural_mIoU')
        fewer = ratio(lr['equal']['broyden'], lr['equal']['neural'])
        ok = (infer is not None and infer <= 1.0 and train <= 1.3
              and miou >= base['mIoU'] and miou >= lr['own28'] - 1
              and fewer is not None and fewer >= 2)
        print(f"- {r['name']}: inference {fmt(infer, '.2f')}x HRNet-W18 "
              f"(target <= 1.0), training step {train:.2f}x (<= 1.3), at "
              f"mIoU {fmt(miou, '.2f')} (HRNet-W18 {base['mIoU']:.2f}, own "
              f"28-evaluation {lr['own28']:.2f}); learned vs Broyden "
              f"{fmt(fewer, '.2f')}x fewer evaluations (>= 2): "
              f"{'met' if ok else 'not met'}")


def ratio(a, b):
    return None if a is None or b is None else a / b


def plot_recipes(rows, path):
    names = [r['name'].replace('MDEQ-Small ', '') for r in rows]
    learned = [r for r in rows if r.get('learned')]
    if learned:
        plot_panels(path.replace('.png', '_solvers.png'), [
            dict(title=r['name'].replace('MDEQ-Small ', ''),
                 xlabel='f evaluations', ylabel='mIoU', xscale='log2',
                 legend=k == 0, lines=[
                     (s, [c['budget'] for c in curve],
                      [c['mIoU'] for c in curve], style)
                     for (s, curve), style in zip(
                         r['learned']['curves'].items(),
                         ('o-', 's-', '^-', 'o--', 'o:', '^--', '^:'))])
            for k, r in enumerate(learned)], size=(4, 3.5))
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
