# Copyright (c) mdeq_mm authors. All rights reserved.
"""Prove the CUDA path and measure it, in one command.

Sections, in this order (each one's results are written as soon as it
ends, so a run stopped by its time limit keeps what it measured):

* ``tests``: the test suite's ``cuda`` tests (pytest -m cuda);
* ``train`` / ``train_amp``: the flagship config (configs/mdeq_cityscapes.py)
  trained for 40 iterations, 20 unrolled then 20 implicit, 512x1024 crops,
  batch 2, on generated Cityscapes-format data at 1024x2048, then one
  validation; without and with ``--amp``;
* ``speed``: training step (512x1024, batch 2, implicit phase) and
  1024x2048 inference (batch 1) of HRNet-W18, MDEQ-Small with the paper's
  budgets and the speed recipes (configs/speed/), side by side: median of
  10 after a warm-up (CUDA events), peak ``max_memory_allocated``, f
  evaluations; cudnn.benchmark on for all;
* ``syncbn``: the flagship for 4 iterations under ``torchrun`` in one
  process with its SyncBN (NCCL on a GPU).

``--cpu --small`` runs the same code on the CPU with tiny sizes (64x128
crops, 4 iterations, 2 repeats; gloo and BN instead of NCCL and SyncBN,
which PyTorch runs on GPUs only; no AMP run) so that CI keeps it working;
its numbers mean nothing.

Usage:
    python tools/gpu_check.py --out DIR [--cpu] [--small]
        [--time-limit SECONDS] [--sections tests train ...] [--work-dir W]

Writes DIR/gpu_check.json, DIR/gpu_check.md (also printed) and
DIR/cuda_tests.xml; data and runs go to a temporary folder.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import tempfile
import time

nan = float('nan')
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FLAGSHIP = 'configs/mdeq_cityscapes.py'
RECIPES = {
    'HRNet-W18': 'configs/speed/hrnet-w18.py',
    'MDEQ-Small (paper budgets)': 'configs/speed/mdeq-small_default.py',
    'SHINE': 'configs/speed/mdeq-small_shine.py',
    'JR reduced': 'configs/speed/mdeq-small_jr-reduced.py',
    'JR + SHINE': 'configs/speed/mdeq-small_fast.py',
    'JR + correction': 'configs/speed/mdeq-small_correction.py',
}
SECTIONS = ('tests', 'train', 'train_amp', 'speed', 'syncbn')
FULL = dict(image=(1024, 2048), crop=(512, 1024), batch=2, iters=40,
            dist_iters=4, infer=(1024, 2048), repeat=10, workers=4)
SMALL = dict(image=(128, 256), crop=(64, 128), batch=2, iters=4,
             dist_iters=2, infer=(128, 256), repeat=2, workers=0)
# --small: every MDEQ solve at 4 f evaluations (a smoke run of the same code)
SMALL_BUDGETS = {'model.backbone.solver_cfg.max_iter': 3,
                 'model.backbone.grad_cfg.solver_cfg.max_iter': 3}


def flagship_options(data, size, iters):
    """--cfg-options that train the flagship on ``data`` for ``iters``
    iterations (the first half unrolled) with one validation at the end."""
    h, w = size['image']
    opts = [f'{d}.dataset.data_root={data}'
            for d in ('train_dataloader', 'val_dataloader')]
    opts += [f'{d}.num_workers={size["workers"]}'
             for d in ('train_dataloader', 'val_dataloader')]
    opts += [f'train_dataloader.batch_size={size["batch"]}',
             'val_dataloader.batch_size=1',
             f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
             f'default_hooks.checkpoint.interval={iters}',
             'default_hooks.logger.interval=1',
             f'custom_hooks.0.warmup_iters={iters // 2}',
             'custom_hooks.1.interval=1']
    if size is SMALL:  # the pipeline's 2048x1024 scale and crop, scaled
        opts += [f'train_dataloader.dataset.pipeline.2.scale={(w, h)}',
                 f'train_dataloader.dataset.pipeline.3.crop_size='
                 f'{size["crop"]}',
                 f'model.data_preprocessor.size={size["crop"]}',
                 f'val_dataloader.dataset.pipeline.1.scale={(w, h)}']
        opts += [f'{k}={v}' for k, v in SMALL_BUDGETS.items()]
    return opts


def last_scalars(work_dir):
    """The entries of the newest run's vis_data/scalars.json."""
    from mdeq_mm.engine import read_scalars
    runs = read_scalars(work_dir)
    return runs[-1] if runs else []


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def run(cmd, timeout, env=None):
    """Run ``cmd`` from the repository root; (exit code, output tail)."""
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                             timeout=max(timeout, 1), env=env)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace') \
            if isinstance(e.stdout, bytes) else (e.stdout or '')
        return 124, out[-3000:]
    return res.returncode, (res.stdout + res.stderr)[-3000:]


def check_tests(args, size, timeout):
    xml = osp.join(args.out, 'cuda_tests.xml')
    rc, tail = run([sys.executable, '-m', 'pytest', '-m', 'cuda', '-q',
                    '-p', 'no:randomly', f'--junitxml={xml}',
                    'tests/test_cuda'], timeout)
    out = dict(rc=rc)
    if osp.isfile(xml):
        import xml.etree.ElementTree as ET
        suite = ET.parse(xml).getroot().find('testsuite')
        total, skipped = int(suite.get('tests')), int(suite.get('skipped'))
        failed = int(suite.get('failures')) + int(suite.get('errors'))
        out.update(passed=total - skipped - failed, failed=failed,
                   skipped=skipped)
        out['failures'] = [
            f"{case.get('name')}: {(bad.get('message') or '')[:300]}"
            for case in suite.iter('testcase')
            for bad in list(case.findall('failure')) + case.findall('error')]
    out['ok'] = rc in (0, 5) and not out.get('failed')  # 5: none collected
    if not out['ok']:
        out['tail'] = tail
    return out


def make_data(args, size):
    from mdeq_mm.datasets import convert_cityscapes
    from mdeq_mm.datasets.demo_data import write_cityscapes
    root = osp.join(args.work, 'cityscapes')
    if not osp.isdir(root):
        write_cityscapes(root, n_train=4, n_val=2, size=size['image'])
        convert_cityscapes(root)
    return root


def train_summary(work, warmup):
    rows = last_scalars(work)
    steps = [r for r in rows if 'loss' in r and 'time' in r]
    implicit = [r for r in steps if r['iter'] > warmup + 1]
    unrolled = [r for r in steps if 1 < r['iter'] <= warmup]
    val = [r for r in rows if 'mIoU' in r]
    last = implicit[-1] if implicit else {}
    return dict(
        iters=len(steps),
        s_per_iter_unrolled=median([r['time'] for r in unrolled]),
        s_per_iter_implicit=median([r['time'] for r in implicit]),
        memory_mb=max([r.get('memory', 0) for r in steps], default=None),
        final_loss=last.get('loss'),
        fwd_rel_residual=last.get('deq/fwd_rel_residual'),
        bwd_fallback=sum(r.get('deq/bwd_fallback', 0) for r in implicit),
        mIoU=val[-1]['mIoU'] if val else None)


def check_train(args, size, timeout, amp=False):
    if amp and args.cpu:
        return dict(ok=True, skipped='--amp needs CUDA (mmengine\'s '
                    'AmpOptimWrapper)')
    work = osp.join(args.work, 'train_amp' if amp else 'train')
    opts = flagship_options(make_data(args, size), size, size['iters'])
    rc, tail = run([sys.executable, 'tools/train.py', FLAGSHIP,
                    '--work-dir', work] + (['--amp'] if amp else []) +
                   ['--cfg-options'] + opts, timeout)
    out = dict(rc=rc, **train_summary(work, size['iters'] // 2))
    # (backward fallbacks are reported, not failed: they say how healthy
    # the young model is, not whether the device computes correctly)
    out['ok'] = rc == 0 and out['iters'] == size['iters'] and \
        out['mIoU'] is not None and math.isfinite(out['final_loss'] or nan)
    if not out['ok']:
        out['tail'] = tail
    return out


def check_syncbn(args, size, timeout):
    work = osp.join(args.work, 'syncbn')
    iters = size['dist_iters']
    opts = flagship_options(make_data(args, size), size, iters)
    if args.cpu:  # SyncBatchNorm runs on GPUs only
        opts += ['model.backbone.norm_cfg.type=BN',
                 'model.decode_head.norm_cfg.type=BN']
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    rc, tail = run([sys.executable, '-m', 'torch.distributed.run',
                    '--nproc_per_node=1', f'--master_port={port}',
                    'tools/train.py', FLAGSHIP, '--launcher', 'pytorch',
                    '--work-dir', work, '--no-validate', '--cfg-options'] +
                   opts, timeout, env=dict(os.environ, PYTHONPATH=ROOT))
    logs = glob.glob(osp.join(work, '*', '*.log'))
    text = open(logs[-1]).read() if logs else ''
    out = dict(rc=rc, backend='gloo' if args.cpu else 'nccl',
               norm='BN' if args.cpu else 'SyncBN',
               distributed='Distributed training: True' in text,
               iters=len([r for r in last_scalars(work) if 'loss' in r]))
    out['ok'] = rc == 0 and out['distributed'] and out['iters'] == iters
    if not out['ok']:
        out['tail'] = tail
    return out


def measure(config, kind, size, device):
    """One recipe's training step or inference: seconds, peak MB, f
    evaluations (forward, and backward in training)."""
    import torch

    from mdeq_mm.apis import init_model, load_config
    from mdeq_mm.measure import measure_random
    cfg = load_config(config)
    if size is SMALL and cfg.model.backbone.type == 'MDEQ':
        cfg.merge_from_dict(SMALL_BUDGETS)
    train = kind == 'train'
    out = measure_random(init_model(cfg, device=device), kind,
                         size['crop'] if train else size['infer'],
                         size['batch'] if train else 1, device,
                         size['repeat'])
    if device == 'cuda':
        torch.cuda.empty_cache()
    return out


def check_speed(args, size, deadline):
    import torch
    torch.backends.cudnn.benchmark = True
    device = 'cpu' if args.cpu else 'cuda'
    out = dict(ok=True, device=device, rows={})
    for name, config in RECIPES.items():
        if time.time() > deadline:
            out['rows'][name] = dict(skipped='time limit')
            continue
        try:
            out['rows'][name] = {k: measure(config, k, size, device)
                                 for k in ('train', 'infer')}
        except Exception as e:  # one broken recipe does not hide the rest
            out['ok'] = False
            out['rows'][name] = dict(error=f'{type(e).__name__}: {e}'[:500])
    return out


def environment(args):
    import torch
    env = dict(torch=torch.__version__, cuda=torch.version.cuda,
               python=sys.version.split()[0])
    if not args.cpu:
        env['gpu'] = torch.cuda.get_device_name()
    for mod in ('mmcv', 'mmengine', 'mmseg', 'mmpretrain'):
        env[mod] = __import__(mod).__version__
    return env


def markdown(result):
    """The report as markdown: environment, checks, the speed table."""
    lines = ['## GPU check', '', ', '.join(
        f'{k} {v}' for k, v in result['environment'].items()), '',
        '| check | ok | details |', '|---|---|---|']
    for name in SECTIONS:
        r = result['sections'].get(name)
        if r is None or name == 'speed':
            continue
        details = ', '.join(f'{k}={v:.3g}' if isinstance(v, float) else
                            f'{k}={v}' for k, v in r.items()
                            if k not in ('ok', 'tail', 'failures', 'rc'))
        lines.append(f"| {name} | {'yes' if r['ok'] else 'NO'} | "
                     f'{details} |')
    rows = result['sections'].get('speed', {}).get('rows', {})
    base = rows.get('HRNet-W18', {})
    lines += ['', '| model | train step (s) | x HRNet | train peak (MB) | '
              'f evals fwd / bwd | inference (s) | x HRNet | inference '
              'peak (MB) | f evals |', '|---|---|---|---|---|---|---|---|---|']
    for name, r in rows.items():
        if 'train' not in r:
            lines.append(f'| {name} | {r} |')
            continue
        t, i = r['train'], r['infer']

        def ratio(kind, r=r):
            b = base.get(kind, {}).get('s')
            return f"{r[kind]['s'] / b:.2f}" if b else '-'

        evals = (f"{t['nfev_fwd']:.0f} / {t.get('nfev_bwd', 0):.0f}"
                 if 'nfev_fwd' in t else '-')
        lines.append(
            f"| {name} | {t['s']:.3f} | {ratio('train')} | "
            f"{t['peak_mb']:.0f} | {evals} | {i['s']:.3f} | "
            f"{ratio('infer')} | {i['peak_mb']:.0f} | "
            f"{i.get('nfev_fwd', 0):.0f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='report folder')
    parser.add_argument('--cpu', action='store_true',
                        help='run on the CPU (CI: with --small)')
    parser.add_argument('--small', action='store_true', help='tiny sizes')
    parser.add_argument('--time-limit', type=float, default=360,
                        help='seconds; later sections are skipped')
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS),
                        choices=SECTIONS)
    parser.add_argument('--work-dir', help='data and training runs '
                        '(default: a temporary folder, removed at the end)')
    args = parser.parse_args(argv)
    import torch
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit('no CUDA device: run on a GPU host, or pass --cpu '
                         '(with --small in CI)')
    start = time.time()
    deadline = start + args.time_limit
    size = SMALL if args.small else FULL
    os.makedirs(args.out, exist_ok=True)
    args.work = args.work_dir or tempfile.mkdtemp(prefix='gpu_check_')
    result = dict(environment=environment(args), sections={},
                  size='small' if args.small else 'full')
    for name in args.sections:
        left = deadline - time.time()
        t = time.time()
        if left <= 0:
            r = dict(ok=False, skipped='time limit')
        elif name == 'tests':
            r = check_tests(args, size, left)
        elif name in ('train', 'train_amp'):
            r = check_train(args, size, left, amp=name == 'train_amp')
        elif name == 'speed':
            r = check_speed(args, size, deadline)
        else:
            r = check_syncbn(args, size, left)
        r['seconds'] = round(time.time() - t, 1)
        result['sections'][name] = r
        print(f"[{time.time() - start:5.0f}s] {name}: "
              f"{'ok' if r['ok'] else 'FAILED'}", flush=True)
        with open(osp.join(args.out, 'gpu_check.json'), 'w') as f:
            json.dump(result, f, indent=1)
        with open(osp.join(args.out, 'gpu_check.md'), 'w') as f:
            f.write(markdown(result))
    print(markdown(result))
    if not args.work_dir:
        shutil.rmtree(args.work, ignore_errors=True)
    failed = [n for n, r in result['sections'].items() if not r['ok']]
    if failed:
        print(f'FAILED: {failed} (details in {args.out}/gpu_check.json)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
