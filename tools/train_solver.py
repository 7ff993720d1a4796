# Copyright (c) mdeq_mm authors. All rights reserved.
"""Fit a learned solver to a trained MDEQ model, the model frozen.

An mmengine Runner trains :class:`mdeq_mm.models.LearnedSolverFitter` on
the config's own training data: per batch, z* from a classical solve at a
high budget, then the learned solver's initializer and ``--steps``
learned Anderson iterations, fitted to z*. Writes, in the work dir:

* ``<config>_neural.pth``: the model's weights plus the learned solver's;
* ``<config>_neural.py``: the config with ``learned_solver`` set and the
  forward solver ``'neural'`` (evaluation budget ``--budget`` f
  evaluations, or the config's; a SHINE backward starts from zero, as
  SHINE needs a Broyden forward solve: train with the original config),

which ``tools/test.py``, ``mdeq_mm.apis.init_model``,
``set_solver(model, 'neural', budget=k)``, warm starts and
``tools/deployment/pytorch2onnx.py`` take as they are.

Usage:
    python tools/train_solver.py CONFIG CHECKPOINT [--work-dir DIR]
        [--iters 100] [--lr 1e-2] [--steps 6] [--m 5] [--hidden 32]
        [--reference-budget 40] [--budget N] [--resume]
        [--cfg-options k=v ...]
"""
import argparse
import copy
import io
import os.path as osp
import sys
import time


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the trained model\'s config')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('--work-dir', help='default: work_dirs/<config>'
                        '_neural')
    parser.add_argument('--iters', type=int, default=100,
                        help='fitting iterations (batches)')
    parser.add_argument('--lr', type=float, default=1e-2)
    parser.add_argument('--steps', type=int, default=6,
                        help='learned iterations fitted per batch')
    parser.add_argument('--m', type=int, default=5, help='history size')
    parser.add_argument('--hidden', type=int, default=32,
                        help='width of the mixing network')
    parser.add_argument('--reference-budget', type=int, default=40,
                        help='f evaluations of the classical solve of z*')
    parser.add_argument('--budget', type=int,
                        help='f evaluations of the written config\'s '
                        'evaluation solve (default: the config\'s)')
    parser.add_argument('--resume', action='store_true',
                        help='continue an interrupted fit in the work dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    for name in ('iters', 'steps', 'reference_budget', 'budget'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def written_config(cfg, learned: dict, budget):
    """The config a fitted model is used with: the learned solver, the
    forward solver 'neural' with the loop options the config had."""
    from mdeq_mm.ops.solvers import max_iter_for, solver_options
    out = copy.deepcopy(cfg)
    keep = solver_options('neural')
    backbone = out.model.backbone
    backbone.learned_solver = learned
    backbone.solver = 'neural'
    for key in ('solver_cfg', 'eval_solver_cfg'):
        if backbone.get(key) is not None:
            backbone[key] = {k: v for k, v in backbone[key].items()
                             if k in keep}
    if (backbone.get('grad_cfg') or {}).get('init') == 'shine':
        # SHINE starts the backward solve from a Broyden forward solve's
        # estimate; the written config is for evaluation, where there is
        # no backward solve (train with the original config)
        backbone.grad_cfg.init = 'zero'
    if budget:
        backbone.eval_solver_cfg = dict(
            backbone.get('eval_solver_cfg') or backbone.get('solver_cfg')
            or {}, max_iter=max_iter_for(budget))
    return out


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mdeq_mm.engine.checkpoint import atomic_write
    from mdeq_mm.engine.runs import (check_loadable, load_run_config,
                                     run_train, runner_for)
    check_loadable(args.checkpoint)
    stem = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join('work_dirs', stem + '_neural')
    cfg = load_run_config(args.config, args.cfg_options, work_dir)
    if (cfg.model.get('backbone') or {}).get('type') != 'MDEQ':
        raise SystemExit(f'error: {args.config} has no MDEQ backbone')
    learned = dict(m=args.m, hidden=args.hidden)
    target = written_config(cfg, learned, args.budget)

    def prepare():
        fit = copy.deepcopy(cfg)
        fit.model = dict(type='LearnedSolverFitter', model=cfg.model,
                         checkpoint=args.checkpoint, learned_solver=learned,
                         steps=args.steps, reference=dict(
                             budget=args.reference_budget))
        fit.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters)
        for key in ('val', 'test'):
            fit[f'{key}_cfg'] = fit[f'{key}_dataloader'] = None
            fit[f'{key}_evaluator'] = None
        fit.optim_wrapper = dict(
            type='OptimWrapper', clip_grad=dict(max_norm=1.0),
            optimizer=dict(type='AdamW', lr=args.lr, weight_decay=0.))
        fit.param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False,
                                   T_max=args.iters, eta_min=args.lr / 100)
        fit.default_hooks.checkpoint = dict(
            type='CheckpointHook', by_epoch=False, max_keep_ckpts=1,
            interval=min(args.iters, 100))
        fit.default_hooks.pop('visualization', None)
        fit.custom_hooks = []
        fit.load_from, fit.resume = None, args.resume
        return fit

    runner = runner_for(prepare)
    start = time.time()
    run_train(runner)
    seconds = time.time() - start
    path = osp.join(work_dir, stem + '_neural.pth')
    buffer = io.BytesIO()  # written whole or not at all
    torch.save(dict(state_dict=runner.model.model.state_dict(), meta=dict(
        learned_solver=learned, fitted_iters=args.iters,
        fit_seconds=seconds, fitted_from=osp.abspath(args.checkpoint))),
        buffer)
    atomic_write(buffer.getvalue(), path)
    config = osp.join(work_dir, stem + '_neural.py')
    target.dump(config)
    print(f'fitted in {seconds:.0f} s; wrote {path} and {config}.\n'
          f'Evaluate: python tools/test.py {config} {path}', file=sys.stderr)
    return config, path


if __name__ == '__main__':
    main()
