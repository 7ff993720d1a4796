# Copyright (c) mdeq_mm authors. All rights reserved.
"""Benchmark the fixed-point solvers (a benchmark, not a test).

For random contractions with D in {1e4, 1e5, 1e6} (a residual conv block,
the shape of an MDEQ branch) and the MDEQ-Small layer f_θ at a 256x512 crop,
run every solver of mdeq_mm (Broyden also with ``history=None``, every
step kept) and of torchdeq 0.1.0 (if installed: ``pip install
torchdeq==0.1.0``) on the same f and report, per solver: f
evaluations to reach a relative residual of 1e-3, the final relative
residual, wall time, peak memory above the inputs, and the overhead ratio
solve time / (evaluations x time of one f), with the time of one f measured
inside the same solve. Each case runs in its own
process. Prints a markdown table, writes JSON and a PNG chart.

Usage:
    python tools/benchmark_solvers.py [--dims 1e4 1e5 1e6] [--no-mdeq]
        [--device cpu] [--out-dir work_dirs/benchmarks/solvers]
"""
import argparse
import contextlib
import os.path as osp
import time

import torch
import torch.nn.functional as F

from mdeq_mm.ops import solve
from mdeq_mm.measure import PeakMemory, run_isolated
from mdeq_mm.report import markdown_table, plot_panels, save_results

TOL = 1e-3
# (implementation, solver, options): our Broyden by default (16-step memory,
# scaled restarts) and with every step kept (the reference's iterates)
SOLVERS = [('mdeq_mm', 'broyden', {}),
           ('mdeq_mm', 'broyden', {'history': None}),
           ('mdeq_mm', 'anderson', {}), ('mdeq_mm', 'fixed_point', {}),
           ('torchdeq', 'broyden', {}), ('torchdeq', 'anderson', {}),
           ('torchdeq', 'fixed_point_iter', {})]


def conv_contraction(dim, device, channels=64, expansion=5, rate=6.5):
    """f(z) = rate · tanh(W2 * relu(W1 * z) / L) + x on a (C, H, W) grid,
    with L the product of the two conv operator norms (power method): a
    residual-block map with the arithmetic cost per state element of an
    MDEQ-Small branch (3x3 convs C → 5C → C, C = 64). With
    rate 6.5 the map is contractive around its fixed point but slowly so:
    fixed-point iteration needs 75-95 evaluations for rel 1e-3.
    Returns (f on flat (1, D) states, D)."""
    side = max(2, round((dim / channels)**0.5))
    shape = (1, channels, side, side)
    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(channels * expansion, channels, 3, 3, generator=g)
    w2 = torch.randn(channels, channels * expansion, 3, 3, generator=g)
    x = torch.randn(shape, generator=g).to(device)
    w1, w2 = w1.to(device), w2.to(device)

    def op_norm(w, cin):
        v = torch.randn(1, cin, side, side, device=device)
        for _ in range(30):
            u = F.conv2d(v, w, padding=1)
            v = F.conv_transpose2d(u, w, padding=1)
            v = v / v.norm()
        return F.conv2d(v, w, padding=1).norm().item()

    scale = op_norm(w1, channels) * op_norm(w2, channels * expansion)

    def f(z):
        h = F.relu(F.conv2d(z.view(shape), w1, padding=1))
        return (rate * torch.tanh(F.conv2d(h, w2, padding=1) / scale) +
                x).reshape(1, -1)

    return f, int(torch.Size(shape).numel())


def mdeq_layer(device, stack):
    """f_θ of MDEQ-Small (random init) at a 256x512 crop, batch 1, with
    its normalised weights computed once (as in a forward) until ``stack``
    closes."""
    from mdeq_mm.models import MDEQ
    torch.manual_seed(0)
    model = MDEQ('small').to(device).eval()
    problem = stack.enter_context(
        model.fixed_point(torch.randn(1, 3, 256, 512, device=device)))
    return problem.flat(), problem.packer.dim


def run_case(problem, dim, impl, solver, options, device, max_iter):
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    with contextlib.ExitStack() as stack:
        f, dim = (mdeq_layer(device, stack) if problem == 'mdeq-small' else
                  conv_contraction(int(dim), device))
        return solve_case(f, dim, problem, impl, solver, options, device,
                          max_iter)


def solve_case(f, dim, problem, impl, solver, options, device, max_iter):
    z0 = torch.zeros(1, dim, device=device)
    f(z0)  # warm-up
    calls, f_time = [0], [0.0]

    def counted(z):
        # time spent inside f, so that the overhead ratio compares the
        # solve with exactly the f evaluations it made
        if device == 'cuda':
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = f(z)
        if device == 'cuda':
            torch.cuda.synchronize()
        f_time[0] += time.perf_counter() - t
        calls[0] += 1
        return out

    with PeakMemory(device) as mem:
        t = time.perf_counter()
        if impl == 'mdeq_mm':
            z, stats = solve(solver, counted, z0, max_iter=max_iter,
                             tol=TOL, stop_mode='rel', **options)
            trace = stats.rel_trace[0]
        else:
            from torchdeq.solver import get_solver
            z, _, stats = get_solver(solver)(
                counted, z0, max_iter=max_iter, tol=TOL, stop_mode='rel',
                **options)
            # torchdeq's trace starts with a 1e8 placeholder for z0
            trace = stats['rel_trace'][0]
        if device == 'cuda':
            torch.cuda.synchronize()
        t_solve = time.perf_counter() - t
    fz = f(z)
    rel = ((fz - z).norm() / fz.norm()).item()
    # evaluations until the relative residual first reached TOL (f(z0)
    # counts as the first), from the solver's own trace
    hits = (trace <= TOL).nonzero()
    to_tol = int(hits[0]) + 1 if len(hits) else None
    if options:
        solver += ' (' + ', '.join(f'{k}={v}'
                                   for k, v in options.items()) + ')'
    return dict(problem=problem, dim=dim, impl=impl, solver=solver,
                nfev=calls[0], to_tol=to_tol, rel=rel, time=t_solve,
                t_f=f_time[0] / calls[0], mem_mb=mem.delta / 2**20,
                overhead=t_solve / f_time[0])


def plot(rows, path):
    problems = list(dict.fromkeys(r['problem'] for r in rows))
    labels = list(dict.fromkeys(f"{r['impl']}:{r['solver']}" for r in rows))

    def values(key, label):
        return [next(((r[key] or r['nfev']) for r in rows
                      if r['problem'] == p and
                      f"{r['impl']}:{r['solver']}" == label), 0)
                for p in problems]

    plot_panels(path, [
        dict(title=title, categories=problems, hline=hline,
             legend=key == 'to_tol',
             bars={label: values(key, label) for label in labels})
        for key, title, hline in (
            ('to_tol', 'f evaluations (to rel 1e-3 or budget)', None),
            ('overhead', 'overhead: time / (nfev x t_f)', 1.0))],
        size=(6, 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dims', nargs='+', default=['1e4', '1e5', '1e6'])
    parser.add_argument('--no-mdeq', action='store_true')
    parser.add_argument('--max-iter', type=int, default=150)
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out-dir', default='work_dirs/benchmarks/solvers')
    args = parser.parse_args()
    try:
        import torchdeq  # noqa: F401
        solvers = SOLVERS
    except ImportError:
        print('torchdeq not installed (pip install torchdeq==0.1.0): '
              'benchmarking mdeq_mm only')
        solvers = [s for s in SOLVERS if s[0] == 'mdeq_mm']
    problems = [(f'conv D={d}', float(d)) for d in args.dims]
    if not args.no_mdeq:
        problems.append(('mdeq-small', 0))
    rows = []
    for name, dim in problems:
        for impl, solver, options in solvers:
            r = run_isolated(
                run_case, problem=name if name == 'mdeq-small' else 'conv',
                dim=dim, impl=impl, solver=solver, options=options,
                device=args.device,
                max_iter=27 if name == 'mdeq-small' else args.max_iter)
            r['problem'] = name
            rows.append(r)
            print(f"  {name:<14} {impl:>8}:{r['solver']:<28}"
                  f" to tol {r['to_tol']}"
                  f" nfev {r['nfev']:>4}"
                  f" rel {r['rel']:.1e} {r['time']:.2f}s", flush=True)
    print(f'\nDevice: {args.device}; torch {torch.__version__}; '
          f'threads {torch.get_num_threads()}; tol rel {TOL}\n')
    print(markdown_table(
        ['f', 'D', 'solver', 'evaluations to rel 1e-3', 'final rel residual',
         'time (s)', 'peak mem (MB)', 'overhead ratio'],
        [[r['problem'], f"{r['dim']:,}", f"{r['impl']} {r['solver']}",
          str(r['to_tol']) if r['to_tol'] else
          f"not reached ({r['nfev']} run)", f"{r['rel']:.2e}",
          f"{r['time']:.3f}", f"{r['mem_mb']:.1f}", f"{r['overhead']:.3f}"]
         for r in rows]))
    png = osp.join(args.out_dir, 'solvers.png')
    print(f'\nwrote {save_results(rows, png, plot)} and {png}')


if __name__ == '__main__':
    main()
