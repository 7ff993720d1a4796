# Copyright (c) mdeq_mm authors. All rights reserved.
"""Video inference with warm starts: cold vs warm on Cityscapes snippets
or any video.

Segments every snippet of ``DATA_ROOT/leftImg8bit_sequence/<split>`` (or
the frames of ``--frames``: a folder of images or a video file) frame by
frame, each solve from z = 0 (cold) or from the previous frame's fixed
point (warm, :func:`mdeq_mm.apis.segment_sequence`), with the same solver,
in one of two protocols:

* to tolerance (default): every solve stops at relative residual ``--tol``
  (at most ``--budget`` evaluations); reports f evaluations per frame, the
  residual reached, seconds per frame and the mIoU on the annotated frames
  (the 20th of each snippet in the download; none with ``--frames``);
* fixed budgets (``--budgets 1 2 4 8``): every frame gets exactly b f
  evaluations, for each b, cold and warm (a warm start carries the solve
  on from frame to frame, as streaming DEQs do). Reports the mIoU and the
  pixel agreement with the reference (cold at the largest budget) on
  every frame, and for each start the fewest evaluations per frame at
  equal mIoU: the smallest b from which on every budget's mIoU is within
  ``--miou-margin`` of the reference's. Without annotations
  (``--frames``) there is no mIoU: the agreement is reported and plotted.

Table, JSON and PNG; the evaluation itself is :mod:`mdeq_mm.video`.

Usage:
    python tools/analysis/sequence.py CONFIG CHECKPOINT
        (--data-root DIR [--split val] | --frames FOLDER_OR_VIDEO)
        [--tol 1e-3] [--budget 28] [--budgets B ...] [--miou-margin 1]
        [--out sequence.png] [--cfg-options k=v ...]
"""
import argparse


def print_table(rows):
    from mdeq_mm.report import fmt, markdown_table
    print(markdown_table(
        ['start', 'frames', 'f evaluations / frame', 'rel. residual',
         's / frame', 'mIoU (annotated frames)'],
        [[r['start'], r['frames'], f"{r['nfev_per_frame']:.1f}",
          f"{r['rel_residual']:.2e}", f"{r['s_per_frame']:.3f}",
          fmt(r['mIoU'], '.2f', 'n/a')] for r in rows]))
    cold, warm = rows
    print(f"\nwarm / cold f evaluations per frame: "
          f"{warm['nfev_per_frame'] / cold['nfev_per_frame']:.2f}")


def print_sweep(rows, summary):
    from mdeq_mm.report import fmt, markdown_table
    by = {(r['start'], r['budget']): r for r in rows}
    print(markdown_table(
        ['f evaluations / frame', 'mIoU cold', 'mIoU warm',
         'agreement cold (%)', 'agreement warm (%)', 'rel. residual cold',
         'warm'],
        [[b] + [fmt(by[s, b]['mIoU'], '.2f', 'n/a') for s in ('cold', 'warm')]
         + [f"{by[s, b]['agreement']:.2f}" for s in ('cold', 'warm')]
         + [f"{by[s, b]['rel_residual']:.2e}" for s in ('cold', 'warm')]
         for b in sorted({r['budget'] for r in rows})]))
    if summary:
        print(f"\nat equal mIoU (within {summary['margin']:g} of "
              f"{summary['reference_mIoU']:.2f}): {summary['cold']} f "
              f"evaluations per frame cold, {summary['warm']} warm: "
              f"{summary['saving']:.2f}x fewer")


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument('--data-root', help='folder holding '
                      'leftImg8bit_sequence/ and gtFine/ (Cityscapes)')
    data.add_argument('--frames', help='any video: a folder of frames or '
                      'a video file (no labels: no mIoU)')
    parser.add_argument('--split', default='val')
    parser.add_argument('--tol', type=float, default=1e-3,
                        help='relative residual at which a solve stops')
    parser.add_argument('--budget', type=int, default=28,
                        help='most f evaluations per frame')
    parser.add_argument('--budgets', type=int, nargs='+',
                        help='fixed budgets to sweep instead (f evaluations '
                        'per frame; the largest is the reference)')
    parser.add_argument('--miou-margin', type=float, default=1.,
                        help='mIoU points below the reference that count as '
                        'equal (with --budgets)')
    parser.add_argument('--out', default='work_dirs/sequence/sequence.png')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    from mdeq_mm.apis import init_model, set_solver
    from mdeq_mm.datasets import cityscapes_sequences, frames_snippet
    from mdeq_mm.report import save_results
    from mdeq_mm.video import (compare_starts, equal_miou_budgets,
                               plot_rows, sweep_budgets)
    try:
        snippets = [frames_snippet(args.frames)] if args.frames else \
            cityscapes_sequences(args.data_root, args.split)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}')
    model = init_model(args.config, args.checkpoint,
                       cfg_options=args.cfg_options)
    set_solver(model, budget=args.budget, tol=args.tol,
               options=dict(stop_mode='rel'))
    if args.budgets:
        rows = sweep_budgets(model, snippets, args.budgets, progress=True)
        summary = equal_miou_budgets(rows, args.miou_margin)
        print_sweep(rows, summary)
        result = dict(rows=rows, equal_mIoU=summary)
    else:
        result = rows = compare_starts(model, snippets, progress=True)
        print_table(rows)
    json_path = save_results(result, args.out,
                             lambda _, png: plot_rows(rows, png))
    print(f'\nwrote {json_path} and {args.out}')
    return result


if __name__ == '__main__':
    main()
