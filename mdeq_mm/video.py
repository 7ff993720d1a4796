# Copyright (c) mdeq_mm authors. All rights reserved.
"""Video evaluation with warm starts: cold vs warm over annotated
snippets (:func:`mdeq_mm.datasets.cityscapes_sequences`), frame by frame
through :func:`mdeq_mm.apis.segment_sequence`, in two protocols:

* to tolerance (:func:`compare_starts`): every solve stops at the model's
  tolerance; f evaluations per frame, residuals, time and the mIoU on the
  annotated frames;
* fixed budgets (:func:`sweep_budgets`): every frame gets exactly b f
  evaluations, cold and warm; the mIoU and the pixel agreement with the
  reference (cold at the largest budget) on every frame, and
  (:func:`equal_miou_budgets`) the fewest evaluations per frame at equal
  mIoU for each start.

mIoU is mmseg's IoUMetric (areas summed over images).
"""
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mdeq_mm.apis import segment_sequence, set_solver
from mdeq_mm.datasets import read_train_ids


class VideoTally:
    """What one start (and budget) reached over the snippets: mmseg's
    IoUMetric areas on the annotated frames, evaluations, residuals,
    agreement with a reference prediction, time."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.areas, self.nfev, self.residual = [], [], []
        self.agree = self.pixels = 0
        self.seconds = 0.

    def add(self, snippet, out, labels, seconds, ref=None):
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
    start = time.perf_counter()
    out = segment_sequence(model, snippet.frames, warm_start=warm)
    return out, time.perf_counter() - start


def _progress(total: int, show: bool):
    """An mmengine progress bar over ``total`` steps (a no-op unless
    ``show``)."""
    from mmengine.utils import ProgressBar

    class _Silent:

        def update(self):
            pass

    return ProgressBar(total) if show else _Silent()


def compare_starts(model, snippets, num_classes: int = 19,
                   progress: bool = False) -> List[Dict]:
    """Cold and warm passes over ``snippets`` with the model's solver
    settings: one result dict each (to tolerance); ``progress`` shows a
    progress bar over the snippet passes."""
    rows = []
    bar = _progress(2 * len(snippets), progress)
    for warm in (False, True):
        tally, trace = VideoTally(num_classes), []
        for snip in snippets:
            out, seconds = _segment(model, snip, warm)
            tally.add(snip, out, [read_train_ids(p) for p in snip.labels],
                      seconds)
            trace = trace or [o['nfev'] for o in out]
            bar.update()
        rows.append(tally.row(start='warm' if warm else 'cold',
                              nfev_trace=trace))
    return rows


def sweep_budgets(model, snippets, budgets: Sequence[int],
                  num_classes: int = 19, progress: bool = False
                  ) -> List[Dict]:
    """Cold and warm passes at each fixed budget (tol 0: exactly b f
    evaluations per frame); one result dict per (start, budget), with the
    agreement with the reference, cold at the largest budget; ``progress``
    shows a progress bar over the passes."""
    budgets = sorted(set(budgets), reverse=True)  # the reference first
    bar = _progress(2 * len(budgets) * len(snippets), progress)
    tallies = {(w, b): VideoTally(num_classes)
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
                bar.update()
    return [t.row(start='warm' if w else 'cold', budget=b)
            for (w, b), t in sorted(tallies.items(), key=lambda x: x[0][1])]


def equal_budget(curve: List[Dict], reference: float,
                 margin: float = 1.) -> Optional[int]:
    """The smallest budget of ``curve`` (dicts with ``budget`` and
    ``mIoU``) from which on every budget's mIoU is at least ``reference -
    margin``; None if not even the largest budget's is."""
    best = None
    for r in sorted(curve, key=lambda r: -r['budget']):
        if r['mIoU'] < reference - margin:
            break
        best = r['budget']
    return best


def equal_miou_budgets(rows: List[Dict], margin: float = 1.
                       ) -> Optional[Dict]:
    """Per start, the fewest f evaluations per frame at equal mIoU: the
    smallest budget from which on every swept budget's mIoU is within
    ``margin`` of the reference (cold at the largest budget; the largest
    budget where none is); None if the snippets hold no annotation."""
    top = max(r['budget'] for r in rows)
    ref = next(r['mIoU'] for r in rows
               if r['start'] == 'cold' and r['budget'] == top)
    if ref is None:
        return None
    out = dict(reference_mIoU=ref, margin=margin)
    for start in ('cold', 'warm'):
        out[start] = equal_budget([r for r in rows if r['start'] == start],
                                  ref, margin) or top
    out['saving'] = out['cold'] / out['warm']
    return out


def plot_rows(rows: List[Dict], path: str) -> str:
    """The video evaluation's plot (rows of :func:`compare_starts` or
    :func:`sweep_budgets`), cold and warm: against the budget, the mIoU
    (fixed budgets on annotated snippets) or the agreement with the
    reference (without annotations); to tolerance, the first snippet's f
    evaluations per frame. Only what was measured is drawn; returns the
    quantity drawn ('mIoU', 'agreement' or 'nfev')."""
    from mdeq_mm.report import plot_panels
    swept = 'budget' in rows[0]  # fixed budgets: against the budget
    metric = 'mIoU' if any(r['mIoU'] is not None for r in rows) else \
        'agreement'
    lines = []
    for start in ('cold', 'warm'):
        mine = [r for r in rows if r['start'] == start]
        if swept:
            lines.append((start, [r['budget'] for r in mine],
                          [r[metric] for r in mine], 'o-'))
        else:
            trace = mine[0]['nfev_trace']
            lines.append((start, range(len(trace)), trace, 'o-'))
    ylabel = dict(mIoU='mIoU (annotated frames)',
                  agreement='agreement with the reference (%)')[metric]
    plot_panels(path, [dict(
        lines=lines, xlabel='f evaluations per frame' if swept else
        'frame of the first snippet', ylabel=ylabel if swept else
        'f evaluations to tolerance')], size=(6, 3.5))
    return metric if swept else 'nfev'


__all__ = ['VideoTally', 'compare_starts', 'sweep_budgets',
           'equal_budget', 'equal_miou_budgets', 'plot_rows']
