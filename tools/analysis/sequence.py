# Copyright (c) mdeq_mm authors. All rights reserved.
"""Video inference with warm starts: cold vs warm on Cityscapes snippets.

Segments every snippet of ``DATA_ROOT/leftImg8bit_sequence/<split>`` frame
by frame, each solve from z = 0 (cold) or from the previous frame's fixed
point (warm, :func:`mdeq_mm.apis.segment_sequence`), with the same solver,
in one of two protocols:

* to tolerance (default): every solve stops at relative residual ``--tol``
  (at most ``--budget`` evaluations); reports f evaluations per frame, the
  residual reached, seconds per frame and the mIoU on the annotated frames
  (the 20th of each snippet in the download);
* fixed budgets (``--budgets 1 2 4 8``): every frame gets exactly b f
  evaluations, for each b, cold and warm (a warm start carries the solve
  on from frame to frame, as streaming DEQs do). Reports the mIoU and the
  pixel agreement with the reference (cold at the largest budget) on
  every frame, and for each start the fewest evaluations per frame at
  equal mIoU: the smallest b from which on every budget's mIoU is within
  ``--miou-margin`` of the reference's.

Table, JSON and PNG.

Usage:
    python tools/analysis/sequence.py CONFIG CHECKPOINT --data-root DIR
        [--split val] [--tol 1e-3] [--budget 28] [--budgets B ...]
        [--miou-margin 1] [--out sequence.png] [--cfg-options k=v ...]
"""
import argparse
import time

import numpy as np


class _Tally:
    """What one start (and budget) reached over the snippets: mmseg's
    IoUMetric areas on the annotated frames, evaluations, residuals,
    agreement with a reference prediction, time."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.areas, self.nfev, self.residual = [], [], []
        self.agree = self.pixels = 0
        self.seconds = 0.

    def add(self, snippet, out, labels, seconds, ref=None):
        import torch
        from mmseg.evaluation.metrics import IoUMetric
        self.seconds += seconds
        self.nfev += [o['nfev'] for o in out]
        self.residual += [o['residual'] for o in out]
        for k, label in zip(snippet.annotated, labels):
            self.areas.append(IoUMetric.intersect_and_union(
                torch.from_numpy(out[k]['pred'].astype(np.int64)),
                torch.from_numpy(label.astype(np.int64)), self.num_classes,
                255))
        if ref is not None:
            self.agree += sum(int((o['pred'] == r).sum())
                              for o, r in zip(out, ref))
            self.pixels += sum(r.size for r in ref)

    def miou(self):
        """mIoU in percent, as mmseg's IoUMetric computes it (areas summed
        over images; classes with an empty union left out)."""
        if not self.areas:
            return None
        from mmseg.evaluation.metrics import IoUMetric
        totals = [sum(a[k] for a in self.areas) for k in range(4)]
        iou = IoUMetric.total_area_to_metrics(*totals, ['mIoU'])['IoU']
        return float(100 * np.nanmean(iou))

    def row(self, **extra):
        frames = len(self.nfev)
        return dict(
            extra, frames=frames,
            nfev_per_frame=float(np.mean(self.nfev)),
            nfev_after_first=float(np.mean(self.nfev[1:]))
            if frames > 1 else 0.,
            rel_residual=float(np.mean(self.residual)),
            s_per_frame=self.seconds / max(frames, 1),
            annotated=len(self.areas), mIoU=self.miou(),
            agreement=100 * self.agree / self.pixels if self.pixels else None)


def _segment(model, snippet, warm):
    from mdeq_mm.apis import segment_sequence
    start = time.perf_counter()
    out = segment_sequence(model, snippet.frames, warm_start=warm)
    return out, time.perf_counter() - start


def compare(model, snippets, num_classes: int = 19):
    """Cold and warm passes over ``snippets`` with the model's solver
    settings: one result dict each (to tolerance)."""
    from mdeq_mm.datasets import read_train_ids
    rows = []
    for warm in (False, True):
        tally, trace = _Tally(num_classes), []
        for snip in snippets:
            out, seconds = _segment(model, snip, warm)
            tally.add(snip, out, [read_train_ids(p) for p in snip.labels],
                      seconds)
            trace = trace or [o['nfev'] for o in out]
        rows.append(tally.row(start='warm' if warm else 'cold',
                              nfev_trace=trace))
    return rows


def sweep(model, snippets, budgets, num_classes: int = 19):
    """Cold and warm passes at each fixed budget (tol 0: exactly b f
    evaluations per frame); one result dict per (start, budget), with the
    agreement with the reference, cold at the largest budget."""
    from mdeq_mm.apis import set_solver
    from mdeq_mm.datasets import read_train_ids
    budgets = sorted(set(budgets), reverse=True)  # the reference first
    tallies = {(w, b): _Tally(num_classes)
               for b in budgets for w in (False, True)}
    for snip in snippets:
        labels = [read_train_ids(p) for p in snip.labels]
        ref = None
        for b in budgets:
            set_solver(model, budget=b, tol=0.)
            for warm in (False, True):
                out, seconds = _segment(model, snip, warm)
                ref = ref or [o['pred'] for o in out]
                tallies[warm, b].add(snip, out, labels, seconds, ref)
    return [t.row(start='warm' if w else 'cold', budget=b)
            for (w, b), t in sorted(tallies.items(), key=lambda x: x[0][1])]


def equal_miou_budgets(rows, margin: float = 1.):
    """Per start, the fewest f evaluations per frame at equal mIoU: the
    smallest budget from which on every swept budget's mIoU is within
    ``margin`` of the reference (cold at the largest budget); None if the
    snippets hold no annotation."""
    top = max(r['budget'] for r in rows)
    ref = next(r['mIoU'] for r in rows
               if r['start'] == 'cold' and r['budget'] == top)
    if ref is None:
        return None
    out = dict(reference_mIoU=ref, margin=margin)
    for start in ('cold', 'warm'):
        mine = sorted((r for r in rows if r['start'] == start),
                      key=lambda r: -r['budget'])
        best = top
        for r in mine:  # from the largest budget down, while within margin
            if r['mIoU'] < ref - margin:
                break
            best = r['budget']
        out[start] = best
    out['saving'] = out['cold'] / out['warm']
    return out


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


def print_sweep(rows, summary):
    print('| f evaluations / frame | mIoU cold | mIoU warm | agreement cold '
          '(%) | agreement warm (%) | rel. residual cold | warm |\n'
          '|---|---|---|---|---|---|---|')
    by = {(r['start'], r['budget']): r for r in rows}
    for b in sorted({r['budget'] for r in rows}):
        c, w = by['cold', b], by['warm', b]
        m = ['n/a' if r['mIoU'] is None else f"{r['mIoU']:.2f}"
             for r in (c, w)]
        print(f"| {b} | {m[0]} | {m[1]} | {c['agreement']:.2f} | "
              f"{w['agreement']:.2f} | {c['rel_residual']:.2e} | "
              f"{w['rel_residual']:.2e} |")
    if summary:
        print(f"\nat equal mIoU (within {summary['margin']:g} of "
              f"{summary['reference_mIoU']:.2f}): {summary['cold']} f "
              f"evaluations per frame cold, {summary['warm']} warm: "
              f"{summary['saving']:.2f}x fewer")


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    swept = 'budget' in rows[0]  # fixed budgets: mIoU against the budget
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for start in ('cold', 'warm'):
        mine = [r for r in rows if r['start'] == start]
        if swept:
            ax.plot([r['budget'] for r in mine],
                    [r['mIoU'] or 0 for r in mine], 'o-', label=start)
        else:
            ax.plot(mine[0]['nfev_trace'], 'o-', label=start)
    ax.set_xlabel('f evaluations per frame' if swept else
                  'frame of the first snippet')
    ax.set_ylabel('mIoU (annotated frames)' if swept else
                  'f evaluations to tolerance')
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
    from mdeq_mm.datasets import cityscapes_sequences
    from mdeq_mm.engine.profiling import save_results
    snippets = cityscapes_sequences(args.data_root, args.split)
    model = init_model(args.config, args.checkpoint,
                       cfg_options=args.cfg_options)
    set_solver(model, budget=args.budget, tol=args.tol,
               options=dict(stop_mode='rel'))
    if args.budgets:
        rows = sweep(model, snippets, args.budgets)
        summary = equal_miou_budgets(rows, args.miou_margin)
        print_sweep(rows, summary)
        result = dict(rows=rows, equal_mIoU=summary)
    else:
        result = rows = compare(model, snippets)
        print_table(rows)
    json_path = save_results(result, args.out, lambda _, png: plot(rows, png))
    print(f'\nwrote {json_path} and {args.out}')
    return result


if __name__ == '__main__':
    main()
