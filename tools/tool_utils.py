# Copyright (c) mdeq_mm authors. All rights reserved.
"""Shared by the tools: launcher arguments, config handling, checkpoint
names and result files."""
import json
import os
import os.path as osp

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


def data_root_options(root: str, splits=('train', 'val', 'test')) -> list:
    """``--cfg-options`` that point the dataloaders of ``splits`` at
    ``root``."""
    return [f'{s}_dataloader.dataset.data_root={root}' for s in splits]


def final_checkpoint(config: str, work_dir: str) -> str:
    """The checkpoint an iteration-based run of ``config`` ends with:
    ``work_dir/iter_<max_iters>.pth``."""
    from mmengine.config import Config
    iters = Config.fromfile(config).train_cfg.max_iters
    return osp.join(work_dir, f'iter_{iters}.pth')


def train_config(config: str, work_dir: str, opts=None) -> None:
    """Train ``config`` with tools/train.py in its own process (output in
    ``work_dir + '.log'``), resuming an interrupted run; a run whose final
    checkpoint and run_stats.json exist is not redone. Paths relative to
    the repository root."""
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
    run_logged(cmd, work_dir + '.log')


def run_logged(cmd: list, log: str) -> None:
    """Run ``cmd`` from the repository root, its output in ``log``
    (relative to the root); a failure raises."""
    import subprocess
    os.makedirs(osp.dirname(osp.join(ROOT, log)), exist_ok=True)
    with open(osp.join(ROOT, log), 'w') as f:
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=f,
                       stderr=subprocess.STDOUT)


#: the speed recipes, HRNet-W18 first (the baseline of the comparisons)
RECIPES = [
    ('HRNet-W18', 'configs/speed/hrnet-w18.py'),
    ('MDEQ-Small default', 'configs/speed/mdeq-small_default.py'),
    ('MDEQ-Small SHINE', 'configs/speed/mdeq-small_shine.py'),
    ('MDEQ-Small JR reduced', 'configs/speed/mdeq-small_jr-reduced.py'),
    ('MDEQ-Small JR + correction', 'configs/speed/mdeq-small_correction.py'),
    ('MDEQ-Small fast (JR + SHINE)', 'configs/speed/mdeq-small_fast.py'),
    ('MDEQ-Small fast-lite (JR 10% + SHINE, 7 / 1)',
     'configs/speed/mdeq-small_fast-lite.py'),
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


#: f evaluations per solve swept with fixed budgets (per frame on video);
#: the largest gives the reference
SEQUENCE_BUDGETS = (1, 2, 3, 4, 6, 8, 12, 16, 28)
#: the demo video: snippets x frames, and the annotated frames of each (the
#: download annotates only the 20th; 4 per snippet steady the mIoU, which
#: on 4 frames moved by a grid step with one frame)
SEQUENCE = 'data/demo/cityscapes_video'
SEQUENCE_SNIPPETS, SEQUENCE_FRAMES = 4, 20
SEQUENCE_ANNOTATED = (4, 9, 14, 19)


def demo_video() -> str:
    """The demo video snippets (rewritten when another layout is there)."""
    import glob
    import shutil

    from mdeq_mm.datasets.demo_data import write_cityscapes_sequence
    video = osp.join(ROOT, SEQUENCE)
    labels = glob.glob(osp.join(video, 'gtFine', '*', '*', '*_labelIds.png'))
    if len(labels) != SEQUENCE_SNIPPETS * len(SEQUENCE_ANNOTATED):
        shutil.rmtree(video, ignore_errors=True)
        write_cityscapes_sequence(video, n_seq=SEQUENCE_SNIPPETS,
                                  n_frames=SEQUENCE_FRAMES,
                                  annotated=SEQUENCE_ANNOTATED)
    return video


def train_recipe(config: str, out_dir: str, quick: bool, cfg_options) -> tuple:
    """Train one recipe on the demo data (reused when done before):
    its work dir and final checkpoint."""
    opts = data_root_options(CITY) + list(cfg_options)
    if quick:
        opts += ['train_cfg.max_iters=12', 'train_cfg.val_interval=12',
                 'default_hooks.checkpoint.interval=12',
                 'param_scheduler.0.end=12']
    wd = osp.join(out_dir, osp.splitext(osp.basename(config))[0])
    train_config(config, wd, opts)
    ckpt = osp.join(wd, 'iter_12.pth') if quick else final_checkpoint(
        osp.join(ROOT, config), wd)
    return wd, ckpt


def fit_recipe_solver(config: str, checkpoint: str, out_dir: str,
                      quick: bool) -> tuple:
    """Fit the learned solver of a trained recipe on the demo data with
    tools/train_solver.py in its own process (reused when done before):
    the config and checkpoint it wrote, and the fitting time (s)."""
    import sys

    import torch
    stem = osp.splitext(osp.basename(config))[0]
    wd = osp.join(out_dir, stem + '_neural')
    cfg_out, ckpt = (osp.join(ROOT, wd, stem + '_neural' + ext)
                     for ext in ('.py', '.pth'))
    if not osp.isfile(ckpt):
        print(f'  fitting the learned solver of {config} -> {wd}',
              flush=True)
        cmd = [sys.executable, 'tools/train_solver.py', config, checkpoint,
               '--work-dir', wd, '--cfg-options',
               *data_root_options(CITY, ('train', 'test'))]
        if quick:
            cmd += ['--iters', '4']
        run_logged(cmd, wd + '.log')
    meta = torch.load(ckpt, map_location='cpu')['meta']
    return cfg_out, ckpt, meta['fit_seconds']


def cached_row(path: str, quick: bool):
    """A row measured before (None in a quick run or when absent)."""
    if quick or not osp.isfile(path):
        return None
    with open(path) as f:
        print(f'  measured before, reusing {path}')
        return json.load(f)
