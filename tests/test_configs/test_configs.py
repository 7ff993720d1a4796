# Copyright (c) mdeq_mm authors. All rights reserved.
"""Every config in configs/ parses and builds its model."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mdeq_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                       recursive=True) if '_base_' not in p)


# parameter counts of the reference models (locuslab/mdeq)
PARAMS = {
    'mdeq-tiny_2xb64_cifar10.py': 158_986,
    'mdeq-large_4xb32_cifar10.py': 11_098_398,
    'mdeq-small_4xb32_in1k.py': 16_808_936,
    'mdeq-large_4xb28_in1k.py': 67_063_624,
    'mdeq-xl_8xb24_in1k.py': 90_463_280,
    'mdeq-small_4xb3-124k_cityscapes-512x1024.py': 8_968_467,
    'mdeq-large_4xb3-124k_cityscapes-512x1024.py': 55_955_859,
    'mdeq-xl_8xb2-93k_cityscapes-768x1024.py': 79_551_755,
}
# the paper configs and their fast twins (the same model, data and schedule)
TWINS = {
    name.replace('tiny_', 'tiny-fast_').replace('small_', 'small-fast_')
    .replace('large_', 'large-fast_').replace('xl_', 'xl-fast_'): name
    for name in list(PARAMS) +
    ['mdeq-small_in1k-pre_4xb3-124k_cityscapes-512x1024.py']
}
PARAMS.update({twin: PARAMS[name] for twin, name in TWINS.items()
               if name in PARAMS})


def test_there_are_configs_for_every_task():
    names = ' '.join(CONFIGS)
    for part in ('mdeq_cityscapes.py', 'cityscapes-512x1024', 'in1k',
                 'cifar10', 'in1k-pre', 'demo_cls', 'demo_seg_frozen',
                 'ablations/scales-4.py', 'ablations/inject-all.py',
                 'ablations/unrolled-8.py'):
        assert part in names, part


@pytest.mark.parametrize('path', CONFIGS)
def test_config_parses_and_builds(path):
    cfg = Config.fromfile(osp.join(ROOT, path))
    scope = cfg.get('default_scope')
    assert scope in ('mmseg', 'mmpretrain'), path
    assert 'mdeq_mm' in cfg.custom_imports['imports']
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    if path.endswith('speed/hrnet-w18.py'):  # the speed comparison's peer
        assert type(model.backbone).__name__ == 'HRNet'
        return
    assert type(model.backbone).__name__ == 'MDEQ'
    expected = PARAMS.get(osp.basename(path))
    if expected is not None:
        assert sum(p.numel() for p in model.parameters()) == expected
    if 'from-hr18' in path or 'unrolled-' in path or '/swap/' in path:
        return  # stock configs swapped bare; the no-solver ablations
    hooks = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert 'DEQWarmupHook' in hooks and 'DEQTelemetryHook' in hooks


@pytest.mark.parametrize('twin', sorted(TWINS))
def test_every_paper_config_has_a_fast_twin_that_changes_only_the_recipe(
        twin):
    fast = Config.fromfile(osp.join(ROOT, 'configs/mdeq', twin))
    paper = Config.fromfile(osp.join(ROOT, 'configs/mdeq', TWINS[twin]))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'train_cfg', 'param_scheduler', 'optim_wrapper',
                'custom_hooks', 'default_hooks', 'load_from'):
        assert fast.get(key) == paper.get(key), (twin, key)
    a, b = fast.model.to_dict(), paper.model.to_dict()
    assert a['type'] in ('DEQEncoderDecoder', 'DEQImageClassifier')
    for name in ('type', 'backbone'):
        a.pop(name), b.pop(name)
    assert a == b  # heads, necks, preprocessing
    a, b = fast.model.backbone, paper.model.backbone
    changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert changed == {'jac_loss', 'solver_cfg', 'grad_cfg'}, changed
    assert a.jac_loss.weight > 0
    # fewer f evaluations forward and backward, the rest of each solve kept
    for key in ('solver_cfg', 'grad_cfg'):
        fa = a[key] if key == 'solver_cfg' else a[key].solver_cfg
        fb = b[key] if key == 'solver_cfg' else b[key].solver_cfg
        assert fa.max_iter <= fb.max_iter // 2 + 1, (twin, key)
        assert fa.get('stop_mode') == fb.get('stop_mode')


def test_model_index_names_existing_configs_with_reported_results():
    import yaml
    index = yaml.safe_load(open(osp.join(ROOT, 'model-index.yml')))
    models = []
    for meta in index['Import']:
        models += yaml.safe_load(open(osp.join(ROOT, meta)))['Models']
    assert len(models) >= 7
    for m in models:
        assert osp.isfile(osp.join(ROOT, m['Config'])), m['Config']
        assert 'not reproduced' in m['Metadata']['Results Source']
        if '-fast_' in m['Config']:  # a recipe: no result claimed
            assert 'Results' not in m and 'recipe' in m['Metadata'][
                'Results Source']
        expected = PARAMS.get(osp.basename(m['Config']))
        assert m['Metadata']['Parameters'] == expected, m['Name']
