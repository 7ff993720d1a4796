# Copyright (c) mdeq_mm authors. All rights reserved.
"""Speed of any config (and checkpoint): latency, images per second, peak
memory and the solver's f evaluations, for inference or a training step.

Times the model on a seeded random batch of the given size
(:func:`mdeq_mm.measure.measure_random`): one warm-up call, then the median
of ``--repeat`` (CUDA events on a GPU). Peak memory is torch's
``max_memory_allocated`` on CUDA, the process's peak resident memory above
its level before the first call on the CPU. With a checkpoint the solver
meets the trained f (the f evaluations a tolerance needs depend on it).

Usage:
    python tools/analysis/speed.py CONFIG [CHECKPOINT] [--shape H W]
        [--batch 1] [--repeat 10] [--train] [--budget N] [--device cuda]
        [--out speed.json] [--cfg-options k=v ...]
"""
import argparse
import json


def main(argv=None):
    import torch
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--shape', type=int, nargs=2, default=[1024, 2048],
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--train', action='store_true',
                        help='time a training step instead of inference')
    parser.add_argument('--budget', type=int,
                        help='f evaluations of every solve (the whole '
                        "budget); default: the config's solver")
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='also write the result as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    from mdeq_mm.apis import find_mdeqs, init_model, set_solver
    from mdeq_mm.measure import measure_random
    from mdeq_mm.registry import scope_of
    model = init_model(args.config, args.checkpoint, args.device,
                       cfg_options=args.cfg_options)
    if args.budget is not None and find_mdeqs(model):
        phase = 'train' if args.train else 'eval'
        set_solver(model, budget=args.budget, tol=0., phase=phase)
    task = 'seg' if scope_of(model.cfg) == 'mmseg' else 'cls'
    kind = 'train' if args.train else 'infer'
    r = measure_random(model, kind, args.shape, args.batch, args.device,
                       args.repeat, task)
    result = dict(config=args.config, checkpoint=args.checkpoint,
                  kind=kind, shape=args.shape, batch=args.batch,
                  device=args.device, latency_s=r['s'],
                  images_per_s=args.batch / r['s'], peak_mb=r['peak_mb'],
                  **{k: r[k] for k in ('nfev_fwd', 'nfev_bwd',
                                       'rel_residual') if k in r})
    what = 'training step' if args.train else 'inference'
    line = (f"{what}, batch {args.batch} at {args.shape[0]}x"
            f"{args.shape[1]} on {args.device}: "
            f"{r['s'] * 1000:.1f} ms (median of {args.repeat}), "
            f"{result['images_per_s']:.2f} images/s, peak memory "
            f"{r['peak_mb']:.0f} MB")
    if 'nfev_fwd' in r:
        line += (f"; f evaluations forward {r['nfev_fwd']:.1f} (relative "
                 f"residual {r['rel_residual']:.1e})")
    if 'nfev_bwd' in r:
        line += f", backward {r['nfev_bwd']:.1f}"
    print(line)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
