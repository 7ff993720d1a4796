# Copyright (c) mdeq_mm authors. All rights reserved.
"""Shared by the tools: launcher arguments, config handling, checkpoint
names and result files."""
import json
import os
import os.path as osp
from typing import Optional

# the repository root (the tools run from a checkout)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_with_launcher(parser, argv=None):
    """Add ``--launcher`` and ``--local_rank`` (as mmengine's launchers
    pass them) to a tool's parser, parse, and export LOCAL_RANK."""
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def user_error_exit(exc: BaseException, data_only: bool = False):
    """The SystemExit (one line, no traceback) for a user's error, or None
    (re-raise it): a checkpoint that does not fit the model as ``error:
    ...``; a dataset error (also one a DataLoader worker raised) as
    ``Dataset error: ...``; with ``data_only=False`` any other
    ``FileNotFoundError`` / ``ValueError`` as ``error: ...`` (the tools use
    that for the config-preparation phase, where those are user errors)."""
    from mdeq_mm.datasets import data_error_message
    from mdeq_mm.engine import CheckpointMismatch, CheckpointSaveError
    if isinstance(exc, CheckpointMismatch):
        return SystemExit(f'error: {exc}')
    if isinstance(exc, CheckpointSaveError):
        return SystemExit(f'error: {exc.strerror}')
    msg = data_error_message(exc)
    if msg is not None:
        return SystemExit(f'Dataset error: {msg}')
    if data_only or not isinstance(exc, (FileNotFoundError, ValueError)):
        return None
    return SystemExit(f'error: {exc}')


def runner_for(build_cfg, args):
    """``build_cfg(args)`` (a user's error in it as one line), then the
    Runner (:func:`build_runner`)."""
    try:
        cfg = build_cfg(args)
    except (FileNotFoundError, ValueError) as e:
        raise user_error_exit(e) from None
    return build_runner(cfg)


def build_runner(cfg):
    """The Runner of a tool run. A config error met while building it (a
    bad option value, an unknown type, a misspelt argument: mmengine
    re-raises them naming the class) ends the tool with one line instead
    of a traceback."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        return (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
                RUNNERS.build(cfg))
    except (ValueError, KeyError) as e:
        raise SystemExit(f'error: in the config: {e}') from None
    except TypeError as e:
        if 'argument' not in str(e):
            raise
        raise SystemExit(f'error: in the config: {e}') from None


def close_distributed(runner):
    """Tear down the process group a launcher opened, once the run has
    finished on every rank. Left to interpreter exit, gloo's threads can be
    destroyed un-joined and abort a finished run with SIGABRT ('terminate
    called without an active exception'). The runner's model is released
    first: a DDP wrapper's reducer keeps the group alive past
    ``destroy_process_group``."""
    import gc

    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        runner.model = None
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def load_tool_cfg(config: str,
                  cfg_options: Optional[dict] = None,
                  work_dir: Optional[str] = None,
                  launcher: str = 'none'):
    """Read a config for a tool run: :func:`mdeq_mm.apis.load_config`
    with the launcher set, and CPU multi-process runs prepared
    (:mod:`mdeq_mm.engine.cpu_dist`)."""
    from mdeq_mm.engine.cpu_dist import setup_cpu_distributed
    from mdeq_mm.apis import load_config
    cfg = load_config(config, cfg_options, work_dir)
    cfg.launcher = launcher
    setup_cpu_distributed(cfg)
    return cfg


def final_checkpoint(config: str, work_dir: str) -> str:
    """The checkpoint an iteration-based run of ``config`` ends with:
    ``work_dir/iter_<max_iters>.pth``."""
    from mmengine.config import Config
    iters = Config.fromfile(config).train_cfg.max_iters
    return osp.join(work_dir, f'iter_{iters}.pth')


def apply_tta(cfg) -> None:
    """Test-time augmentation for ``tools/test.py --tta``, both tasks:
    segmentation uses the config's ``tta_pipeline`` / ``tta_model`` (mmseg's
    bases define multi-scale + flip); classification, mmpretrain's
    AverageClsScoreTTA over a horizontal flip of the last test transform
    (as mmpretrain's test.py), unless the config defines its own."""
    if cfg.get('default_scope', 'mmseg') == 'mmseg':
        if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
            raise SystemExit(
                '--tta: the config defines no tta_pipeline / tta_model; '
                "inherit mmseg's dataset and runtime bases (as "
                'configs/mdeq/*cityscapes*.py do) or define them')
    else:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            pipeline = cfg.test_dataloader.dataset.pipeline
            cfg.tta_pipeline = list(pipeline[:-1]) + [
                dict(
                    type='TestTimeAug',
                    transforms=[[
                        dict(type='RandomFlip', prob=1.),
                        dict(type='RandomFlip', prob=0.)
                    ], [pipeline[-1]]])
            ]
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def train_config(config: str, work_dir: str, opts=None) -> None:
    """Train ``config`` with tools/train.py in its own process (output in
    ``work_dir + '.log'``), resuming an interrupted run; a run whose final
    checkpoint and run_stats.json exist is not redone. Paths relative to
    the repository root."""
    import subprocess
    import sys
    done = osp.isfile(final_checkpoint(osp.join(ROOT, config), work_dir)) \
        and osp.isfile(osp.join(work_dir, 'run_stats.json'))
    if done:
        print(f'  {config}: done before, reusing {work_dir}')
        return
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir]
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        cmd.append('--resume')
    if opts:
        cmd += ['--cfg-options'] + list(opts)
    print(f'  training {config} -> {work_dir}', flush=True)
    os.makedirs(osp.dirname(osp.join(ROOT, work_dir)), exist_ok=True)
    with open(osp.join(ROOT, work_dir + '.log'), 'w') as log:
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=log,
                       stderr=subprocess.STDOUT)


def summarize_run(name: str, config: str, work_dir: str) -> dict:
    """A trained run (:func:`mdeq_mm.engine.run_summary`) with the config's
    parameter count, the inference time per validation image and the
    forward solve's evaluations and residual in the last validation."""
    from mmengine.config import Config

    from mdeq_mm.apis import init_model
    from mdeq_mm.engine import run_summary
    run = run_summary(osp.join(ROOT, work_dir), name)
    val = run['val']
    bsz = Config.fromfile(osp.join(ROOT, config)).val_dataloader.batch_size
    params = sum(p.numel()
                 for p in init_model(osp.join(ROOT, config)).parameters())
    return dict(name=name, config=config, mIoU=run['mIoU'], params=params,
                s_per_iter=run['s_per_iter'], peak_mem_mb=run['peak_mem_mb'],
                infer_s_per_image=val.get('time', float('nan')) / bsz,
                nfev=val.get('deq/fwd_nfev') or val.get('deq/nfev_tracked'),
                rel_residual=val.get('deq/fwd_rel_residual'))


#: the speed recipes, HRNet-W18 first (the baseline of the comparisons)
RECIPES = [
    ('HRNet-W18', 'configs/speed/hrnet-w18.py'),
    ('MDEQ-Small default', 'configs/speed/mdeq-small_default.py'),
    ('MDEQ-Small SHINE', 'configs/speed/mdeq-small_shine.py'),
    ('MDEQ-Small JR reduced', 'configs/speed/mdeq-small_jr-reduced.py'),
    ('MDEQ-Small JR + correction', 'configs/speed/mdeq-small_correction.py'),
    ('MDEQ-Small fast (JR + SHINE)', 'configs/speed/mdeq-small_fast.py'),
]
#: the demo Cityscapes data (generated and converted when missing)
CITY = 'data/demo/cityscapes'


def demo_cityscapes(root: str = CITY, **kwargs) -> str:
    """Demo Cityscapes data at ``root`` (relative to the repository root or
    absolute), written (``write_cityscapes(root, **kwargs)``) and converted
    to train ids when missing; returns ``root``."""
    from mdeq_mm.datasets import convert_cityscapes
    from mdeq_mm.datasets.demo_data import write_cityscapes
    if not osp.isdir(osp.join(ROOT, root, 'gtFine')):
        write_cityscapes(osp.join(ROOT, root), **kwargs)
        convert_cityscapes(osp.join(ROOT, root))
    return root


def train_recipe(config: str, out_dir: str, quick: bool, cfg_options) -> tuple:
    """Train one recipe on the demo data (reused when done before):
    its work dir and final checkpoint."""
    from tool_utils import final_checkpoint, train_config
    opts = [f'{d}.dataset.data_root={CITY}'
            for d in ('train_dataloader', 'val_dataloader',
                      'test_dataloader')] + list(cfg_options)
    if quick:
        opts += ['train_cfg.max_iters=12', 'train_cfg.val_interval=12',
                 'default_hooks.checkpoint.interval=12',
                 'param_scheduler.0.end=12']
    wd = osp.join(out_dir, osp.splitext(osp.basename(config))[0])
    train_config(config, wd, opts)
    ckpt = osp.join(wd, 'iter_12.pth') if quick else final_checkpoint(
        osp.join(ROOT, config), wd)
    return wd, ckpt


def cached_row(path: str, quick: bool):
    """A row measured before (None in a quick run or when absent)."""
    if quick or not osp.isfile(path):
        return None
    with open(path) as f:
        print(f'  measured before, reusing {path}')
        return json.load(f)
