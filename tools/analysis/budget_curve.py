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
    from mmengine.runner import Runner

    from mdeq_mm.apis import find_mdeq, load_config, set_solver
    from mdeq_mm.engine.profiling import save_results
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    backbone = find_mdeq(runner.model)
    rows = []
    for budget in args.budgets:  # f evaluations, the whole budget
        set_solver(backbone, budget=budget, tol=0.,
                   options=dict(stop_mode='rel'))
        metrics = runner.test()
        key = next(k for k in ('mIoU', 'accuracy/top1') if k in metrics)
        residual = backbone.last_stats.forward.rel_lowest.mean().item()
        rows.append(dict(budget=budget, metric=key,
                         value=float(metrics[key]), rel_residual=residual))
    print(f'| f evaluations | {rows[0]["metric"]} | final rel. residual |')
    print('|---|---|---|')
    for r in rows:
        print(f"| {r['budget']} | {r['value']:.2f} | "
              f"{r['rel_residual']:.2e} |")
    print(f'\nwrote {save_results(rows, args.out, plot)} and {args.out}')
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r['budget'] for r in rows], [r['value'] for r in rows], 'o-')
    ax.set_xlabel('forward f evaluations at test time')
    ax.set_ylabel(rows[0]['metric'])
    ax.set_xscale('log', base=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == '__main__':
    main()
