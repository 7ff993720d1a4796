# Copyright (c) mdeq_mm authors. All rights reserved.
"""Print the mdeq_mm stack's versions and check every requirement.

Exits 0 when all requirements are met, 1 otherwise; each unmet requirement
is printed with its fix. Uses only the standard library plus the packages it
inspects, so it works (and reports) in a broken environment.

Usage:
    python tools/check_env.py
"""
import functools
import importlib
import importlib.metadata as metadata
import os.path as osp
import platform
import re
import sys

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare environment: pip's copy
    from pip._vendor.packaging.requirements import Requirement

SETUP = 'python tools/setup_env.py'
HERE = osp.dirname(osp.abspath(__file__))
# a checkout's requirements/, or the installed package's .mim/requirements
REQUIREMENTS_DIR = osp.join(osp.dirname(HERE), 'requirements')


def read_requirements(name: str) -> list:
    """The requirement strings of ``requirements/<name>`` (following
    ``-r`` includes; comments and pip options dropped). requirements/ is
    the one source of the project's versions."""
    reqs = []
    with open(osp.join(REQUIREMENTS_DIR, name)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line.startswith('-r '):
                reqs += read_requirements(line.split(None, 1)[1])
            elif line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def split_requirement(req: str) -> tuple:
    """``'mmengine==0.10.7'`` -> ``('mmengine', '==0.10.7')``."""
    name = re.split(r'[<>=!~;\[ ]', req, 1)[0]
    return name, req[len(name):].strip()


@functools.lru_cache(maxsize=None)
def _stack() -> dict:
    return dict(map(split_requirement, read_requirements('stack.txt')))


def pin(dist: str) -> str:
    """The exact version ``make setup`` installs (requirements/stack.txt)."""
    return _stack()[dist].lstrip('=')


# distribution -> (display name, module to import, fix); the default fix
# is pip install of the requirement
SPECIAL = {
    'torch': ('torch', 'torch', lambda r: f'{SETUP} (installs '
              f"{pin('torch')})"),
    'torchvision': ('torchvision', 'torchvision', lambda r: f'{SETUP} '
                    f"(installs {pin('torchvision')}, matching torch "
                    f"{pin('torch')})"),
    'mmcv': ('mmcv', 'mmcv', lambda r: f'{SETUP} (builds mmcv '
             f"{pin('mmcv')} with compiled ops); mmcv-lite cannot serve: "
             'mmseg imports mmcv.ops'),
    'mmsegmentation': ('mmseg', 'mmseg', None),
    'setuptools': ('setuptools', None, lambda r: f'pip install "{r}" '
                   '(mmengine 0.10.7 imports pkg_resources, removed in '
                   'setuptools 82)'),
    'opencv-python': ('opencv-python', 'cv2', None),
    'onnx': ('onnx', 'onnx', lambda r: f'pip install "{r}" (ONNX export, '
             'tools/deployment)'),
    'onnxruntime': ('onnxruntime', 'onnxruntime', lambda r: f'pip install '
                    f'"{r}" (tools/deployment --verify)'),
}
# the runtime stack, then the deployment extra (matplotlib and numpy come
# with it; the test runner is checked by running it)
CHECKED = ('torch.txt', 'mminstall.txt', 'runtime.txt', 'deploy.txt')
SKIP = ('matplotlib', 'numpy')


def requirements() -> list:
    """(display name, distribution, module, specifier, fix) of every
    checked requirement, read from requirements/."""
    rows = []
    for fname in CHECKED:
        for req in read_requirements(fname):
            dist, spec = split_requirement(req)
            if dist in SKIP or any(r[1] == dist for r in rows):
                continue
            name, module, fix = SPECIAL.get(dist, (dist, dist, None))
            rows.append((name, dist, module, spec,
                         fix(req) if fix else f'pip install "{req}"'))
    return rows


# distributions that provide another's modules: a host's headless OpenCV
# serves mmcv and mmengine, which require opencv-python
PROVIDED_BY = {
    'opencv-python': ('opencv-python-headless', 'opencv-contrib-python',
                      'opencv-contrib-python-headless')
}


def installed(dist: str) -> tuple:
    """(distribution, version) installed for ``dist``, a ``PROVIDED_BY``
    alternative counting; (None, None) when none is."""
    for name in (dist, ) + PROVIDED_BY.get(dist.lower(), ()):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None, None


def unmet(reqs, closure: bool = False) -> list:
    """The requirements of ``reqs`` that no installed distribution meets
    (as ``name + specifier``); with ``closure``, also those of the
    installed distributions' own requirements, transitively (markers
    evaluated here; extras not followed)."""
    todo, seen, out = list(reqs), set(), []
    while todo:
        r = Requirement(todo.pop(0))
        if (r.marker and not r.marker.evaluate({'extra': ''})) or \
                str(r) in seen:
            continue
        seen.add(str(r))
        dist, version = installed(r.name)
        if version is None or not r.specifier.contains(version, True):
            out.append(r.name + str(r.specifier))
        elif closure:
            todo += metadata.requires(dist) or []
    return out


def check_one(dist, module, spec):
    """Check one requirement (``PROVIDED_BY`` alternatives count).

    Returns:
        tuple[str | None, str | None]: (installed version, problem or None).
    """
    version = installed(dist)[1]
    if version is None:
        return None, 'not installed'
    if spec and not Requirement(dist + spec).specifier.contains(
            version, prereleases=True):
        return version, f'version {version} does not satisfy {spec}'
    if module:
        try:
            importlib.import_module(module)
        except Exception as e:  # a broken install raises anything
            return version, f'import {module} fails: {type(e).__name__}: {e}'
    return version, None


def extra_checks():
    """Checks beyond versions: compiled mmcv ops, torch/torchvision pair."""
    problems = []
    try:
        import mmcv.ops  # noqa: F401
    except Exception as e:
        problems.append(('mmcv ops', f'mmcv.ops does not import ({e})',
                         f'{SETUP} (mmcv must be built with compiled ops)'))
    try:
        import torch
        import torchvision  # noqa: F401
        torch.ops.torchvision.nms
    except Exception as e:
        problems.append(
            ('torch/torchvision pair', f'torchvision ops unusable ({e})',
             'install the torchvision release built for your torch, e.g. '
             f"torch=={pin('torch')} with torchvision=={pin('torchvision')}"))
    return problems


def main(reqs=None):
    """Print the report; return the number of unmet requirements."""
    print(f'Python         {sys.version.split()[0]} ({platform.platform()})')
    problems = []
    for name, dist, module, spec, fix in reqs or requirements():
        version, problem = check_one(dist, module, spec)
        state = 'OK' if problem is None else 'PROBLEM'
        print(f'{name:<14} {version or "-":<14} {spec or "any":<20} {state}')
        if problem:
            problems.append((name, problem, fix))
    if not problems:
        problems += extra_checks()
    try:
        import torch
        cuda = (f'{torch.version.cuda} (available: '
                f'{torch.cuda.is_available()})'
                if torch.version.cuda else 'none (CPU build)')
    except Exception:
        cuda = 'unknown (torch does not import)'
    print(f'CUDA           {cuda}')
    try:
        import mmcv.ops  # noqa: F401
        ops = 'compiled ops import'
    except Exception:
        ops = 'NO compiled ops'
    print(f'mmcv ops       {ops}')
    for name, problem, fix in problems:
        print(f'\nUNMET: {name}: {problem}\n  fix: {fix}')
    print('\nall requirements met' if not problems else
          f'\n{len(problems)} requirement(s) unmet')
    return len(problems)


if __name__ == '__main__':
    import argparse
    argparse.ArgumentParser(description=__doc__.split('\n')[0]).parse_args()
    sys.exit(1 if main() else 0)
