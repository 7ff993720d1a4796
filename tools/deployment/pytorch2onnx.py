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


def verify(model, args, solve) -> bool:
    """Print the errors per batch size; True if all are within tolerance."""
    from mdeq_mm.deploy import verify_onnx
    rows = verify_onnx(model, args.out, args.shape, (1, 2) if args.dynamic
                       else (args.batch_size, ), args.seed, TOLERANCE)
    for r in rows:
        print(f"verify batch {r['batch']}: max abs error {r['max_abs']:.3e},"
              f" relative {r['max_rel']:.3e}" + ''.join(
                  f'; PyTorch solve: relative residual {res:.2e}'
                  for res in r['residuals']) +
              ('' if r['ok'] else f'  > {TOLERANCE:g}: FAILED'))
    ok = all(r['ok'] for r in rows)
    if not ok and solve:
        print('note: ONNX Runtime and PyTorch round differently; a solve '
              'that has not converged (a large relative residual above, '
              'e.g. an untrained model) amplifies that with every '
              'iteration, and float32 Broyden / Anderson arithmetic on large '
              'states adds about 1e-4. Try --solver-dtype float64, a '
              'trained checkpoint or a smaller --budget.')
    return ok


def main(argv=None):
    args = parse_args(argv)
    from mdeq_mm.apis import find_mdeqs, init_model, set_solver
    from mdeq_mm.deploy import ExportError, export_onnx, onnx_metadata
    from mdeq_mm.engine.runs import check_loadable
    if args.checkpoint:
        check_loadable(args.checkpoint)
    model = init_model(args.config, args.checkpoint,
                       cfg_options=args.cfg_options, seed=args.seed)
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
                    metadata=dict(
                        onnx_metadata(model, args.shape,
                                      set_cfgs[0] if set_cfgs else None),
                        config=osp.basename(args.config),
                        checkpoint=osp.basename(args.checkpoint or '')
                        or 'none'))
    except ExportError as e:
        raise SystemExit(f'error: {e}')
    solve = (f"solver {set_cfgs[0]['solver']} ({set_cfgs[0]['dtype']}), "
             f"{set_cfgs[0]['budget']} f evaluations"
             if set_cfgs else 'no implicit layer')
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MB; '
          f'{solve}; opset {args.opset}; input {args.shape[0]}x'
          f'{args.shape[1]}, batch '
          f"{'dynamic' if args.dynamic else args.batch_size})")
    if args.verify and not verify(model, args, set_cfgs):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
