# Copyright (c) mdeq_mm authors. All rights reserved.
"""Install the mdeq_mm stack into the active Python environment.

Idempotent: each step checks first and does nothing when its requirement is
already met. One progress line per step, then the total time. Uses only the
standard library, because it runs before torch exists.

Steps (the versions are those of requirements/, the one source of pins):
  1. torch + torchvision of requirements/stack.txt (kept if a matching pair
     is present)
  2. build tools: setuptools (runtime.txt), wheel, ninja (stack.txt)
  3. the OpenMMLab packages of mminstall.txt and the rest of runtime.txt
     (they also bring mmcv's own dependencies)
  4. mmcv (stack.txt) with compiled ops, built from the PyPI source once and
     cached as a wheel under $MDEQ_MM_CACHE (default ~/.cache/mdeq_mm),
     keyed by the mmcv, torch, Python and CUDA versions
  5. this package, editable, with its test extras (tests.txt)
  6. the environment check (tools/check_env.py)

Usage:
    python tools/setup_env.py [--skip-torch] [--rebuild-mmcv]
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from check_env import pin, read_requirements, split_requirement

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TORCH_PAIR = (pin('torch'), pin('torchvision'))
MMCV_VERSION = pin('mmcv')
_RUNTIME = read_requirements('runtime.txt')
# setuptools first, with the build tools; mmcv is built in its own step
BUILD_TOOLS = [r for r in _RUNTIME if split_requirement(r)[0] == 'setuptools'
               ] + [r for r in read_requirements('stack.txt')
                    if split_requirement(r)[0] in ('wheel', 'ninja')]
MM_PACKAGES = [
    r for r in read_requirements('mminstall.txt') + _RUNTIME
    if split_requirement(r)[0] not in ('mmcv', 'setuptools')
]
# Subprocess checks run here so that the checkout never shadows a package.
EMPTY_DIR = tempfile.mkdtemp(prefix='mdeq_mm_setup_')


class StepError(RuntimeError):
    """A setup step failed; the message names the cause and the fix."""


def run(cmd, step, fix, env=None, cwd=None, log=None):
    """Run a command; raise StepError with its output tail on failure."""
    out = subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    if log:
        with open(log, 'w') as f:
            f.write(out.stdout)
    if out.returncode != 0:
        tail = '\n'.join(out.stdout.strip().splitlines()[-25:])
        raise StepError(f'step "{step}" failed: `{" ".join(cmd)}` exited '
                        f'with {out.returncode}.\n--- output (tail) ---\n'
                        f'{tail}\n--- fix ---\n{fix}')
    return out.stdout


def py(code):
    """Run python code in a fresh interpreter; return (ok, stdout)."""
    out = subprocess.run([sys.executable, '-c', code],
                         cwd=EMPTY_DIR,
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT,
                         text=True)
    return out.returncode == 0, out.stdout.strip()


def pip(args, step, fix, **kw):
    return run([sys.executable, '-m', 'pip', 'install', *args], step, fix,
               **kw)


def dist_version(name):
    ok, out = py('import importlib.metadata as m\n'
                 f'print(m.version({name!r}))')
    return out.splitlines()[-1] if ok else None


PACKAGING = ('try:\n'
             '    from packaging.requirements import Requirement\n'
             '    from packaging.version import parse\n'
             'except ImportError:\n'
             '    from pip._vendor.packaging.requirements import Requirement\n'
             '    from pip._vendor.packaging.version import parse\n')


def unmet(reqs):
    """Return the requirements of ``reqs`` that no installed dist meets."""
    ok, out = py(PACKAGING + 'import importlib.metadata as m\n'
                 f'for req in {list(reqs)!r}:\n'
                 '    r = Requirement(req)\n'
                 '    try:\n'
                 '        v = m.version(r.name)\n'
                 '    except m.PackageNotFoundError:\n'
                 '        v = None\n'
                 '    if v is None or not r.specifier.contains(\n'
                 '            v, prereleases=True):\n'
                 '        print(req)\n')
    if not ok:
        raise StepError(f'checking requirements failed:\n{out}')
    return out.splitlines()


def step_torch(args):
    """Keep a matching torch/torchvision pair, else install the pinned one."""
    ok, out = py('import torch, torchvision\n'
                 'torch.ops.torchvision.nms\n'
                 'print(torch.__version__, torchvision.__version__)')
    if ok:
        return f'kept torch/torchvision {out.splitlines()[-1]}'
    if args.skip_torch:
        raise StepError('step "torch" failed: no working torch/torchvision '
                        f'pair ({out.splitlines()[-1] if out else "none"}) '
                        'and --skip-torch was given.\n--- fix ---\nInstall '
                        'a matching pair (pytorch.org) or drop --skip-torch.')
    pip([f'torch=={TORCH_PAIR[0]}', f'torchvision=={TORCH_PAIR[1]}'], 'torch',
        'Check network access to PyPI and free disk space (~6 GB); or '
        'install a matching torch/torchvision pair yourself and rerun.')
    return f'installed torch {TORCH_PAIR[0]}, torchvision {TORCH_PAIR[1]}'


def step_build_tools(args):
    missing = unmet(BUILD_TOOLS)
    if not missing:
        return 'already satisfied'
    pip(missing, 'build tools', 'Check network access to PyPI.')
    return 'installed ' + ', '.join(missing)


def cache_dir():
    return os.environ.get('MDEQ_MM_CACHE',
                          osp.join(osp.expanduser('~'), '.cache', 'mdeq_mm'))


def wheel_dir(torch_ver, py_ver, cuda):
    """Cache folder of the mmcv wheel for this torch, Python and CUDA."""
    key = f'mmcv-{MMCV_VERSION}_torch-{torch_ver}_py{py_ver}_cuda-{cuda}'
    return osp.join(cache_dir(), 'wheels', key)


def build_info():
    """torch version, Python tag and the CUDA variant the build will use."""
    ok, out = py('import torch, sys, shutil\n'
                 'cuda = torch.version.cuda if (torch.cuda.is_available() '
                 'and shutil.which("nvcc")) else None\n'
                 'print(torch.__version__, '
                 '"%d.%d" % sys.version_info[:2], cuda or "cpu")')
    if not ok:
        raise StepError('step "mmcv" failed: torch does not import:\n'
                        f'{out}\n--- fix ---\nRerun without --skip-torch.')
    return out.splitlines()[-1].split()


def mmcv_ops_ok():
    ok, out = py(PACKAGING + 'import mmcv, mmcv.ops\n'
                 'v = parse(mmcv.__version__)\n'
                 'assert parse("2.0.0rc4") <= v < parse("2.2.0"), '
                 'mmcv.__version__\n'
                 'print(mmcv.__version__)')
    return ok, out.splitlines()[-1] if out else ''


def build_mmcv_wheel(dest, cuda):
    """Build mmcv from the PyPI source into ``dest``; return the wheel path."""
    work = tempfile.mkdtemp(prefix='mdeq_mm_mmcv_')
    fix = ('Make sure gcc/g++ (C++20), the Python headers and network '
           'access to PyPI are available; the full log is in ' + work)
    try:
        run([
            sys.executable, '-m', 'pip', 'download', '--no-deps',
            '--no-binary', ':all:', '--no-build-isolation',
            f'mmcv=={MMCV_VERSION}', '-d', work
        ], 'mmcv: download source', fix)
        sdist = glob.glob(osp.join(work, 'mmcv-*.tar.gz'))[0]
        with tarfile.open(sdist) as tar:
            tar.extractall(work)
        src = osp.join(work, f'mmcv-{MMCV_VERSION}')
        setup_py = osp.join(src, 'setup.py')
        with open(setup_py) as f:
            text = f.read()
        # torch >= 2.13 headers refuse C++17 ("C++20 or later compatible
        # compiler is required to use ATen").
        ok, torch_ver = py('import torch; print(torch.__version__)')
        major_minor = tuple(int(x) for x in torch_ver.split('.')[:2])
        if major_minor >= (2, 13):
            text = text.replace('-std=c++17', '-std=c++20')
        with open(setup_py, 'w') as f:
            f.write(text)
        env = dict(
            os.environ,
            MMCV_WITH_OPS='1',
            FORCE_CUDA='1' if cuda != 'cpu' else '0',
            MAX_JOBS=str(os.cpu_count() or 1),
            CFLAGS='-g0 -O1',
            CXXFLAGS='-g0 -O1')
        run([
            sys.executable, '-m', 'pip', 'wheel', '--no-build-isolation',
            '--no-deps', '.', '-w', dest
        ],
            'mmcv: compile',
            fix,
            env=env,
            cwd=src,
            log=osp.join(work, 'build.log'))
        wheels = glob.glob(osp.join(dest, 'mmcv-*.whl'))
        if not wheels:
            raise StepError('step "mmcv: compile" produced no wheel.\n'
                            f'--- fix ---\nSee {work}/build.log')
        shutil.rmtree(work, ignore_errors=True)
        return wheels[0]
    except StepError:
        raise
    except Exception as e:  # unpacking, patching
        raise StepError(f'step "mmcv: prepare source" failed: {e!r}\n'
                        f'--- fix ---\n{fix}')


def step_mmcv(args):
    ok, ver = mmcv_ops_ok()
    if ok and not args.rebuild_mmcv:
        return f'kept mmcv {ver} (compiled ops import)'
    torch_ver, py_ver, cuda = build_info()
    dest = wheel_dir(torch_ver, py_ver, cuda)
    wheels = glob.glob(osp.join(dest, 'mmcv-*.whl'))
    how = f'installed the cached wheel from {dest}'
    if args.rebuild_mmcv or not wheels:
        os.makedirs(dest, exist_ok=True)
        for w in wheels:
            os.remove(w)
        t = time.time()
        print(f'      building mmcv {MMCV_VERSION} ({cuda} ops) from source '
              f'with {os.cpu_count()} jobs; 5-13 min on 2 cores ...',
              flush=True)
        wheels = [build_mmcv_wheel(dest, cuda)]
        how = f'built in {time.time() - t:.0f}s, cached in {dest}'
    pip(['--force-reinstall', '--no-deps', wheels[0]], 'mmcv: install',
        f'Delete {dest} and rerun to rebuild the wheel.')
    ok, out = mmcv_ops_ok()
    if not ok:
        raise StepError('step "mmcv" failed: mmcv.ops does not import after '
                        f'installing {wheels[0]}:\n{out}\n--- fix ---\n'
                        'A missing module: install it (pip install NAME) and '
                        'rerun. An undefined symbol: the cached wheel was '
                        'built against another torch; rerun with '
                        '--rebuild-mmcv.')
    return f'mmcv {out}: {how}'


def step_mm(args):
    missing = unmet(MM_PACKAGES)
    if not missing:
        return 'already satisfied'
    pip(missing, 'OpenMMLab packages',
        'Check network access to PyPI; if pip reports a conflict, use a '
        'fresh virtual environment.')
    return 'installed ' + ', '.join(missing)


def test_requirements():
    return read_requirements('tests.txt')


def step_self(args):
    ok, out = py('import mdeq_mm, os; print(os.path.dirname('
                 'os.path.dirname(mdeq_mm.__file__)))')
    installed = ok and osp.samefile(out.splitlines()[-1], ROOT)
    missing = unmet(test_requirements())
    if installed and not missing:
        return f'already installed (editable) from {ROOT}'
    if not installed:
        # --no-deps: the OpenMMLab stack was installed by the steps above
        pip(['--no-build-isolation', '--no-deps', '-e', ROOT], 'mdeq_mm',
            'Run from a clean checkout; see the pip output above.')
    if missing:
        pip(missing, 'test requirements', 'Check network access to PyPI.')
    return f'installed editable from {ROOT}' + (
        f' (+ {", ".join(missing)})' if missing else '')


def step_check(args):
    out = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'check_env.py')],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    if out.returncode != 0:
        raise StepError(f'step "check" failed:\n{out.stdout}')
    return 'all requirements met'


STEPS = [
    ('torch + torchvision', step_torch),
    ('build tools', step_build_tools),
    # before mmcv: they bring mmcv's own dependencies (mmengine, opencv,
    # addict, yapf ...), and the mmcv wheel installs with --no-deps
    ('OpenMMLab packages', step_mm),
    ('mmcv with compiled ops', step_mmcv),
    ('mdeq_mm (editable, tests extra)', step_self),
    ('environment check', step_check),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--skip-torch',
        action='store_true',
        help='never install torch (fail if no matching pair is present)')
    parser.add_argument(
        '--rebuild-mmcv',
        action='store_true',
        help='rebuild the mmcv wheel even if a cached one exists')
    args = parser.parse_args()
    start = time.time()
    for i, (name, fn) in enumerate(STEPS, 1):
        t = time.time()
        print(f'[{i}/{len(STEPS)}] {name} ...', flush=True)
        try:
            msg = fn(args)
        except StepError as e:
            print(f'[{i}/{len(STEPS)}] {name}: FAILED\n{e}', flush=True)
            print(f'setup stopped after {time.time() - start:.0f}s')
            return 1
        print(f'[{i}/{len(STEPS)}] {name}: {msg} ({time.time() - t:.1f}s)',
              flush=True)
    print(f'setup done in {time.time() - start:.0f}s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
