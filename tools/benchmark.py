# Copyright (c) mdeq_mm authors. All rights reserved.
"""Speed and memory of MDEQ training and inference against unrolled and
explicit peers, on the current device (a benchmark, not a test).

Cases, each in its own process (peak memory counts PyTorch's CPU
allocations through the process's peak RSS; torch's allocator on CUDA):

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
    python tools/benchmark.py [--device cpu] [--out-dir DIR] [--quick]
"""
import argparse
import inspect
import os.path as osp

import torch

from mdeq_mm.engine.profiling import (PeakMemory, run_isolated, save_results,
                                      timed)
from mdeq_mm.ops.solvers import broyden

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
        else:
            backbone = dict(
                type='HRNet', norm_cfg=dict(type='BN'), norm_eval=False,
                extra=dict(
                    stage1=dict(num_modules=1, num_branches=1,
                                block='BOTTLENECK', num_blocks=(4, ),
                                num_channels=(64, )),
                    stage2=dict(num_modules=1, num_branches=2, block='BASIC',
                                num_blocks=(4, 4), num_channels=(18, 36)),
                    stage3=dict(num_modules=4, num_branches=3, block='BASIC',
                                num_blocks=(4, 4, 4),
                                num_channels=(18, 36, 72)),
                    stage4=dict(num_modules=3, num_branches=4, block='BASIC',
                                num_blocks=(4, 4, 4, 4),
                                num_channels=(18, 36, 72, 144))))
            head = dict(type='FCNHead', in_channels=[18, 36, 72, 144],
                        in_index=(0, 1, 2, 3), channels=270,
                        input_transform='resize_concat', kernel_size=1,
                        num_convs=1, concat_input=False, dropout_ratio=-1,
                        num_classes=19, norm_cfg=dict(type='BN'))
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


def batch(task, bsz, size, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bsz, 3, *size, generator=g).to(device)
    if task == 'seg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(bsz):
            s = SegDataSample()
            s.gt_sem_seg = PixelData(data=torch.randint(
                0, 19, (1, *size), generator=g).to(device))
            s.set_metainfo(dict(img_shape=size, ori_shape=size,
                                pad_shape=size))
            samples.append(s)
    else:
        from mmpretrain.structures import DataSample
        samples = [DataSample().set_gt_label(i) for i in range(bsz)]
    return x, samples


def run_case(task, model, mode, size, bsz, device, kind, max_iter, repeat):
    """One measurement in this (fresh) process."""
    torch.manual_seed(0)
    net = build(task, model, mode, max_iter).to(device)
    x, samples = batch(task, bsz, size, device)
    history_mb = 0.0
    if kind == 'train':
        net.train()

        def step():
            losses = net(x, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if 'loss' in k)
            loss.backward()
            net.zero_grad(set_to_none=True)
    else:
        net.eval()

        def step():
            with torch.no_grad():
                net(x, mode='tensor')

    # the peak is taken from before the first step: on CPU, memory freed by
    # a step stays in the process and would hide the next step's peak
    with PeakMemory(device) as mem:
        step()  # warm-up (lazy initialisation), not timed
        median = timed(step, device, repeat)
    if model == 'mdeq' and mode != 'unrolled':
        dim = sum(c * (size[0] // s) * (size[1] // s)
                  for c, s in zip((32, 64, 128, 256), (4, 8, 16, 32)))
        history_mb = min(max_iter + 1, HISTORY) * bsz * dim * 4 / 2**20
    stats = getattr(getattr(net, 'backbone', None), 'last_stats', None)
    return dict(task=task, model=model, mode=mode, size=list(size), bsz=bsz,
                kind=kind, max_iter=max_iter, time_s=median,
                peak_mb=mem.delta / 2**20, history_mb=history_mb,
                mode_run=getattr(stats, 'mode', None))


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
