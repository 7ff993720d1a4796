# Copyright (c) mdeq_mm authors. All rights reserved.
"""Segment a video or a camera stream with warm starts and write the
overlay.

Each frame is segmented as it is read (:class:`mdeq_mm.apis.VideoSegmenter`:
the solve starts from the previous frame's fixed point; cold on the first
frame, after a size change or a scene cut), painted with the dataset's
palette over the frame, written to ``--out`` and/or shown (``--show``).
A progress bar runs while it works; at the end it prints a summary (frames,
fps, latency, f evaluations per frame, scene cuts) and, for the first
``--compare-cold`` frames, the same frames solved cold, so the saving of
the warm start is measured on the user's own video. Per-frame f
evaluations, residuals and latency go to ``<out>.json``.

Usage:
    python tools/video_demo.py VIDEO CONFIG CHECKPOINT [--out out.mp4]
        [--show] [--opacity 0.5] [--budget N | --tol T] [--cold]
        [--compare-cold 10] [--device cpu] [--cfg-options k=v ...]

VIDEO is a file or a camera index (``0``). ``--budget N``: every frame gets
exactly N f evaluations; ``--tol T``: every solve stops at relative
residual T (at most the config's budget); neither: the config's solver.
"""
import argparse
import json
import os.path as osp
import time


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('video', help='a video file or a camera index')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='the overlay video (.mp4)')
    parser.add_argument('--show', action='store_true', help='show frames')
    parser.add_argument('--wait-time', type=float, default=1,
                        help='ms per shown frame')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='of the painted classes, in [0, 1]')
    solve = parser.add_mutually_exclusive_group()
    solve.add_argument('--budget', type=int, help='f evaluations per frame')
    solve.add_argument('--tol', type=float,
                       help='relative residual that ends each solve')
    parser.add_argument('--cold', action='store_true',
                        help='no warm start: every frame from z = 0')
    parser.add_argument('--compare-cold', type=int, default=10, metavar='N',
                        help='also solve the first N frames cold (0: off)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if not 0 <= args.opacity <= 1:
        parser.error(f'--opacity must be in [0, 1], got {args.opacity}')
    if args.compare_cold < 0:
        parser.error(f'--compare-cold must be >= 0, got {args.compare_cold}')
    if not (args.out or args.show):
        parser.error('nothing to do: give --out and/or --show')
    return args


def overlay(frame, pred, palette, opacity):
    """``frame`` (BGR) with each pixel's class colour (RGB palette)."""
    import numpy as np
    colours = np.asarray(palette, dtype=np.uint8)[:, ::-1]  # RGB -> BGR
    painted = colours[np.clip(pred, 0, len(colours) - 1)]
    return (frame * (1 - opacity) + painted * opacity).astype(np.uint8)


def summary(rows, cold, seconds):
    warm = rows[:len(cold)]
    out = dict(frames=len(rows), fps=len(rows) / seconds,
               latency_s=sum(r['seconds'] for r in rows) / len(rows),
               nfev_per_frame=sum(r['nfev'] for r in rows) / len(rows),
               cuts=sum(r['cut'] for r in rows))
    if cold:
        out.update(compared=len(cold),
                   cold_nfev=sum(r['nfev'] for r in cold) / len(cold),
                   warm_nfev=sum(r['nfev'] for r in warm) / len(warm),
                   cold_residual=max(r['residual'] for r in cold),
                   warm_residual=max(r['residual'] for r in warm))
    return out


def main(argv=None):
    args = parse_args(argv)
    import cv2
    from mmengine.utils import ProgressBar

    from mdeq_mm.apis import VideoSegmenter, init_model, set_solver
    source = int(args.video) if args.video.isdigit() else args.video
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise SystemExit(f'error: cannot open {args.video} (a video file '
                         'OpenCV can read, or a camera index)')
    model = init_model(args.config, args.checkpoint, args.device,
                       cfg_options=args.cfg_options)
    if args.budget is not None:  # f evaluations, the whole budget
        set_solver(model, budget=args.budget, tol=0.)
    elif args.tol is not None:
        set_solver(model, tol=args.tol, options=dict(stop_mode='rel'))
    palette = (model.dataset_meta or {}).get('palette')
    if palette is None:
        raise SystemExit('error: the config names no palette for its '
                         'classes (dataset metainfo)')
    fps = cap.get(cv2.CAP_PROP_FPS) or 25
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if isinstance(
        source, str) else 0
    writer, rows, first = None, [], []
    bar = ProgressBar(max(total, 0))
    start = time.perf_counter()
    with VideoSegmenter(model, warm_start=not args.cold) as segment:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            r = segment(frame)
            if len(first) < args.compare_cold:
                first.append(frame)
            image = overlay(frame, r['pred'], palette, args.opacity)
            if args.out:
                if writer is None:
                    writer = cv2.VideoWriter(
                        args.out, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                        (image.shape[1], image.shape[0]))
                writer.write(image)
            if args.show:
                cv2.imshow('mdeq_mm', image)
                if cv2.waitKey(max(1, int(args.wait_time))) & 0xFF == 27:
                    break  # Esc
            rows.append({k: v for k, v in r.items() if k != 'pred'})
            bar.update()
    seconds = time.perf_counter() - start
    cap.release()
    if writer is not None:
        writer.release()
    if not rows:
        raise SystemExit(f'error: no frame could be read from {args.video}')
    with VideoSegmenter(model, warm_start=False) as segment:
        cold = [{k: v for k, v in segment(f).items() if k != 'pred'}
                for f in first]
    result = summary(rows, cold, seconds)
    print(f"\n{result['frames']} frames, {result['fps']:.2f} fps, latency "
          f"{result['latency_s'] * 1000:.0f} ms, "
          f"{result['nfev_per_frame']:.1f} f evaluations per frame, "
          f"{result['cuts']} scene cut(s)")
    if cold:
        print(f"first {len(cold)} frames: {result['warm_nfev']:.1f} f "
              f"evaluations per frame warm vs {result['cold_nfev']:.1f} "
              f"cold ({result['cold_nfev'] / result['warm_nfev']:.2f}x "
              f"fewer); largest residual warm {result['warm_residual']:.1e}"
              f", cold {result['cold_residual']:.1e}")
    if args.out:
        with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump(dict(summary=result, frames=rows, cold=cold), f,
                      indent=1)
        print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
