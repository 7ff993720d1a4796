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

Offline hosts (a GPU cluster behind a firewall): fill a wheelhouse where
the network is, for the host's Python, then install from it there:

    python tools/setup_env.py --fill-wheelhouse DIR [--python-version 3.12]
    python tools/setup_env.py --wheelhouse DIR

The wheelhouse holds the OpenMMLab packages, their dependencies and the
test tools as wheels for that Python, and the mmcv source; not the large
compiled packages a GPU host already has (HOST_PROVIDED: torch,
torchvision, numpy, scipy, matplotlib, opencv, Pillow, onnx, onnxruntime),
which the install checks and names when missing. With ``--wheelhouse``
pip never reaches for an index, the torch already installed is kept (it
must be in requirements/torch.txt's range; a CUDA build is fine), and mmcv
is built from the wheelhouse's source with every core and CPU ops only:
every model here uses mmcv's CPU-side code alone (mmseg imports mmcv.ops;
no model here runs an mmcv kernel), so the CUDA kernels are not needed.

Usage:
    python tools/setup_env.py [--skip-torch] [--rebuild-mmcv]
        [--wheelhouse DIR | --fill-wheelhouse DIR [--python-version X.Y]]
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

from check_env import Requirement, pin, read_requirements, split_requirement

try:
    from packaging.utils import parse_wheel_filename
except ImportError:  # a bare environment: pip's copy
    from pip._vendor.packaging.utils import parse_wheel_filename

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
TORCH_PAIR = (pin('torch'), pin('torchvision'))
MMCV_VERSION = pin('mmcv')
MMCV_RANGE = next(Requirement(r).specifier
                  for r in read_requirements('mminstall.txt')
                  if split_requirement(r)[0] == 'mmcv')
_RUNTIME = read_requirements('runtime.txt')
# setuptools first, with the build tools; mmcv is built in its own step
BUILD_TOOLS = [r for r in _RUNTIME if split_requirement(r)[0] == 'setuptools'
               ] + [r for r in read_requirements('stack.txt')
                    if split_requirement(r)[0] in ('wheel', 'ninja')]
MM_PACKAGES = [
    r for r in read_requirements('mminstall.txt') + _RUNTIME
    if split_requirement(r)[0] not in ('mmcv', 'setuptools')
]
TEST_PACKAGES = [
    r for r in read_requirements('tests.txt')
    if split_requirement(r)[0] not in ('torch', 'torchvision')
]
# Large compiled packages a GPU host already has: a wheelhouse leaves them
# out (and does not follow their own requirements); --wheelhouse checks them.
HOST_PROVIDED = ('torch', 'torchvision', 'numpy', 'scipy', 'matplotlib',
                 'opencv-python', 'pillow', 'onnx', 'onnxruntime')
WHEELHOUSE_MB = 40
# Subprocess checks run here so that the checkout never shadows a package.
EMPTY_DIR = tempfile.mkdtemp(prefix='mdeq_mm_setup_')
# the wheelhouse of an offline install (--wheelhouse), or None
OFFLINE = {'dir': None}


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
    """``pip install ARGS``; from the wheelhouse only when offline."""
    if OFFLINE['dir']:
        args = ['--no-index', '--find-links', OFFLINE['dir'], *args]
        fix = (f'{fix} Offline: the wheelhouse {OFFLINE["dir"]} lacks a '
               'wheel; refill it with --fill-wheelhouse for this Python.')
    return run([sys.executable, '-m', 'pip', 'install', *args], step, fix,
               **kw)


def unmet(reqs, closure=False):
    """check_env.unmet, run in a fresh interpreter (so that it sees what
    the steps before installed)."""
    ok, out = py('import runpy\n'
                 f'unmet = runpy.run_path({osp.join(HERE, "check_env.py")!r}'
                 ')["unmet"]\n'
                 f'print(*unmet({list(reqs)!r}, {closure!r}), sep="\\n")')
    if not ok:
        raise StepError(f'checking requirements failed:\n{out}')
    return out.splitlines()


def step_torch(args):
    """Keep a matching torch/torchvision pair, else install the pinned one."""
    ok, out = py('import torch, torchvision\n'
                 'torch.ops.torchvision.nms\n'
                 'print(torch.__version__, torchvision.__version__)')
    if ok and OFFLINE['dir']:
        wrong = unmet(read_requirements('torch.txt'))
        if wrong:
            raise StepError(
                f'step "torch" failed: the installed torch/torchvision '
                f'({out.splitlines()[-1]}) is outside the supported range '
                f'{wrong}.\n--- fix ---\nInstall a supported pair on the '
                'host (an offline install never replaces torch).')
    if ok:
        return f'kept torch/torchvision {out.splitlines()[-1]}'
    if OFFLINE['dir']:
        raise StepError('step "torch" failed: no working torch/torchvision '
                        f'pair ({out.splitlines()[-1] if out else "none"}); '
                        'an offline install keeps the host\'s torch and '
                        'never installs one.\n--- fix ---\nInstall the '
                        'CUDA torch/torchvision pair of your cluster first.')
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
                 f'cuda = torch.version.cuda if ({not OFFLINE["dir"]} and '
                 'torch.cuda.is_available() and shutil.which("nvcc")) '
                 'else None\n'
                 'print(torch.__version__, '
                 '"%d.%d" % sys.version_info[:2], cuda or "cpu")')
    if not ok:
        raise StepError('step "mmcv" failed: torch does not import:\n'
                        f'{out}\n--- fix ---\nRerun without --skip-torch.')
    return out.splitlines()[-1].split()


def mmcv_ops_ok():
    """(whether mmcv's compiled ops import and its version is in
    mminstall.txt's range, the version or the error's last line)."""
    ok, out = py('import mmcv, mmcv.ops\nprint(mmcv.__version__)')
    out = out.splitlines()[-1] if out else ''
    return ok and MMCV_RANGE.contains(out, prereleases=True), out


def download_mmcv_sdist(dest, fix):
    """Download the mmcv source distribution into ``dest``."""
    run([
        sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary',
        ':all:', '--no-build-isolation', f'mmcv=={MMCV_VERSION}', '-d', dest
    ], 'mmcv: download source', fix)


def mmcv_sdist(wheelhouse):
    """The mmcv source distribution in the wheelhouse."""
    found = glob.glob(osp.join(wheelhouse, f'mmcv-{MMCV_VERSION}.tar.gz'))
    if not found:
        raise StepError(f'step "mmcv" failed: no mmcv-{MMCV_VERSION}.tar.gz '
                        f'in the wheelhouse {wheelhouse}.\n--- fix ---\n'
                        'Refill it with --fill-wheelhouse.')
    return found[0]


def build_mmcv_wheel(dest, cuda):
    """Build mmcv from the PyPI source into ``dest``; return the wheel path."""
    work = tempfile.mkdtemp(prefix='mdeq_mm_mmcv_')
    fix = ('Make sure gcc/g++ (C++20), the Python headers and network '
           'access to PyPI are available; the full log is in ' + work)
    try:
        if OFFLINE['dir']:
            sdist = mmcv_sdist(OFFLINE['dir'])
        else:
            download_mmcv_sdist(work, fix)
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
            # mmcv's setup.py builds CUDA kernels whenever torch sees a GPU
            **({} if cuda != 'cpu' else dict(CUDA_VISIBLE_DEVICES='')),
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


def install_offline(reqs, step):
    """Install ``reqs`` and every missing requirement of theirs from the
    wheelhouse, one level at a time (``--no-deps``: pip's resolver would
    not accept PROVIDED_BY alternatives); return what was installed."""
    installed = []
    for _ in range(20):
        missing = unmet(reqs, closure=True)
        if not missing:
            return installed
        absent = [r for r in missing if split_requirement(r)[0].lower()
                  in HOST_PROVIDED]
        if absent:
            raise StepError(
                f'step "{step}" failed: the host lacks {absent}, large '
                'compiled packages a wheelhouse does not carry.\n--- fix '
                '---\nInstall them on the host (its CUDA torch image, '
                'conda or the cluster\'s wheels), or add their wheels for '
                f'this Python to {OFFLINE["dir"]}.')
        pip(['--no-deps', *missing], step, 'See the pip output above.')
        installed += missing
    raise StepError(f'step "{step}" failed: requirements still unmet after '
                    f'20 rounds: {missing}')


def step_mm(args):
    if OFFLINE['dir']:
        done = install_offline(MM_PACKAGES, 'OpenMMLab packages')
        return ('installed from the wheelhouse: ' + ', '.join(done)
                if done else 'already satisfied')
    missing = unmet(MM_PACKAGES)
    if not missing:
        return 'already satisfied'
    pip(missing, 'OpenMMLab packages',
        'Check network access to PyPI; if pip reports a conflict, use a '
        'fresh virtual environment.')
    return 'installed ' + ', '.join(missing)


def step_self(args):
    ok, out = py('import mdeq_mm, os; print(os.path.dirname('
                 'os.path.dirname(mdeq_mm.__file__)))')
    installed = ok and osp.samefile(out.splitlines()[-1], ROOT)
    missing = unmet(read_requirements('tests.txt'))
    if installed and not missing:
        return f'already installed (editable) from {ROOT}'
    if not installed:
        # --no-deps: the OpenMMLab stack was installed by the steps above
        pip(['--no-build-isolation', '--no-deps', '-e', ROOT], 'mdeq_mm',
            'Run from a clean checkout; see the pip output above.')
    if missing and OFFLINE['dir']:
        missing = install_offline(missing, 'test requirements')
    elif missing:
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


PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64',
             'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
             'manylinux1_x86_64')


def _wheel_requires(path):
    """Requires-Dist of a wheel, read from its METADATA."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist()
                    if n.endswith('.dist-info/METADATA'))
        text = z.read(meta).decode('utf-8', 'replace')
    return [line.split(':', 1)[1].strip() for line in text.splitlines()
            if line.startswith('Requires-Dist:')]


def fetch_sdist(name, version, dest):
    """Download a source distribution from PyPI as it is (``pip download``
    would build its metadata, which for mmcv needs torch), checking its
    sha256."""
    import hashlib
    import json
    import urllib.request
    index = urllib.request.Request(
        f'https://pypi.org/simple/{name}/',
        headers={'Accept': 'application/vnd.pypi.simple.v1+json'})
    want = f'{name}-{version}.tar.gz'
    try:
        with urllib.request.urlopen(index, timeout=60) as r:
            sdist = next(f for f in json.load(r)['files']
                         if f['filename'] == want)
        with urllib.request.urlopen(sdist['url'], timeout=300) as r:
            data = r.read()
    except (OSError, StopIteration, KeyError, ValueError) as e:
        raise StepError(f'downloading the {name} {version} source from PyPI '
                        f'failed: {e!r}\n--- fix ---\nCheck network access '
                        'to pypi.org.')
    if hashlib.sha256(data).hexdigest() != sdist['hashes']['sha256']:
        raise StepError(f'{want}: sha256 mismatch; retry.')
    with open(osp.join(dest, want), 'wb') as f:
        f.write(data)


def fill_wheelhouse(dest, python_version):
    """Download what ``--wheelhouse`` installs, for ``python_version`` on
    x86-64 Linux: the OpenMMLab packages, the build tools, the test tools
    and every requirement of theirs (one level at a time, ``--no-deps``)
    except HOST_PROVIDED and what those require; plus the mmcv source.
    Needs the network (PyPI); returns a summary line."""
    os.makedirs(dest, exist_ok=True)
    env = {'python_version': python_version,
           'python_full_version': python_version + '.0',
           'implementation_name': 'cpython', 'sys_platform': 'linux',
           'platform_system': 'Linux', 'platform_machine': 'x86_64',
           'os_name': 'posix', 'extra': ''}
    target = ['--only-binary=:all:', '--implementation', 'cp',
              '--python-version', python_version]
    for plat in PLATFORMS:
        target += ['--platform', plat]
    have = {}  # normalised name -> (version, wheel path)
    todo = BUILD_TOOLS + MM_PACKAGES + TEST_PACKAGES
    while todo:
        specs = {}
        for req in todo:
            r = Requirement(req)
            name = r.name.lower().replace('_', '-')
            if (r.marker and not r.marker.evaluate(env)) or \
                    name in HOST_PROVIDED or name == 'mmcv':
                continue
            if name in have and r.specifier.contains(have[name][0], True):
                continue
            specs.setdefault(name, []).append(str(r.specifier))
        if not specs:
            break
        wanted = {n: Requirement(n + ','.join(x for x in v if x))
                  for n, v in specs.items()}
        run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-d',
             dest, *target, *map(str, wanted.values())], 'fill wheelhouse',
            'Check network access to PyPI and that every package has a '
            f'wheel for Python {python_version} on x86-64 Linux.')
        todo = []
        for fname in sorted(os.listdir(dest)):
            if not fname.endswith('.whl'):
                continue
            name, version = parse_wheel_filename(fname)[:2]
            name = str(name)
            if name not in wanted or not wanted[name].specifier.contains(
                    version, True) or (name in have
                                       and have[name][0] >= version):
                continue
            if name in have:  # a newer spec replaced an earlier choice
                os.remove(have[name][1])
            have[name] = (version, osp.join(dest, fname))
            todo += _wheel_requires(osp.join(dest, fname))
    if not glob.glob(osp.join(dest, f'mmcv-{MMCV_VERSION}.tar.gz')):
        fetch_sdist('mmcv', MMCV_VERSION, dest)
    size = sum(osp.getsize(osp.join(dest, f)) for f in os.listdir(dest))
    if size > WHEELHOUSE_MB * 2**20:
        raise StepError(f'the wheelhouse {dest} holds {size / 2**20:.1f} MB '
                        f'(> {WHEELHOUSE_MB} MB): a dependency brought a '
                        'large package; add it to HOST_PROVIDED.')
    return (f'{len(have)} wheels for Python {python_version} + the mmcv '
            f'{MMCV_VERSION} source, {size / 2**20:.1f} MB in {dest}')


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
    parser.add_argument(
        '--wheelhouse', metavar='DIR',
        help='install offline from DIR (see --fill-wheelhouse), keeping the '
        'installed torch; pip never reaches for an index')
    parser.add_argument(
        '--fill-wheelhouse', metavar='DIR',
        help='download what --wheelhouse installs into DIR, then stop')
    parser.add_argument(
        '--python-version', default='%d.%d' % sys.version_info[:2],
        help='the Python of the offline host (--fill-wheelhouse)')
    args = parser.parse_args()
    start = time.time()
    if args.fill_wheelhouse:
        try:
            print(fill_wheelhouse(args.fill_wheelhouse, args.python_version))
        except StepError as e:
            print(f'FAILED\n{e}')
            return 1
        print(f'done in {time.time() - start:.0f}s')
        return 0
    if args.wheelhouse:
        OFFLINE['dir'] = osp.abspath(args.wheelhouse)
        # nothing below may reach an index, pip's build steps included
        os.environ['PIP_NO_INDEX'] = '1'
        os.environ['PIP_FIND_LINKS'] = OFFLINE['dir']
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
