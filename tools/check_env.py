# Copyright (c) mdeq_mm authors. All rights reserved.
"""Print the mdeq_mm stack's versions and check every requirement.

Exits 0 when all requirements are met, 1 otherwise; each unmet requirement
is printed with its fix. Uses only the standard library plus the packages it
inspects, so it works (and reports) in a broken environment.

Usage:
    python tools/check_env.py
"""
import importlib
import importlib.metadata as metadata
import platform
import sys

SETUP = 'python tools/setup_env.py'

# (display name, distribution, module, requirement, fix)
REQUIREMENTS = [
    ('torch', 'torch', 'torch', '>=2.0', f'{SETUP} (installs 2.14.1)'),
    ('torchvision', 'torchvision', 'torchvision', '>=0.15',
     f'{SETUP} (installs 0.29.1, matching torch 2.14.1)'),
    ('mmcv', 'mmcv', 'mmcv', '>=2.0.0rc4,<2.2.0',
     f'{SETUP} (builds mmcv 2.1.0 with compiled ops); mmcv-lite cannot '
     'serve: mmseg imports mmcv.ops'),
    ('mmengine', 'mmengine', 'mmengine', '==0.10.7',
     'pip install mmengine==0.10.7'),
    ('mmseg', 'mmsegmentation', 'mmseg', '==1.2.2',
     'pip install mmsegmentation==1.2.2'),
    ('mmpretrain', 'mmpretrain', 'mmpretrain', '==1.2.0',
     'pip install mmpretrain==1.2.0'),
    ('setuptools', 'setuptools', None, '>=77,<82',
     'pip install "setuptools>=77,<82" (mmengine 0.10.7 imports '
     'pkg_resources, removed in setuptools 82)'),
    ('opencv-python', 'opencv-python', 'cv2', '', 'pip install opencv-python'),
    ('ftfy', 'ftfy', 'ftfy', '', 'pip install ftfy'),
    ('regex', 'regex', 'regex', '', 'pip install regex'),
    ('onnx', 'onnx', 'onnx', '>=1.16',
     'pip install "onnx>=1.16" (ONNX export, tools/deployment)'),
    ('onnxruntime', 'onnxruntime', 'onnxruntime', '>=1.17',
     'pip install "onnxruntime>=1.17" (tools/deployment --verify)'),
]


def _specifier_contains(spec, version):
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # pragma: no cover
        from pip._vendor.packaging.specifiers import SpecifierSet
    return SpecifierSet(spec).contains(version, prereleases=True)


def check_one(dist, module, spec):
    """Check one requirement.

    Returns:
        tuple[str | None, str | None]: (installed version, problem or None).
    """
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None, 'not installed'
    if spec and not _specifier_contains(spec, version):
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
             'torch==2.14.1 with torchvision==0.29.1'))
    return problems


def main(requirements=REQUIREMENTS):
    """Print the report; return the number of unmet requirements."""
    print(f'Python         {sys.version.split()[0]} ({platform.platform()})')
    problems = []
    for name, dist, module, spec, fix in requirements:
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
    sys.exit(1 if main() else 0)
