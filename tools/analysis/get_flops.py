# Copyright (c) mdeq_mm authors. All rights reserved.
"""Parameters and FLOPs of any config's model, per f evaluation and at
solver budgets.

Counts one inference forward on a (1, 3, H, W) input with
:func:`mdeq_mm.measure.count_flops` (convolutions and linear layers as 2
FLOPs per multiply-accumulate, GroupNorm and the other normalisations and
activations per element; element-wise sums and the solver's arithmetic are
not counted). An implicit model's cost is the part outside f plus one f
evaluation per solver step: the table gives it at the config's evaluation
budget and at ``--budgets``. Models without an MDEQ (HRNet) are counted
the same way, for comparison.

Usage:
    python tools/analysis/get_flops.py CONFIG [--shape H W]
        [--budgets 4 8 16] [--cfg-options k=v ...]
"""
import argparse


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, default=[1024, 2048],
                        metavar=('H', 'W'), help='input size')
    parser.add_argument('--budgets', type=int, nargs='*', default=[],
                        help='more solver budgets (f evaluations)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    import torch

    from mdeq_mm.apis import (find_mdeqs, init_model, set_solver,
                              solver_settings)
    from mdeq_mm.measure import count_flops
    from mdeq_mm.report import markdown_table
    model = init_model(args.config, cfg_options=args.cfg_options)
    mdeqs = find_mdeqs(model)
    budget = solver_settings(mdeqs[0])['budget'] if mdeqs else None
    if mdeqs:  # every f evaluation costs the same: count one
        set_solver(model, budget=1, tol=0.)
    r = count_flops(model, torch.randn(1, 3, *args.shape))
    print(f"{args.config}, input 1x3x{args.shape[0]}x{args.shape[1]}: "
          f"{r['params'] / 1e6:.2f} M parameters")
    rows = []
    if mdeqs:
        print(f"one f evaluation: {r['f_flops'] / 1e9:.2f} GFLOPs "
              f"({r['f_macs'] / 1e9:.2f} GMACs); outside f: "
              f"{r['outside_flops'] / 1e9:.2f} GFLOPs; the config's "
              f'evaluation budget: {budget} f evaluations\n')
        for b in sorted({budget, *args.budgets}):
            total = r['outside_flops'] + b * r['f_flops']
            rows.append([b, f'{total / 1e9:.2f}'])
    else:
        rows.append(['-', f"{r['flops'] / 1e9:.2f}"])
    print(markdown_table(['f evaluations', 'GFLOPs'], rows))
    return r


if __name__ == '__main__':
    main()
