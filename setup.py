# Copyright (c) mdeq_mm authors. All rights reserved.
"""Setup script of mdeq_mm in the OpenMMLab style.

Requirements are parsed from ``requirements/*.txt``. torch is deliberately
not pinned: users bring the build that matches their CUDA.
"""
import os
import os.path as osp
import re
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def readme():
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join(HERE, 'mdeq_mm', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname, with_version=True):
    """Parse a requirements file, following ``-r`` includes.

    Args:
        fname (str): path relative to the repository root.
        with_version (bool): keep the version specifiers.

    Returns:
        list[str]: requirement strings such as ``'mmengine==0.10.7'``.
    """
    reqs = []
    with open(osp.join(HERE, fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                target = osp.join(osp.dirname(fname), line.split(' ', 1)[1])
                reqs += parse_requirements(target, with_version)
            elif line.startswith('-'):
                continue  # pip options such as --find-links
            elif with_version:
                reqs.append(line)
            else:
                reqs.append(re.split(r'[<>=!~;\[ ]', line, 1)[0])
    return reqs


def add_mim_extension():
    """Put ``configs/``, ``tools/``, ``requirements/`` and
    ``model-index.yml`` under ``mdeq_mm/.mim/`` as mmsegmentation and
    mmpretrain do: copied when a wheel or sdist is built, linked for an
    editable install, so that an installed package finds its configs
    (:func:`mdeq_mm.apis.config_path`), its tools their version pins and
    MIM its model index."""
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim = osp.join(HERE, 'mdeq_mm', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('configs', 'tools', 'requirements', 'model-index.yml'):
        src, dst = osp.join(HERE, name), osp.join(mim, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    tests = parse_requirements('requirements/tests.txt')
    optional = parse_requirements('requirements/optional.txt')
    deploy = parse_requirements('requirements/deploy.txt')
    mim = parse_requirements('requirements/mminstall.txt')
    setup(
        name='mdeq_mm',
        version=get_version(),
        description='Multiscale Deep Equilibrium Models for OpenMMLab '
        '(mmsegmentation and mmpretrain)',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='deep equilibrium models, implicit layers, segmentation, '
        'classification, openmmlab',
        packages=find_packages(exclude=('configs', 'configs.*', 'tools',
                                        'tools.*', 'demo', 'tests',
                                        'tests.*')),
        include_package_data=True,
        python_requires='>=3.8',
        classifiers=[
            'License :: OSI Approved :: Apache Software License',
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        license='Apache License 2.0',
        install_requires=parse_requirements('requirements/runtime.txt') + mim,
        extras_require={
            'tests': tests,
            'optional': optional,
            'deploy': deploy,
            'mim': mim,
            'all': tests + optional + deploy,
        },
        zip_safe=False)
