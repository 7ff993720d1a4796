# Copyright (c) mdeq_mm authors. All rights reserved.
"""Convergence of the forward and backward solves of a trained MDEQ.

For a config and checkpoint, runs the model's forward solve with broyden,
anderson and fixed_point (full budget, no early stop) on validation images,
then one training-mode backward solve per solver, and plots the relative
residual per iteration, overall and per scale. ``--broyden-history`` adds
Broyden runs with other memories (steps kept before a restart; 'all' keeps
every step, the reference's iterates) to compare with the default.

Usage:
    python tools/analysis/convergence.py CONFIG [CHECKPOINT] [--budget 28]
        [--images 2] [--broyden-history 8 all] [--out convergence.png]
        [--cfg-options k=v ...]
"""
import argparse

import torch

SOLVERS = ('broyden', 'anderson', 'fixed_point')


def traces(model, inputs, samples, solver, budget, options=None):
    """Forward and backward relative-residual traces (mean over images)
    with ``budget`` f evaluations each, no early stop."""
    from mdeq_mm.apis import find_mdeq, set_solver
    backbone = find_mdeq(model)
    deq = backbone.deq
    options = dict(stop_mode='rel', **(options or {}))
    deq.set_grad('ift', dict(init='zero'))  # (SHINE needs Broyden forward)
    for phase in ('both', 'backward'):
        set_solver(model, solver, budget, tol=0., phase=phase,
                   options=options)
    deq.trace_scales = True
    model.train()
    for m in model.modules():  # keep BatchNorm statistics fixed
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    losses = model(inputs, samples, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.zero_grad(set_to_none=True)
    stats = backbone.last_stats
    out = {}
    for name, s in (('forward', stats.forward), ('backward', stats.backward)):
        out[name] = dict(
            overall=s.rel_trace.mean(0).tolist(),
            scales=s.rel_trace_scales.mean(0).T.tolist())
    return out


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--budget', type=int, default=28,
                        help='f evaluations per solve (forward, backward)')
    parser.add_argument('--images', type=int, default=2)
    parser.add_argument('--broyden-history', nargs='*', default=[],
                        type=lambda v: None if v == 'all' else int(v))
    parser.add_argument('--out', default='convergence.png')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    from mdeq_mm.apis import data_batch, init_model
    from mdeq_mm.report import markdown_table, save_results
    model = init_model(args.config, args.checkpoint,
                       cfg_options=args.cfg_options)
    inputs, samples = data_batch(model, args.images)
    runs = [(s, s, None) for s in SOLVERS] + [
        (f"broyden (history {h or 'all'})", 'broyden', dict(history=h))
        for h in args.broyden_history]
    result = {label: traces(model, inputs, samples, s, args.budget, opts)
              for label, s, opts in runs}

    def at(t):
        return ' / '.join(f'{t[i]:.2e}' for i in (1, min(5, len(t) - 1), -1))

    print(markdown_table(
        ['solver', 'forward rel. residual at 1 / 5 / last',
         'per scale, last', 'backward rel. residual at 1 / 5 / last'],
        [[s, at(r['forward']['overall']), ' / '.join(
            f'{t[-1]:.1e}' for t in r['forward']['scales']),
          at(r['backward']['overall'])] for s, r in result.items()]))
    print(f'\nwrote {save_results(result, args.out, plot)} and {args.out}')
    return result


def plot(result, path):
    from mdeq_mm.report import plot_panels

    def lines(traces):
        return [(label, range(len(t)), t, '-') for label, t in traces]

    plot_panels(path, [
        dict(title=title, lines=lines(traces), xlabel='iteration',
             ylabel='relative residual', yscale='log')
        for title, traces in (
            ('forward, overall', [(s, r['forward']['overall'])
                                  for s, r in result.items()]),
            ('forward per scale (broyden)', [
                (f'scale {i}', t) for i, t in
                enumerate(result['broyden']['forward']['scales'])]),
            ('backward, overall', [(s, r['backward']['overall'])
                                   for s, r in result.items()]))],
        size=(5.3, 4))


if __name__ == '__main__':
    main()
