# Copyright (c) mdeq_mm authors. All rights reserved.
"""Speed and memory of MDEQ training and inference against unrolled and
explicit peers, on the current device (a benchmark, not a test).

Two suites. ``--suite recipes`` trains HRNet-W18 and MDEQ-Small recipes
(``configs/speed/``: the reference's budgets, SHINE backward,
Jacobian-regularised reduced budgets, fixed-point correction, combined) on
the segmentation demo data with the same schedule, and reports side by
side: mIoU at equal iterations, the training step (s / iteration, batch 4
64x128, implicit phase, mean of 6), inference s / image at 1024x2048, f
evaluations (forward and backward in training, forward at inference), peak
memory. Runs are resumable (finished trainings and measured recipes are
reused).

``--suite video`` runs every MDEQ recipe (trained as by ``recipes``, in the
same work dirs) on demo ``leftImg8bit_sequence`` snippets cold vs
warm-started (tools/analysis/sequence.py): f evaluations per frame to
relative residual 1e-2, and with fixed budgets the fewest f evaluations
per frame at equal mIoU (within 1 of cold at 28) with the pixel agreement
with that reference on every frame.

``--suite models`` (the default) times fixed cases, each in its own
process (peak memory counts PyTorch's CPU allocations through the
process's peak RSS; torch's allocator on CUDA):

* segmentation, MDEQ-Small + MDEQHead, crops 256x512 and 512x1024, batch 1
  and 2: training step (forward + backward) with the implicit 'ift'
  gradient (Broyden 27 forward / 30 backward, full budgets), 'phantom'
  (k = 5 damped steps), 'unrolled' (27 weight-tied applications, plain
  backprop), and mmseg's HRNet-W18 FCN;
* segmentation inference at 1024x2048 (MDEQ solve with max_iter 27; HRNet);
* classification at 224x224, batch 2: MDEQ-Small classifier (ift,
  phantom, unrolled) and mmpretrain's HRNet-W18 classifier;
* peak training memory against the forward max_iter (10, 20, 40) for the
  implicit model (Broyden history: min(max_iter + 1, 16) steps of B · D
  floats, reported separately) and the unrolled model with as many
  applications.

Prints markdown tables, writes ``benchmark.json`` and ``benchmark.png``.

Usage:
    python tools/benchmark.py [--suite models|recipes|video]
        [--device cpu] [--out-dir DIR] [--quick] [--cfg-options k=v ...]

``--quick`` with ``recipes`` or ``video`` trains 12 iterations per recipe
(a smoke run of the whole pipeline; its numbers mean nothing).
"""
import argparse
import glob
import inspect
import json
import os
import os.path as osp
import shutil

import torch

from mdeq_mm.engine.profiling import (PeakMemory, run_isolated, save_results,
                                      timed)
from mdeq_mm.ops.solvers import broyden
from tool_utils import make_step, time_step

# steps the forward Broyden solve stores: min(max_iter + 1, its history)
HISTORY = inspect.signature(broyden).parameters['history'].default
MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


def mdeq_backbone(mode, max_iter=27, backward=30):
    full = dict(tol=0.0, stop_mode='rel')
    cfg = dict(type='MDEQ', arch='small', norm_cfg=dict(type='BN'),
               solver_cfg=dict(max_iter=max_iter, **full),
               grad_cfg=dict(solver='broyden',
                             solver_cfg=dict(max_iter=backward, **full)))
    if mode == 'phantom':
        cfg.update(grad='phantom', grad_cfg=dict(k=5, tau=0.6))
    elif mode == 'unrolled':
        cfg.update(mode='unrolled', unrolled_depth=max_iter)
    return cfg


def build(task, model, mode, max_iter):
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    import mdeq_mm  # noqa: F401
    if task == 'seg':
        from mmseg.registry import MODELS
        scope = 'mmseg'
        if model == 'mdeq':
            backbone = mdeq_backbone(mode, max_iter)
            head = dict(type='MDEQHead', in_channels=[32, 64, 128, 256],
                        num_classes=19, norm_cfg=dict(type='BN'))
        else:  # mmseg's fcn_hr18 as the speed comparison runs it
            from mmengine.config import Config
            speed = Config.fromfile(osp.join(
                ROOT, 'configs/speed/hrnet-w18.py')).model
            backbone = speed.backbone
            head = dict(speed.decode_head, loss_decode=dict(
                type='CrossEntropyLoss', loss_weight=1.0))
        cfg = ConfigDict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor', **MEAN_STD),
            backbone=backbone, decode_head=head, train_cfg=dict(),
            test_cfg=dict(mode='whole'))
    else:
        from mmpretrain.registry import MODELS
        scope = 'mmpretrain'
        if model == 'mdeq':
            backbone = mdeq_backbone(mode, max_iter)
            neck = [
                dict(type='MDEQClsNeck'),
                dict(type='GlobalAveragePooling')
            ]
        else:
            backbone = dict(type='HRNet', arch='w18')
            neck = [dict(type='HRFuseScales', in_channels=(18, 36, 72, 144)),
                    dict(type='GlobalAveragePooling')]
        cfg = ConfigDict(
            type='ImageClassifier', backbone=backbone, neck=neck,
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=2048))
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(cfg)


def run_case(task, model, mode, size, bsz, device, kind, max_iter, repeat):
    """One measurement in this (fresh) process."""
    torch.manual_seed(0)
    net = build(task, model, mode, max_iter).to(device)
    r = time_step(net, kind, size, bsz, device, repeat, task)
    history_mb = 0.0
    if model == 'mdeq' and mode != 'unrolled':
        dim = sum(c * (size[0] // s) * (size[1] // s)
                  for c, s in zip((32, 64, 128, 256), (4, 8, 16, 32)))
        history_mb = min(max_iter + 1, HISTORY) * bsz * dim * 4 / 2**20
    return dict(task=task, model=model, mode=mode, size=list(size), bsz=bsz,
                kind=kind, max_iter=max_iter, time_s=r['s'],
                peak_mb=r['peak_mb'], history_mb=history_mb,
                mode_run=r['mode'])


def label(r):
    return 'HRNet-W18' if r['model'] == 'hrnet' else f"MDEQ-Small {r['mode']}"


def make_plan(quick):
    """(task, model, mode, size, batch, kind, max_iter) of every case."""
    modes = [('mdeq', 'ift'), ('mdeq', 'phantom'), ('mdeq', 'unrolled'),
             ('hrnet', '-')]
    crops = [(256, 512)] if quick else [(256, 512), (512, 1024)]
    batches = [1] if quick else [1, 2]
    plan = [('seg', m, mode, c, b, 'train', 27) for c in crops
            for b in batches for m, mode in modes]
    plan += [('seg', m, mode, (1024, 2048), 1, 'infer', 27)
             for m, mode in (('mdeq', 'ift'), ('hrnet', '-'))]
    plan += [('cls', m, mode, (224, 224), 2, 'train', 27)
             for m, mode in modes]
    plan += [('seg', 'mdeq', mode, (256, 512), 1, 'train', n)
             for n in (10, 20, 40) for mode in ('ift', 'unrolled')]
    return plan


def print_tables(rows):
    print('### Training step (forward + backward), segmentation\n')
    print('| model | crop | batch | step time (s) | peak memory (MB) | '
          'of which Broyden history (MB) |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        if r['task'] == 'seg' and r['kind'] == 'train' and r['max_iter'] == 27:
            print(f"| {label(r)} | {r['size'][0]}x{r['size'][1]} | "
                  f"{r['bsz']} | {r['time_s']:.2f} | {r['peak_mb']:.0f} | "
                  f"{r['history_mb']:.0f} |")
    print('\n### Inference, segmentation 1024x2048, batch 1\n')
    print('| model | time (s) | peak memory (MB) |\n|---|---|---|')
    for r in rows:
        if r['kind'] == 'infer':
            print(f"| {label(r)} | {r['time_s']:.2f} | {r['peak_mb']:.0f} |")
    print('\n### Training step, classification 224x224, batch 2\n')
    print('| model | step time (s) | peak memory (MB) |\n|---|---|---|')
    for r in rows:
        if r['task'] == 'cls':
            print(f"| {label(r)} | {r['time_s']:.2f} | {r['peak_mb']:.0f} |")
    print('\n### Peak training memory vs forward max_iter (256x512, batch 1)'
          '\n')
    print('| forward max_iter | implicit (MB) | implicit without history '
          '(MB) | unrolled, same applications (MB) |\n|---|---|---|---|')
    mem = {(r['max_iter'], r['mode']): r for r in rows
           if r['max_iter'] in (10, 20, 40)}
    for n in (10, 20, 40):
        imp, unr = mem[(n, 'ift')], mem[(n, 'unrolled')]
        print(f"| {n} | {imp['peak_mb']:.0f} | "
              f"{imp['peak_mb'] - imp['history_mb']:.0f} | "
              f"{unr['peak_mb']:.0f} |")
    return mem


def print_targets(rows, mem):
    """The targets, as ratios in this run."""
    seg = {(r['mode'], tuple(r['size']), r['bsz']): r for r in rows
           if r['task'] == 'seg' and r['kind'] == 'train'
           and r['max_iter'] == 27 and r['model'] == 'mdeq'}
    print('\n### Targets\n')
    for key in sorted({k[1:] for k in seg}):
        ift, ph, un = (seg[(m, ) + key]
                       for m in ('ift', 'phantom', 'unrolled'))
        print(f'- {key[0][0]}x{key[0][1]} batch {key[1]}: implicit / '
              f"unrolled memory {ift['peak_mb'] / un['peak_mb']:.2f} "
              '(target <= 0.4); phantom / ift step time '
              f"{ph['time_s'] / ift['time_s']:.2f} (target <= 0.6)")
    m10 = mem[(10, 'ift')]['peak_mb'] - mem[(10, 'ift')]['history_mb']
    m40 = mem[(40, 'ift')]['peak_mb'] - mem[(40, 'ift')]['history_mb']
    print(f'- implicit memory at max_iter 40 / at 10, history excluded: '
          f'{m40 / m10:.2f} (target <= 1.1)')


RECIPES = [
    ('HRNet-W18', 'configs/speed/hrnet-w18.py'),
    ('MDEQ-Small default', 'configs/speed/mdeq-small_default.py'),
    ('MDEQ-Small SHINE', 'configs/speed/mdeq-small_shine.py'),
    ('MDEQ-Small JR reduced', 'configs/speed/mdeq-small_jr-reduced.py'),
    ('MDEQ-Small JR + correction', 'configs/speed/mdeq-small_correction.py'),
    ('MDEQ-Small fast (JR + SHINE)', 'configs/speed/mdeq-small_fast.py'),
]
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CITY = 'data/demo/cityscapes'
SEQUENCE = 'data/demo/cityscapes_video'
# relative residual the video solves stop at: the recipes' models reach
# ~5e-2 at their training budgets; at 1e-3 none converges in 28 evaluations
SEQUENCE_TOL = 1e-2
# f evaluations per frame swept with fixed budgets; the largest (the
# tolerance runs' budget too) gives the reference
SEQUENCE_BUDGETS = (1, 2, 3, 4, 6, 8, 12, 16, 28)
# the demo video: snippets x frames, and the annotated frames of each (the
# download annotates only the 20th; 4 per snippet steady the mIoU, which
# on 4 frames moved by a grid step with one frame)
SEQUENCE_SNIPPETS, SEQUENCE_FRAMES = 4, 20
SEQUENCE_ANNOTATED = (4, 9, 14, 19)


def time_recipe(config, checkpoint, data_root, device, kind, repeat):
    """One recipe's training step (a batch of the demo training data,
    implicit phase; the mean of 6) or inference at 1024x2048 (a
    preprocessed demo validation image resized; the median of ``repeat``),
    in this fresh process: time, peak memory and the f evaluations."""
    import torch.nn.functional as F

    from mdeq_mm.apis import data_batch, find_mdeqs, init_model
    torch.manual_seed(0)
    opts = {f'{d}.dataset.data_root': data_root
            for d in ('train_dataloader', 'val_dataloader')}
    model = init_model(config, checkpoint, device, cfg_options=opts)
    mdeq = (find_mdeqs(model) or [None])[0]
    if kind == 'train':
        inputs, samples = data_batch(
            model, model.cfg.train_dataloader.batch_size, split='train',
            training=True)
    else:
        inputs, samples = data_batch(model, 1)
        inputs = F.interpolate(inputs, size=(1024, 2048), mode='bilinear')
    step = make_step(model, kind, inputs, samples)

    with PeakMemory(device) as mem:
        step()  # warm-up (lazy initialisation), not timed
        if kind == 'train':  # the mean: a Jacobian loss runs on some steps
            seconds = sum(timed(step, device) for _ in range(6)) / 6
        else:
            seconds = timed(step, device, repeat)
    out = dict(time_s=seconds, peak_mb=mem.delta / 2**20)
    if mdeq is not None:
        st = mdeq.last_stats
        out['fwd_nfev'] = float(st.forward.nfev.float().mean())
        out['fwd_rel_residual'] = float(st.forward.rel_lowest.mean())
        if st.backward is not None:
            out['bwd_nfev'] = float(st.backward.nfev.float().mean())
    return out


def prepare_demo_data():
    """The demo Cityscapes data (converted) and the demo video snippets."""
    from mdeq_mm.datasets import convert_cityscapes
    from mdeq_mm.datasets.demo_data import (write_cityscapes,
                                            write_cityscapes_sequence)
    if not osp.isdir(osp.join(ROOT, CITY, 'gtFine')):
        write_cityscapes(osp.join(ROOT, CITY))
        convert_cityscapes(osp.join(ROOT, CITY))
    video = osp.join(ROOT, SEQUENCE)
    labels = glob.glob(osp.join(video, 'gtFine', '*', '*', '*_labelIds.png'))
    if len(labels) != SEQUENCE_SNIPPETS * len(SEQUENCE_ANNOTATED):
        shutil.rmtree(video, ignore_errors=True)  # another layout
        write_cityscapes_sequence(video, n_seq=SEQUENCE_SNIPPETS,
                                  n_frames=SEQUENCE_FRAMES,
                                  annotated=SEQUENCE_ANNOTATED)


def train_recipe(config, out_dir, quick, cfg_options):
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


def _cached(path, quick):
    """A row measured before (None in a quick run or when absent)."""
    if quick or not osp.isfile(path):
        return None
    with open(path) as f:
        print(f'  measured before, reusing {path}')
        return json.load(f)


def run_recipes(args):
    """Train, time and compare every recipe (see the module docstring)."""
    from tool_utils import summarize_run
    prepare_demo_data()
    os.makedirs(osp.join(ROOT, args.out_dir), exist_ok=True)
    rows = []
    for name, config in RECIPES:
        cached = osp.join(ROOT, args.out_dir, osp.splitext(
            osp.basename(config))[0] + '_row.json')
        row = _cached(cached, args.quick)
        if row is None:
            wd, ckpt = train_recipe(config, args.out_dir, args.quick,
                                    args.cfg_options)
            row = summarize_run(name, config, wd)
            for kind in ('train', 'infer'):
                r = run_isolated(time_recipe, config=config, checkpoint=ckpt,
                                 data_root=CITY, device=args.device,
                                 kind=kind, repeat=args.repeat)
                row.update({f'{kind}_{k}': v for k, v in r.items()})
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


def run_video(args):
    """Every MDEQ recipe (trained as by ``--suite recipes``, in the same
    work dirs) on the demo snippets, cold vs warm, in both protocols of
    :mod:`mdeq_mm.video` (as tools/analysis/sequence.py runs them)."""
    from mdeq_mm.apis import init_model, set_solver
    from mdeq_mm.datasets import cityscapes_sequences
    from mdeq_mm.video import (compare_starts, equal_miou_budgets,
                               plot_rows, sweep_budgets)
    prepare_demo_data()
    snippets = cityscapes_sequences(osp.join(ROOT, SEQUENCE), 'val')
    train_dir = osp.join(osp.dirname(args.out_dir), 'recipes')
    rows = []
    for name, config in RECIPES[1:]:
        stem = osp.splitext(osp.basename(config))[0]
        cached = osp.join(ROOT, args.out_dir, stem + '_video.json')
        row = _cached(cached, args.quick)
        if row is None:
            _, ckpt = train_recipe(config, train_dir, args.quick,
                                   args.cfg_options)
            print(f'  {name}: video inference cold vs warm', flush=True)
            out = osp.join(ROOT, args.out_dir, stem)
            model = init_model(config, ckpt)
            set_solver(model, budget=max(SEQUENCE_BUDGETS), tol=SEQUENCE_TOL,
                       options=dict(stop_mode='rel'))
            tol = compare_starts(model, snippets)
            save_results(tol, out + '_tol.png', plot_rows)
            fixed = sweep_budgets(model, snippets, SEQUENCE_BUDGETS)
            fixed = dict(rows=fixed, equal_mIoU=equal_miou_budgets(fixed))
            save_results(fixed, out + '_budgets.png',
                         lambda _, png: plot_rows(fixed['rows'], png))
            row = dict(name=name, tolerance=[
                {k: v for k, v in r.items() if k != 'nfev_trace'}
                for r in tol], **fixed)
            with open(cached, 'w') as f:
                json.dump(row, f, indent=1)
        rows.append(row)
    print_video(rows)
    png = osp.join(args.out_dir, 'video.png')
    print(f'\nwrote {save_results(rows, png, plot_video)} and {png}')
    return rows


def print_video(rows):
    print('\n### Video inference, cold vs warm start (demo snippets)\n')
    print(f'To tolerance: relative residual {SEQUENCE_TOL:g}, at most '
          f'{max(SEQUENCE_BUDGETS)} f evaluations. Fixed budgets: every '
          f'frame gets b of {SEQUENCE_BUDGETS}; equal mIoU: within 1 of the '
          f'reference, cold at {max(SEQUENCE_BUDGETS)}; agreement: pixels '
          'of all frames predicted as the reference does.\n')
    print('| model | to tol.: f evals / frame cold | warm | warm / cold | '
          'reference mIoU | equal mIoU: f evals / frame cold | warm | '
          'fewer (x) | mIoU cold | mIoU warm | agreement cold (%) | '
          'agreement warm (%) |\n|' + '---|' * 12)
    for r in rows:
        cold, warm = r['tolerance']
        eq = r['equal_mIoU']
        at = {(x['start'], x['budget']): x for x in r['rows']}
        c, w = at['cold', eq['cold']], at['warm', eq['warm']]
        print(f"| {r['name']} | {cold['nfev_per_frame']:.1f} | "
              f"{warm['nfev_per_frame']:.1f} | "
              f"{warm['nfev_per_frame'] / cold['nfev_per_frame']:.2f} | "
              f"{eq['reference_mIoU']:.2f} | {eq['cold']} | {eq['warm']} | "
              f"{eq['saving']:.2f} | {c['mIoU']:.2f} | {w['mIoU']:.2f} | "
              f"{c['agreement']:.1f} | {w['agreement']:.1f} |")


def plot_video(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for r in rows:
        name = r['name'].replace('MDEQ-Small ', '')
        for start, style in (('cold', '--'), ('warm', '-')):
            mine = [x for x in r['rows'] if x['start'] == start]
            b = [x['budget'] for x in mine]
            line, = axes[0].plot(b, [x['mIoU'] for x in mine], style,
                                 marker='o', label=f'{name} {start}')
            axes[1].plot(b, [x['agreement'] for x in mine], style,
                         marker='o', color=line.get_color())
    axes[0].set_ylabel('mIoU (annotated frames)')
    axes[1].set_ylabel('agreement with the reference (%)')
    for ax in axes:
        ax.set_xlabel('f evaluations per frame')
        ax.set_xscale('log', base=2)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _nfev(r, key):
    v = r.get(key)
    return '-' if v is None else f'{v:.1f}'


def print_recipes(rows):
    base = rows[0]
    print('\n### Recipes on the demo task (batch 4, 64x128, equal '
          'iterations)\n')
    print('| model | mIoU | train step (s) | x HRNet | inference 1024x2048 '
          '(s) | x HRNet | f evals train fwd / bwd | f evals inference | '
          'peak train memory (MB) | peak inference memory (MB) |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        miou = 'n/a' if r['mIoU'] is None else f"{r['mIoU']:.2f}"
        print(f"| {r['name']} | {miou} | {r['train_time_s']:.3f} | "
              f"{r['train_time_s'] / base['train_time_s']:.2f} | "
              f"{r['infer_time_s']:.2f} | "
              f"{r['infer_time_s'] / base['infer_time_s']:.2f} | "
              f"{_nfev(r, 'train_fwd_nfev')} / {_nfev(r, 'train_bwd_nfev')}"
              f" | {_nfev(r, 'infer_fwd_nfev')} | {r['train_peak_mb']:.0f} "
              f"| {r['infer_peak_mb']:.0f} |")
    ok = [r for r in rows[1:] if r['mIoU'] is not None and
          base['mIoU'] is not None and r['mIoU'] >= base['mIoU'] - 1]
    print('\n### Targets\n')
    if not ok:
        print('- no MDEQ recipe within 1 mIoU of HRNet-W18 '
              f"({base['mIoU']})")
        return
    best = min(ok, key=lambda r: r['train_time_s'])
    print(f"- fastest MDEQ recipe within 1 mIoU of HRNet-W18: {best['name']}"
          f" (mIoU {best['mIoU']:.2f} vs {base['mIoU']:.2f}): training step "
          f"{best['train_time_s'] / base['train_time_s']:.2f}x, inference "
          f"{best['infer_time_s'] / base['infer_time_s']:.2f}x (target <= 2.0"
          ' for both)')
    print('- warm starts: `--suite video`')


def plot_recipes(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [r['name'].replace('MDEQ-Small ', '') for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, key, title in zip(
            axes, ('mIoU', 'train_time_s', 'infer_time_s', 'train_peak_mb'),
            ('mIoU (demo, equal iterations)', 'training step (s)',
             'inference 1024x2048 (s)', 'peak training memory (MB)')):
        ax.bar(names, [r[key] or 0 for r in rows])
        ax.set_title(title)
        ax.tick_params(axis='x', labelsize=7, rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--suite',
                        choices=['models', 'recipes', 'video'],
                        default='models')
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out-dir', default=None,
                        help='default: work_dirs/benchmarks/<suite>')
    parser.add_argument('--quick', action='store_true',
                        help='models: only the 256x512 crop and batch 1; '
                        'recipes: 12 training iterations (a smoke run)')
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='recipes: overrides for every training run')
    args = parser.parse_args()
    args.out_dir = args.out_dir or f'work_dirs/benchmarks/{args.suite}'
    if args.suite == 'recipes':
        return run_recipes(args)
    if args.suite == 'video':
        return run_video(args)
    rows = []
    for task, model, mode, size, bsz, kind, max_iter in make_plan(args.quick):
        r = run_isolated(run_case, task=task, model=model, mode=mode,
                         size=size, bsz=bsz, device=args.device, kind=kind,
                         max_iter=max_iter, repeat=args.repeat)
        rows.append(r)
        print(f"  {task} {kind} {label(r):<22} {size[0]}x{size[1]} b{bsz} "
              f"max_iter {max_iter}: {r['time_s']:.2f}s {r['peak_mb']:.0f}MB",
              flush=True)
    print(f'\nDevice: {args.device}; torch {torch.__version__}; threads '
          f'{torch.get_num_threads()}\n')
    print_targets(rows, print_tables(rows))
    png = osp.join(args.out_dir, 'benchmark.png')
    print(f'\nwrote {save_results(rows, png, plot)} and {png}')


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    train = [r for r in rows if r['task'] == 'seg' and r['kind'] == 'train'
             and r['max_iter'] == 27]
    cases = list(dict.fromkeys(f"{r['size'][0]}x{r['size'][1]} b{r['bsz']}"
                               for r in train))
    labels = list(dict.fromkeys(label(r) for r in train))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    width = 0.8 / len(labels)
    for k, lab in enumerate(labels):
        for ax, key in zip(axes[:2], ('time_s', 'peak_mb')):
            vals = [next((r[key] for r in train if label(r) == lab and
                          f"{r['size'][0]}x{r['size'][1]} b{r['bsz']}" == c),
                         0) for c in cases]
            ax.bar([i + k * width for i in range(len(cases))], vals, width,
                   label=lab)
    for ax, title in zip(axes[:2], ('training step time (s)',
                                    'peak training memory (MB)')):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
        ax.set_xticklabels(cases)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    counts = (10, 20, 40)
    for mode, style in (('ift', 'o-'), ('unrolled', 's-')):
        vals = [next(r['peak_mb'] for r in rows if r['max_iter'] == n and
                     r['mode'] == mode) for n in counts]
        axes[2].plot(counts, vals, style, label=mode)
    hist = [next(r['peak_mb'] - r['history_mb'] for r in rows
                 if r['max_iter'] == n and r['mode'] == 'ift') for n in counts]
    axes[2].plot(counts, hist, 'o--', label='ift without history')
    axes[2].set_xlabel('forward max_iter (solver iterations)')
    axes[2].set_title('peak training memory (MB), 256x512 b1')
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == '__main__':
    main()
