# Copyright (c) mdeq_mm authors. All rights reserved.
"""Speed and memory of MDEQ training and inference against unrolled and
explicit peers, on the current device (a benchmark, not a test).

Times fixed cases, each in its own process (peak memory counts PyTorch's
CPU allocations through the process's peak RSS; torch's allocator on
CUDA):

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
The trained recipes side by side (also on video, with warm starts):
tools/benchmark_recipes.py.

Usage:
    python tools/benchmark.py [--device cpu] [--out-dir DIR] [--quick]
        [--repeat N]
"""
import argparse
import inspect
import os.path as osp

import torch

from mdeq_mm.measure import run_isolated
from mdeq_mm.ops.solvers import broyden
from mdeq_mm.report import markdown_table, plot_panels, save_results
from tool_utils import ROOT

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
    from mdeq_mm.measure import measure_random
    net = build(task, model, mode, max_iter).to(device)
    r = measure_random(net, kind, size, bsz, device, repeat, task)
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
    def pick(**want):
        return [r for r in rows
                if all(r[k] in v for k, v in want.items())]

    print('### Training step (forward + backward), segmentation\n')
    print(markdown_table(
        ['model', 'crop', 'batch', 'step time (s)', 'peak memory (MB)',
         'of which Broyden history (MB)'],
        [[label(r), '{}x{}'.format(*r['size']), r['bsz'], f"{r['time_s']:.2f}",
          f"{r['peak_mb']:.0f}", f"{r['history_mb']:.0f}"]
         for r in pick(task=['seg'], kind=['train'], max_iter=[27])]))
    for title, want in (
            ('Inference, segmentation 1024x2048, batch 1', dict(
                kind=['infer'])),
            ('Training step, classification 224x224, batch 2', dict(
                task=['cls']))):
        print(f'\n### {title}\n')
        print(markdown_table(
            ['model', 'step time (s)' if 'task' in want else 'time (s)',
             'peak memory (MB)'],
            [[label(r), f"{r['time_s']:.2f}", f"{r['peak_mb']:.0f}"]
             for r in pick(**want)]))
    print('\n### Peak training memory vs forward max_iter (256x512, batch 1)'
          '\n')
    mem = {(r['max_iter'], r['mode']): r for r in rows
           if r['max_iter'] in (10, 20, 40)}
    print(markdown_table(
        ['forward max_iter', 'implicit (MB)',
         'implicit without history (MB)',
         'unrolled, same applications (MB)'],
        [[n, f"{mem[(n, 'ift')]['peak_mb']:.0f}",
          f"{mem[(n, 'ift')]['peak_mb'] - mem[(n, 'ift')]['history_mb']:.0f}",
          f"{mem[(n, 'unrolled')]['peak_mb']:.0f}"] for n in (10, 20, 40)]))
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out-dir', default='work_dirs/benchmarks/models')
    parser.add_argument('--quick', action='store_true',
                        help='only the 256x512 crop and batch 1')
    parser.add_argument('--repeat', type=int, default=2)
    args = parser.parse_args()
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
    train = [r for r in rows if r['task'] == 'seg' and r['kind'] == 'train'
             and r['max_iter'] == 27]

    def case(r):
        return f"{r['size'][0]}x{r['size'][1]} b{r['bsz']}"

    cases = list(dict.fromkeys(map(case, train)))
    labels = list(dict.fromkeys(map(label, train)))

    def values(key, lab):
        return [next((r[key] for r in train
                      if label(r) == lab and case(r) == c), 0) for c in cases]

    panels = [dict(title=title, categories=cases,
                   bars={lab: values(key, lab) for lab in labels})
              for key, title in (('time_s', 'training step time (s)'),
                                 ('peak_mb', 'peak training memory (MB)'))]
    counts = (10, 20, 40)
    mem = {(r['max_iter'], r['mode']): r for r in rows
           if r['max_iter'] in counts}
    panels.append(dict(
        title='peak training memory (MB), 256x512 b1',
        xlabel='forward max_iter (solver iterations)', lines=[
            (mode, counts, [mem[(n, mode)]['peak_mb'] for n in counts], st)
            for mode, st in (('ift', 'o-'), ('unrolled', 's-'))] + [
            ('ift without history', counts,
             [mem[(n, 'ift')]['peak_mb'] - mem[(n, 'ift')]['history_mb']
              for n in counts], 'o--')]))
    plot_panels(path, panels, size=(5.3, 4))


if __name__ == '__main__':
    main()
