# Copyright (c) mdeq_mm authors. All rights reserved.
"""Export an mdeq_mm segmentor or classifier to ONNX with a fixed solver
budget, and check it against PyTorch with onnxruntime.

Usage:
    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --out FILE
        --shape H W [--solver broyden|anderson|fixed_point] [--budget N]
        [--opset K] [--dynamic-batch | --static] [--verify]
        [--cfg-options k=v ...]

The graph maps normalised (B, 3, H, W) images (the data preprocessor's
output; mean, std and channel order are in the file's metadata) to the
segmentor's logits at the decode head's resolution or the classifier's
scores. The solver runs its whole budget of N f evaluations (default: the
config's evaluation budget, ``max_iter + 1``) with no early stop: PyTorch in
eval mode with ``mdeq_mm.apis.set_solver(model, solver, N, tol=0)`` (that
is ``eval_solver_cfg=dict(max_iter=N - 1, tol=0)``) computes the same
output. Without a checkpoint the model keeps its (seeded)
initialisation. ``--verify`` runs onnxruntime on a random batch (batch 1
and 2 with a dynamic batch axis) and exits 1 when the relative error
max |onnx - torch| / max |torch| exceeds 1e-4.
"""
import argparse
import os
import os.path as osp
import sys

TOLERANCE = 1e-4


def parse_args(argv=None):
    from mmengine.config import DictAction

    from mdeq_mm.deploy import DEFAULT_OPSET
    from mdeq_mm.ops import SOLVERS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', default=None)
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--shape', nargs=2, type=int, required=True,
                        metavar=('H', 'W'), help='input height and width')
    parser.add_argument('--solver', choices=sorted(SOLVERS),
                        help="forward solver (default: the config's)")
    parser.add_argument('--budget', type=int,
                        help='f evaluations of the solve (default: the '
                        "config's evaluation max_iter + 1)")
    parser.add_argument('--solver-dtype', choices=['float32', 'float64'],
                        help="the solver's arithmetic (default: the "
                        "config's, float32); float64 keeps large states "
                        'accurate (see README, Deployment)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument('--dynamic-batch', dest='dynamic', action='store_true',
                       default=True, help='a dynamic batch axis (default)')
    batch.add_argument('--static', dest='dynamic', action='store_false',
                       help='batch fixed to --batch-size')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='batch of the traced input')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the initialisation (no checkpoint) '
                        'and of the verification input')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def build(args):
    from mdeq_mm.apis import init_model
    from mdeq_mm.engine import checkpoint_problem
    if args.checkpoint:
        problem = checkpoint_problem(args.checkpoint)
        if problem:
            raise SystemExit(f'error: cannot load {args.checkpoint}: '
                             f'{problem}')
    model = init_model(args.config, args.checkpoint,
                       cfg_options=args.cfg_options, seed=args.seed)
    return model.cfg, model


def metadata(cfg, set_cfgs, args):
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor',
                                                        {})
    meta = dict(config=osp.basename(args.config),
                checkpoint=osp.basename(args.checkpoint or '') or 'none',
                input='normalised (B, 3, H, W) float32',
                shape=f'{args.shape[0]}x{args.shape[1]}')
    for key in ('mean', 'std', 'bgr_to_rgb', 'to_rgb'):
        if key in pre:
            meta[key] = str(list(pre[key]) if key in ('mean', 'std')
                            else pre[key])
    if set_cfgs:
        meta['solver'] = set_cfgs[0]['solver']
        meta['budget'] = str(set_cfgs[0]['budget'])  # f evaluations
        meta['solver_dtype'] = set_cfgs[0]['dtype']
    return meta


def verify(model, path, args, set_cfgs):
    """Print the errors per batch size; True if all are within tolerance."""
    import torch

    from mdeq_mm.apis import find_mdeqs
    from mdeq_mm.deploy import compare_onnx, onnx_session
    g = torch.Generator().manual_seed(args.seed)
    session = onnx_session(path)
    ok = True
    for bsz in ((1, 2) if args.dynamic else (args.batch_size, )):
        x = torch.randn(bsz, 3, *args.shape, generator=g)
        err = compare_onnx(model, path, x, session)
        line = (f'verify batch {bsz}: max abs error {err["max_abs"]:.3e}, '
                f'relative {err["max_rel"]:.3e}')
        for m in find_mdeqs(model):
            stats = m.last_stats.forward
            line += (f'; PyTorch solve: relative residual '
                     f'{stats.rel_lowest.max().item():.2e}')
        good = err['max_rel'] <= TOLERANCE
        print(line + ('' if good else f'  > {TOLERANCE:g}: FAILED'))
        ok &= good
    if not ok and set_cfgs:
        print('note: ONNX Runtime and PyTorch round differently; a solve '
              'that has not converged (a large relative residual above, '
              'e.g. an untrained model) amplifies that with every '
              'iteration, and float32 Broyden / Anderson arithmetic on large '
              'states adds about 1e-4. Try --solver-dtype float64, a '
              'trained checkpoint or a smaller --budget.')
    return ok


def main(argv=None):
    args = parse_args(argv)
    from mdeq_mm.apis import find_mdeqs, set_solver
    from mdeq_mm.deploy import ExportError, export_onnx
    cfg, model = build(args)
    set_cfgs = []
    if find_mdeqs(model):  # a fixed graph: the whole budget, tol=0
        try:
            set_cfgs = set_solver(model, args.solver, args.budget, tol=0.,
                                  dtype=args.solver_dtype)
        except ValueError as e:
            raise SystemExit(f'error: {e}')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    try:
        export_onnx(model, args.out, args.shape, batch_size=args.batch_size,
                    opset=args.opset, dynamic_batch=args.dynamic,
                    metadata=metadata(cfg, set_cfgs, args))
    except ExportError as e:
        raise SystemExit(f'error: {e}')
    solve = (f"solver {set_cfgs[0]['solver']} ({set_cfgs[0]['dtype']}), "
             f"{set_cfgs[0]['budget']} f evaluations"
             if set_cfgs else 'no implicit layer')
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MB; '
          f'{solve}; opset {args.opset}; input {args.shape[0]}x'
          f'{args.shape[1]}, batch '
          f"{'dynamic' if args.dynamic else args.batch_size})")
    if args.verify and not verify(model, args.out, args, set_cfgs):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
