# Copyright (c) mdeq_mm authors. All rights reserved.
"""ONNX Runtime against PyTorch eval: latency and peak memory of MDEQ-Small
(the flagship segmenter) at fixed solver budgets and of mmseg's HRNet-W18
FCN, both exported the same way (a benchmark, not a test).

Each case exports the model (seeded initialisation: speed and memory do
not depend on the weights), measures PyTorch in one fresh process and
onnxruntime on the exported file in another (peak memory: the process's
peak RSS above its level before the first run on the CPU, torch's
allocator on CUDA; onnxruntime's CUDA memory is not measured), and checks
onnxruntime against PyTorch on the benchmark input.

Prints a markdown table, writes ``onnx.json`` and ``onnx.png``.

Usage:
    python tools/deployment/benchmark_onnx.py [--device cpu|cuda]
        [--shapes 512x1024 1024x2048] [--budgets 9 28] [--repeat 2]
        [--out-dir DIR] [--quick]
"""
import argparse
import os
import os.path as osp
import time

import torch

from mdeq_mm.measure import PeakMemory, run_isolated, timed
from mdeq_mm.report import fmt, markdown_table, plot_panels, save_results

MDEQ = 'configs/mdeq_cityscapes.py'
HRNET = 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py'
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def torch_case(config, budget, dtype, shape, device, repeat, path):
    """Export, then PyTorch eval time and memory; saves the reference
    output beside the file."""
    from mdeq_mm.apis import init_model, set_solver
    from mdeq_mm.deploy import TensorOutput, export_onnx
    model = init_model(config)
    if budget:  # f evaluations, the whole budget (tol=0)
        set_solver(model, 'broyden', budget, tol=0., dtype=dtype)
    t = time.perf_counter()
    export_onnx(model, path, shape)
    export_s = time.perf_counter() - t
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    net = TensorOutput(model.to(device)).eval()
    x = x.to(device)
    out = {}

    def step():
        with torch.no_grad():
            out['y'] = net(x)

    with PeakMemory(device) as mem:
        step()  # warm-up, not timed
        median = timed(step, device, repeat)
    torch.save(dict(x=x.cpu(), y=out['y'].cpu()), path + '.ref.pt')
    return dict(export_s=export_s, file_mb=osp.getsize(path) / 2**20,
                torch_s=median, torch_mb=mem.delta / 2**20)


def ort_case(path, device, repeat):
    """onnxruntime time and memory on the exported file, and its error
    against the PyTorch output."""
    from mdeq_mm.deploy import onnx_session
    ref = torch.load(path + '.ref.pt')
    sess = onnx_session(path, device)
    feed = {'input': ref['x'].numpy()}
    out = {}

    def step():
        out['y'] = sess.run(None, feed)[0]

    with PeakMemory('cpu') as mem:
        step()
        median = timed(step, 'cpu', repeat)
    y = torch.from_numpy(out['y'])
    err = (y - ref['y']).abs().max().item() / ref['y'].abs().max().item()
    return dict(ort_s=median,
                ort_mb=mem.delta / 2**20 if device == 'cpu' else None,
                max_rel=err)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--shapes', nargs='+',
                        default=['512x1024', '1024x2048'])
    parser.add_argument('--budgets', type=int, nargs='+', default=[9, 28],
                        help='f evaluations of the solve')
    parser.add_argument('--solver-dtypes', nargs='+',
                        default=['float32', 'float64'],
                        choices=['float32', 'float64'],
                        help="the solver's arithmetic (f stays float32)")
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--out-dir', default='work_dirs/benchmarks/onnx')
    parser.add_argument('--quick', action='store_true',
                        help='64x128 and budget 3 only (a smoke run)')
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.budgets, args.repeat = ['64x128'], [3], 1
        args.solver_dtypes = ['float32']
    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    for shape in args.shapes:
        h, w = (int(s) for s in shape.split('x'))
        cases = [('MDEQ-Small', osp.join(ROOT, MDEQ), b, d)
                 for b in args.budgets for d in args.solver_dtypes]
        cases.append(('HRNet-W18', HRNET, None, None))
        for name, config, budget, dtype in cases:
            path = osp.join(args.out_dir, f"{name}_{shape}_{budget or 'na'}"
                            f"_{dtype or 'na'}.onnx")
            r = dict(model=name, shape=shape, budget=budget, dtype=dtype)
            r.update(run_isolated(torch_case, config=config, budget=budget,
                                  dtype=dtype, shape=(h, w),
                                  device=args.device,
                                  repeat=args.repeat, path=path))
            r.update(run_isolated(ort_case, path=path, device=args.device,
                                  repeat=args.repeat))
            rows.append(r)
            print(f"  {name} {shape} budget {budget or '-'} {dtype or ''}: "
                  f"PyTorch "
                  f"{r['torch_s']:.2f}s, onnxruntime {r['ort_s']:.2f}s, "
                  f"rel. error {r['max_rel']:.1e}", flush=True)
    import onnxruntime
    print(f'\nDevice: {args.device}; torch {torch.__version__}, onnxruntime '
          f'{onnxruntime.__version__}; {torch.get_num_threads()} threads; '
          'batch 1; Broyden (solver arithmetic float32 or float64, f '
          'float32); seeded initialisation\n')
    print(markdown_table(
        ['model', 'input', 'budget', 'solver', 'PyTorch (s)',
         'onnxruntime (s)', 'PyTorch peak (MB)', 'onnxruntime peak (MB)',
         'max rel. error', 'export (s)', 'file (MB)'],
        [[r['model'], r['shape'], r['budget'] or '-', r['dtype'] or '-',
          f"{r['torch_s']:.2f}", f"{r['ort_s']:.2f}", f"{r['torch_mb']:.0f}",
          fmt(r['ort_mb'], '.0f'), f"{r['max_rel']:.1e}",
          f"{r['export_s']:.1f}", f"{r['file_mb']:.1f}"] for r in rows]))
    png = osp.join(args.out_dir, 'onnx.png')
    print(f'\nwrote {save_results(rows, png, plot)} and {png}')
    return rows


def plot(rows, path):
    labels = [f"{r['model']}\n{r['shape']} b{r['budget'] or '-'}"
              f"\n{r['dtype'] or ''}" for r in rows]
    plot_panels(path, [
        dict(title=title, categories=labels, bars={
            lab: [r[key] or 0 for r in rows]
            for key, lab in zip(keys, ('PyTorch', 'onnxruntime'))})
        for keys, title in ((('torch_s', 'ort_s'), 'latency (s)'),
                            (('torch_mb', 'ort_mb'), 'peak memory (MB)'))],
        size=(max(4, 0.8 * len(rows)), 4))


if __name__ == '__main__':
    main()
