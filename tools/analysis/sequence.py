# Copyright (c) mdeq_mm authors. All rights reserved.
"""Video inference with warm starts: cold vs warm on Cityscapes snippets.

Segments every snippet of ``DATA_ROOT/leftImg8bit_sequence/<split>`` frame
by frame twice, each solve from z = 0 (cold) and from the previous frame's
fixed point (warm, :func:`mdeq_mm.apis.segment_sequence`), with the same
solver and tolerance, and reports f evaluations per frame, the relative
residual reached, seconds per frame and the mIoU on the annotated frames
(the 20th of each snippet in the download), as a table, JSON and PNG.

Usage:
    python tools/analysis/sequence.py CONFIG CHECKPOINT --data-root DIR
        [--split val] [--tol 1e-3] [--budget 28] [--out sequence.png]
        [--cfg-options k=v ...]
"""
import argparse
import time

import numpy as np


def miou(preds, labels, num_classes: int = 19, ignore: int = 255) -> float:
    """mIoU in percent, as mmseg's IoUMetric computes it (areas summed over
    images; classes with an empty union left out)."""
    import torch
    from mmseg.evaluation.metrics import IoUMetric
    areas = [IoUMetric.intersect_and_union(
        torch.from_numpy(p), torch.from_numpy(t), num_classes, ignore)
        for p, t in zip(preds, labels)]
    totals = [sum(a[k] for a in areas) for k in range(4)]
    iou = IoUMetric.total_area_to_metrics(*totals, ['mIoU'])['IoU']
    return float(100 * np.nanmean(iou))


def compare(model, snippets, num_classes: int = 19):
    """Cold and warm passes over ``snippets``: one result dict each."""
    from mdeq_mm.apis import segment_sequence
    from mdeq_mm.datasets import read_train_ids
    rows = []
    for warm in (False, True):
        nfev, residual, preds, labels, frames = [], [], [], [], 0
        start = time.perf_counter()
        for snip in snippets:
            out = segment_sequence(model, snip.frames, warm_start=warm)
            frames += len(out)
            nfev += [o['nfev'] for o in out]
            residual += [o['residual'] for o in out]
            for k, path in zip(snip.annotated, snip.labels):
                preds.append(out[k]['pred'].astype(np.int64))
                labels.append(read_train_ids(path).astype(np.int64))
        seconds = time.perf_counter() - start
        rows.append(dict(
            start='warm' if warm else 'cold', frames=frames,
            nfev_per_frame=float(np.mean(nfev)),
            nfev_after_first=float(np.mean(nfev[1:])) if frames > 1 else 0.,
            rel_residual=float(np.mean(residual)),
            s_per_frame=seconds / max(frames, 1),
            annotated=len(labels),
            mIoU=miou(preds, labels, num_classes) if labels else None,
            nfev_trace=nfev[:max(len(s.frames) for s in snippets)]))
    return rows


def print_table(rows):
    print('| start | frames | f evaluations / frame | rel. residual | '
          's / frame | mIoU (annotated frames) |\n|---|---|---|---|---|---|')
    for r in rows:
        m = 'n/a' if r['mIoU'] is None else f"{r['mIoU']:.2f}"
        print(f"| {r['start']} | {r['frames']} | {r['nfev_per_frame']:.1f} "
              f"| {r['rel_residual']:.2e} | {r['s_per_frame']:.3f} | {m} |")
    cold, warm = rows
    print(f"\nwarm / cold f evaluations per frame: "
          f"{warm['nfev_per_frame'] / cold['nfev_per_frame']:.2f}")


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in rows:
        ax.plot(r['nfev_trace'], 'o-', label=r['start'])
    ax.set_xlabel('frame of the first snippet')
    ax.set_ylabel('f evaluations to tolerance')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--data-root', required=True,
                        help='folder holding leftImg8bit_sequence/ and '
                        'gtFine/')
    parser.add_argument('--split', default='val')
    parser.add_argument('--tol', type=float, default=1e-3,
                        help='relative residual at which a solve stops')
    parser.add_argument('--budget', type=int, default=28,
                        help='most f evaluations per frame')
    parser.add_argument('--out', default='work_dirs/sequence/sequence.png')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    from mdeq_mm.apis import init_model, set_solver
    from mdeq_mm.datasets import cityscapes_sequences
    from mdeq_mm.engine.profiling import save_results
    snippets = cityscapes_sequences(args.data_root, args.split)
    model = init_model(args.config, args.checkpoint,
                       cfg_options=args.cfg_options)
    set_solver(model, budget=args.budget, tol=args.tol,
               options=dict(stop_mode='rel'))
    rows = compare(model, snippets)
    print_table(rows)
    print(f'\nwrote {save_results(rows, args.out, plot)} and {args.out}')
    return rows


if __name__ == '__main__':
    main()
