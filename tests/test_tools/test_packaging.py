# Copyright (c) mdeq_mm authors. All rights reserved.
"""The wheel installs like an OpenMMLab package: only ``mdeq_mm`` at top
level, configs and tools under ``mdeq_mm/.mim/``; outside the checkout the
flagship config builds from the package and the packaged converter runs."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from tests.test_converters.test_locuslab import KEYS, original_state

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('pkg')
    src = tmp / 'src'  # a copy: building writes mdeq_mm/.mim into the tree
    files = subprocess.run(['git', 'ls-files', '--cached', '--others',
                            '--exclude-standard'], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if osp.isfile(osp.join(ROOT, name)):
            os.makedirs(osp.dirname(src / name), exist_ok=True)
            shutil.copy2(osp.join(ROOT, name), src / name)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                    '--no-build-isolation', '-w', str(tmp / 'wheels'),
                    str(src)], check=True, capture_output=True)
    wheel = next((tmp / 'wheels').glob('mdeq_mm-*.whl'))
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps',
                    '--target', str(tmp / 'site'), str(wheel)], check=True,
                   capture_output=True)
    return wheel, tmp / 'site'


def run_outside(site, code_or_args, cwd):
    env = dict(os.environ, PYTHONPATH=str(site))
    args = ['-c', code_or_args] if isinstance(code_or_args, str) else \
        code_or_args
    res = subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def test_wheel_holds_one_package_and_the_mim_files(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split('/')[0] for n in names}
    assert {t for t in top if not t.endswith('.dist-info')} == {'mdeq_mm'}
    assert 'mdeq_mm/.mim/configs/mdeq_cityscapes.py' in names
    assert 'mdeq_mm/.mim/configs/_base_/models/mdeq-small_seg.py' in names
    assert 'mdeq_mm/.mim/tools/train.py' in names
    assert 'mdeq_mm/.mim/tools/deployment/pytorch2onnx.py' in names
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]


def test_model_index_resolves_inside_the_installed_package(installed):
    """What `mim search mdeq_mm` reads (openmim is not a dependency; with a
    wheel install it lists these models): the index's imports and every
    model's config exist under the installed package's .mim/."""
    import yaml
    _, site = installed
    mim = site / 'mdeq_mm' / '.mim'
    with open(mim / 'model-index.yml') as f:
        imports = yaml.safe_load(f)['Import']
    models = []
    for rel in imports:
        with open(mim / rel) as f:
            meta = yaml.safe_load(f)
        models += meta['Models']
    assert len(models) >= 6
    for model in models:
        assert (mim / model['Config']).is_file(), model['Config']
        assert model['In Collection'] in {c['Name']
                                          for c in meta['Collections']}
        # a fast twin is a recipe: it claims no result
        assert model.get('Results') or '-fast_' in model['Config'], \
            model['Name']


def test_flagship_builds_from_the_installed_package(installed, tmp_path):
    _, site = installed
    out = run_outside(site, (
        'import mdeq_mm\n'
        'from mdeq_mm.apis import config_path\n'
        'from mmengine.config import Config\n'
        'from mmengine.registry import DefaultScope\n'
        'from mmseg.registry import MODELS\n'
        "path = config_path('configs/mdeq_cityscapes.py')\n"
        'cfg = Config.fromfile(path)\n'
        "with DefaultScope.overwrite_default_scope('mmseg'):\n"
        '    model = MODELS.build(cfg.model)\n'
        'print(mdeq_mm.__file__)\nprint(path)\n'
        'print(sum(p.numel() for p in model.parameters()))\n'), tmp_path)
    pkg_file, path, params = out.split()
    assert pkg_file.startswith(str(site)) and path.startswith(str(site))
    assert int(params) == 8_968_467


def test_packaged_converter_runs_outside_the_checkout(installed, tmp_path):
    _, site = installed
    src = tmp_path / 'tiny.pth'
    torch.save(original_state(osp.join(KEYS,
                                       'keys_cifar_cls_mdeq_TINY.yaml.txt')),
               src)
    out = run_outside(site, ['-m', 'mdeq_mm.converters', 'cls', str(src),
                             str(tmp_path / 'out.pth')], tmp_path)
    assert 'wrote' in out and (tmp_path / 'out.pth').is_file()


def test_packaged_tools_run_from_the_package(installed, tmp_path):
    _, site = installed
    train = site / 'mdeq_mm' / '.mim' / 'tools' / 'train.py'
    out = run_outside(site, [str(train), '--help'], tmp_path)
    assert '--resume' in out and '--max-bad-steps' in out
