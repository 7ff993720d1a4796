# Copyright (c) mdeq_mm authors. All rights reserved.
"""Prove the CUDA path and measure it, in one command.

Sections, in this order (each one's results are written as soon as it
ends, so a run stopped by its time limit keeps what it measured):
``tests``: the ``cuda`` tests (pytest -m cuda); ``train`` / ``train_amp``:
the flagship (configs/mdeq_cityscapes.py) trained 40 iterations, 20
unrolled then 20 implicit, 512x1024 crops, batch 2, on generated
Cityscapes-format data, then validated, without and with ``--amp``;
``speed``: training step (512x1024, batch 2, implicit phase) and 1024x2048
inference of HRNet-W18 and the MDEQ-Small speed recipes (configs/speed/)
side by side: median of 10 after a warm-up (CUDA events), peak
``max_memory_allocated``, f evaluations, cudnn.benchmark on; ``syncbn``:
the flagship for 4 iterations under ``torchrun`` with SyncBN over NCCL.

``--cpu --small`` runs the same code on the CPU with tiny sizes (64x128
crops, 4 iterations, 2 repeats; gloo and BN instead of NCCL and SyncBN; no
AMP run) so that CI keeps it working; its numbers mean nothing.

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
import subprocess
import sys
import tempfile
import time

from tool_utils import RECIPES, ROOT, demo_cityscapes

FLAGSHIP = 'configs/mdeq_cityscapes.py'
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
    opts = [f'{d}.{k}={v}' for d in ('train_dataloader', 'val_dataloader')
            for k, v in (('dataset.data_root', data),
                         ('num_workers', size['workers']))]
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


def run(cmd, timeout, env=None):
    """Run ``cmd`` from the repository root; (exit code, output tail)."""
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                             timeout=max(timeout, 1), env=env)
    except subprocess.TimeoutExpired as e:  # (its output may be bytes)
        out = e.stdout or ''
        out = str(out, errors='replace') if isinstance(out, bytes) else out
        return 124, out[-3000:]
    return res.returncode, (res.stdout + res.stderr)[-3000:]


def finish(out, ok, tail):
    """``out`` with ``ok`` set, and the output's tail when not ok."""
    out['ok'] = ok
    if not ok:
        out['tail'] = tail
    return out


def check_tests(args, size, timeout):
    xml = osp.join(args.out, 'cuda_tests.xml')
    rc, tail = run([sys.executable, '-m', 'pytest', '-m', 'cuda', '-q',
                    '-p', 'no:randomly', f'--junitxml={xml}',
                    'tests/test_cuda'], timeout)
    out = dict(rc=rc)
    if osp.isfile(xml):
        import xml.etree.ElementTree as ET
        suite = ET.parse(xml).getroot().find('testsuite')
        n = {k: int(suite.get(k))
             for k in ('tests', 'skipped', 'failures', 'errors')}
        failed = n['failures'] + n['errors']
        out.update(passed=n['tests'] - n['skipped'] - failed, failed=failed,
                   skipped=n['skipped'])
        out['failures'] = [
            f"{case.get('name')}: {(bad.get('message') or '')[:300]}"
            for case in suite.iter('testcase')
            for bad in list(case.findall('failure')) + case.findall('error')]
    ok = rc in (0, 5) and not out.get('failed')  # 5: nothing collected
    return finish(out, ok, tail)


def make_data(args, size):
    return demo_cityscapes(osp.join(args.work, 'cityscapes'), n_train=4,
                           n_val=2, size=size['image'])


def check_train(args, size, timeout, amp=False):
    if amp and args.cpu:
        return dict(ok=True, skipped='--amp needs CUDA (mmengine\'s '
                    'AmpOptimWrapper)')
    work = osp.join(args.work, 'train_amp' if amp else 'train')
    opts = flagship_options(make_data(args, size), size, size['iters'])
    rc, tail = run([sys.executable, 'tools/train.py', FLAGSHIP,
                    '--work-dir', work] + (['--amp'] if amp else []) +
                   ['--cfg-options'] + opts, timeout)
    from mdeq_mm.engine import training_phases
    out = dict(rc=rc, **training_phases(work, size['iters'] // 2))
    # (backward fallbacks are reported, not failed: they say how healthy
    # the young model is, not whether the device computes correctly)
    return finish(out, rc == 0 and out['iters'] == size['iters'] and out[
        'mIoU'] is not None and math.isfinite(out['final_loss'] or math.nan),
        tail)


def check_syncbn(args, size, timeout):
    from mdeq_mm.engine import training_phases
    work = osp.join(args.work, 'syncbn')
    iters = size['dist_iters']
    opts = flagship_options(make_data(args, size), size, iters)
    if args.cpu:  # SyncBatchNorm runs on GPUs only
        opts += ['model.backbone.norm_cfg.type=BN',
                 'model.decode_head.norm_cfg.type=BN']
    rc, tail = run([sys.executable, '-m', 'torch.distributed.run',
                    '--standalone', '--nproc_per_node=1',
                    'tools/train.py', FLAGSHIP, '--launcher', 'pytorch',
                    '--work-dir', work, '--no-validate', '--cfg-options'] +
                   opts, timeout, env=dict(os.environ, PYTHONPATH=ROOT))
    logs = glob.glob(osp.join(work, '*', '*.log'))
    text = open(logs[-1]).read() if logs else ''
    out = dict(rc=rc, backend='gloo' if args.cpu else 'nccl',
               norm='BN' if args.cpu else 'SyncBN',
               distributed='Distributed training: True' in text,
               iters=training_phases(work, 0)['iters'])
    return finish(out, rc == 0 and out['distributed'] and
                  out['iters'] == iters, tail)


def measure(config, kind, size, device):
    """One recipe's training step or inference (:mod:`mdeq_mm.measure`)."""
    import torch

    from mdeq_mm.apis import init_model, load_config, set_solver
    from mdeq_mm.measure import measure_random
    cfg = load_config(config)
    small = size is SMALL and cfg.model.backbone.type == 'MDEQ'
    if small:
        cfg.merge_from_dict(SMALL_BUDGETS)
    model = init_model(cfg, device=device)
    if small:  # 4 f evaluations in evaluation too, whatever the config's
        set_solver(model, budget=4)
    train = kind == 'train'
    out = measure_random(model, kind, size['crop' if train else 'infer'],
                         size['batch'] if train else 1, device, size['repeat'])
    if device == 'cuda':
        torch.cuda.empty_cache()
    return out


def check_speed(args, size, deadline):
    import torch
    torch.backends.cudnn.benchmark = True
    device = 'cpu' if args.cpu else 'cuda'
    out = dict(ok=True, device=device, rows={})
    for name, config in RECIPES:
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
    env = dict(gpu='cpu' if args.cpu else torch.cuda.get_device_name(),
               torch=torch.__version__, cuda=torch.version.cuda,
               python=sys.version.split()[0])
    env.update((m, __import__(m).__version__)
               for m in ('mmcv', 'mmengine', 'mmseg', 'mmpretrain'))
    return env


def markdown(result):
    """The report as markdown: environment, checks, the speed table."""
    from mdeq_mm.report import fmt, markdown_table
    checks = [[name, 'yes' if r['ok'] else 'NO', ', '.join(
        f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
        for k, v in r.items() if k not in ('ok', 'tail', 'failures', 'rc'))]
        for name, r in result['sections'].items() if name != 'speed']
    rows = result['sections'].get('speed', {}).get('rows', {})
    base = rows.get('HRNet-W18', {})
    speed = []
    for name, r in rows.items():
        if 'train' not in r:  # skipped or failed
            speed.append([name, r] + [''] * 7)
            continue
        t, i = r['train'], r['infer']
        ratio = [fmt(r[k]['s'] / base[k]['s'] if k in base else None,
                     '.2f') for k in ('train', 'infer')]
        speed.append([
            name, f"{t['s']:.3f}", ratio[0], f"{t['peak_mb']:.0f}",
            f"{fmt(t.get('nfev_fwd'), '.0f')} / "
            f"{fmt(t.get('nfev_bwd'), '.0f')}", f"{i['s']:.3f}", ratio[1],
            f"{i['peak_mb']:.0f}", fmt(i.get('nfev_fwd'), '.0f')])
    return '\n\n'.join([
        '## GPU check', ', '.join(
            f'{k} {v}' for k, v in result['environment'].items()),
        markdown_table(['check', 'ok', 'details'], checks),
        markdown_table(['model', 'train step (s)', 'x HRNet',
                        'train peak (MB)', 'f evals fwd / bwd',
                        'inference (s)', 'x HRNet', 'inference peak (MB)',
                        'f evals'], speed)]) + '\n'


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
        t = time.time()
        left = deadline - t
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
        for file, text in (('gpu_check.json', json.dumps(result, indent=1)),
                           ('gpu_check.md', markdown(result))):
            with open(osp.join(args.out, file), 'w') as f:
                f.write(text)
    print(markdown(result))
    if not args.work_dir:
        shutil.rmtree(args.work, ignore_errors=True)
    failed = [n for n, r in result['sections'].items() if not r['ok']]
    if failed:
        print(f'FAILED: {failed} (details in {args.out}/gpu_check.json)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
