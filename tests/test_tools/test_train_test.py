# Copyright (c) mdeq_mm authors. All rights reserved.
"""tools/train.py and tools/test.py end to end with real Runners on
generated data (CPU): segmentation, classification, transfer, resume."""
import glob
import json
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = 'configs/demo/mdeq-demo_seg.py'
CLS = 'configs/demo/mdeq-demo_cls.py'


def tool(name, *args):
    return run_tool(name, *args)


def seg_opts(root, iters=4, warmup=2, extra=()):
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters // 2}',
        'default_hooks.logger.interval=1',
        f'custom_hooks.0.warmup_iters={warmup}',
        'model.backbone.solver_cfg.max_iter=3',
        'model.backbone.grad_cfg.solver_cfg.max_iter=3', *extra
    ]


@pytest.fixture(scope='module')
def data(cityscapes, imagenet):
    return dict(city=cityscapes, imnet=imagenet)


@pytest.fixture(scope='module')
def cls_run(data, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('cls'))
    out = tool('train', CLS, '--work-dir', work, '--cfg-options',
               f'train_dataloader.dataset.data_root={data["imnet"]}',
               f'val_dataloader.dataset.data_root={data["imnet"]}',
               'train_dataloader.batch_size=4', 'train_cfg.max_iters=4',
               'train_cfg.val_interval=4',
               'default_hooks.checkpoint.interval=4',
               'custom_hooks.0.warmup_iters=2',
               # with Jacobian regularisation on every forward
               'model.type=DEQImageClassifier',
               'model.backbone.jac_loss.weight=0.1',
               'model.backbone.jac_loss.freq=1.0',
               'default_hooks.logger.interval=1',
               'custom_hooks.1.interval=1')
    return work, out


def test_classification_trains_and_validates(cls_run):
    work, out = cls_run
    assert 'switches from unrolled to implicit' in out
    assert 'accuracy/top1' in out
    # the Jacobian loss is part of the logged losses, its estimate of the
    # telemetry, in the unrolled warm-up and after it
    logged = [line for line in out.splitlines() if 'Iter(train)' in line]
    assert len(logged) == 4
    assert all('loss_jac:' in line and 'deq/jac_frobenius:' in line
               for line in logged)
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    stats = json.load(open(osp.join(work, 'run_stats.json')))
    assert stats['iters'] == 4 and stats['peak_mem_mb'] > 0


def test_segmentation_train_validate_test_with_prediction_pngs(data,
                                                               tmp_path):
    work = str(tmp_path / 'seg')
    out = tool('train', SEG, '--work-dir', work, *seg_opts(data['city']))
    assert 'mIoU' in out
    assert 'deq/fwd_rel_residual' in out  # telemetry reaches the logger
    ckpt = osp.join(work, 'iter_4.pth')
    pred = str(tmp_path / 'pred')
    out = tool('test', SEG, ckpt, '--work-dir', work, '--out', pred,
               *seg_opts(data['city']))
    # the test run reports its solves too
    assert re.search(r'Iter\(test\).*deq/fwd_rel_residual', out)
    pngs = sorted(glob.glob(osp.join(pred, '*.png')))
    assert len(pngs) == 3
    arr = cv2.imread(pngs[0], cv2.IMREAD_GRAYSCALE)
    assert arr.shape == (64, 128)
    assert set(np.unique(arr)) <= set(range(19))
    # the analysis tools on the same checkpoint
    opts = seg_opts(data['city'])
    out = tool('analysis/budget_curve', SEG, ckpt, '--budgets', '1', '3',
               '--work-dir', str(tmp_path / 'budget'), '--out',
               str(tmp_path / 'budget.png'), *opts)
    rows = json.load(open(tmp_path / 'budget.json'))
    assert [r['budget'] for r in rows] == [1, 3]
    assert all(0 <= r['value'] <= 100 for r in rows)
    # one evaluation leaves the residual of z0 = 0 plus one f: the larger
    # budget must reach a lower residual
    assert rows[1]['rel_residual'] < rows[0]['rel_residual']
    tool('analysis/convergence', SEG, ckpt, '--budget', '5', '--images', '1',
         '--broyden-history', '2', '--out',
         str(tmp_path / 'new_dir' / 'conv.png'), *opts)
    conv = json.load(open(tmp_path / 'new_dir' / 'conv.json'))
    assert set(conv) == {'broyden', 'anderson', 'fixed_point',
                         'broyden (history 2)'}
    fwd = conv['broyden']['forward']
    assert len(fwd['overall']) == 5 and len(fwd['scales']) == 4
    assert fwd['overall'][-1] < fwd['overall'][0]
    # a memory of 2 steps restarts after z2: the same iterates up to there,
    # then a fixed-point step instead of a Broyden step
    short = conv['broyden (history 2)']['forward']['overall']
    assert short[:3] == pytest.approx(fwd['overall'][:3], rel=1e-5)
    assert short[3] != pytest.approx(fwd['overall'][3], rel=1e-3)
    assert osp.isfile(tmp_path / 'new_dir' / 'conv.png')
    rows = tool('analysis/compare_transfer', work, '--names', 'seg')
    assert '| seg |' in rows


def test_transfer_init_copies_backbone_key_by_key(cls_run):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    work, _ = cls_run
    ckpt = osp.join(work, 'iter_4.pth')
    cfg = Config.fromfile(osp.join(ROOT,
                                   'configs/demo/mdeq-demo_seg_finetune.py'))
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    own = model.backbone.state_dict()
    assert set(backbone) == set(own)
    for key, value in backbone.items():
        assert torch.equal(own[key], value), key


def _final_weights(work):
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu')
    return ckpt['state_dict']


def test_resume_gives_identical_weights(data, tmp_path):
    det = ['randomness.seed=0', 'randomness.deterministic=True']
    straight = str(tmp_path / 'straight')
    tool('train', SEG, '--work-dir', straight,
         *seg_opts(data['city'], extra=det))
    # interrupted after 2 iterations (same schedule), then resumed
    broken = str(tmp_path / 'broken')
    tool('train', SEG, '--work-dir', broken,
         *seg_opts(data['city'], extra=det + ['train_cfg.max_iters=2']))
    assert osp.isfile(osp.join(broken, 'iter_2.pth'))
    out = tool('train', SEG, '--work-dir', broken, '--resume',
               *seg_opts(data['city'], extra=det))
    assert 'resumed' in out.lower()
    a, b = _final_weights(straight), _final_weights(broken)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6,
                                   msg=key)


def test_missing_dataset_gives_the_layout_and_fix(tmp_path):
    out, rc = run_tool('train', SEG, '--cfg-options',
                       f'train_dataloader.dataset.data_root={tmp_path}/none',
                       ok=False)
    assert rc != 0
    assert 'Dataset error' in out
    assert 'tools/dataset_converters/cityscapes.py' in out


def test_ablation_group_table(data, tmp_path):
    """``tools/ablate.py jacobian`` on 2-iteration runs: one row per
    variant, with the residual the test-time solve reached."""
    work = str(tmp_path / 'abl')
    out = tool('ablate', 'jacobian', '--work-dir', work, '--data-root',
               data['city'], '--cfg-options', 'train_cfg.max_iters=2',
               'train_cfg.val_interval=2',
               'default_hooks.checkpoint.interval=2',
               'custom_hooks.0.warmup_iters=1',
               'train_dataloader.batch_size=2',
               'default_hooks.logger.interval=1',
               'model.backbone.solver_cfg.max_iter=3',
               'model.backbone.grad_cfg.solver_cfg.max_iter=3')
    rows = json.load(open(osp.join(work, 'jacobian.json')))
    assert [r['name'] for r in rows] == [
        'no regularisation', 'Jacobian loss 0.1', 'Jacobian loss 1.0']
    assert all(0 < r['rel_residual'] < 10 and 1 < r['nfev'] <= 4
               for r in rows)
    assert '| Jacobian loss 1.0 |' in out and 'rel. residual' in out
    # the regularised runs trained the DEQ segmentor with a Jacobian loss
    dumped = open(osp.join(work, 'jacobian-1', 'jacobian-1.py')).read()
    assert "type='DEQEncoderDecoder'" in dumped and 'jac_loss' in dumped


def test_tta_for_both_tasks(cls_run, data, tmp_path):
    """``tools/test.py --tta``: mmpretrain's flip TTA for classification,
    the config's multi-scale + flip TTA for segmentation (the flagship)."""
    work, _ = cls_run
    out = tool('test', CLS, osp.join(work, 'iter_4.pth'), '--tta',
               '--work-dir', str(tmp_path / 'cls'), '--cfg-options',
               f'test_dataloader.dataset.data_root={data["imnet"]}')
    assert 'accuracy/top1' in out
    dumped = open(tmp_path / 'cls' / 'mdeq-demo_cls.py').read()
    assert 'AverageClsScoreTTA' in dumped and 'TestTimeAug' in dumped
    flagship = 'configs/mdeq_cityscapes.py'
    seg_work = str(tmp_path / 'seg')
    tool('train', flagship, '--work-dir', seg_work, '--cfg-options',
         f'train_dataloader.dataset.data_root={data["city"]}',
         'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
         'train_dataloader.dataset.pipeline.2.scale=(128,64)',
         'train_dataloader.dataset.pipeline.3.crop_size=(64,128)',
         'model.data_preprocessor.size=(64,128)', 'train_cfg.max_iters=1',
         'default_hooks.checkpoint.interval=1',
         'model.backbone.solver_cfg.max_iter=2', '--no-validate')
    out = tool('test', flagship, osp.join(seg_work, 'iter_1.pth'), '--tta',
               '--work-dir', seg_work, '--cfg-options',
               f'test_dataloader.dataset.data_root={data["city"]}',
               'test_dataloader.num_workers=0',
               'model.backbone.solver_cfg.max_iter=2')
    assert 'mIoU' in out
    dumped = open(osp.join(seg_work, 'mdeq_cityscapes.py')).read()
    assert 'SegTTAModel' in dumped


def test_compiled_training_with_shine_and_fixed_point_correction(
        data, tmp_path):
    """mmengine's ``compile`` (torch.compile of train_step; dynamo + AOT
    autograd with the eager backend here, inductor's C++ build would take
    minutes on CPU) trains the implicit model with the SHINE backward and
    the fixed-point correction: the solve runs eagerly inside the compiled
    step, the correction's losses are logged and every loss is finite."""
    work = str(tmp_path)
    tool('train', SEG, '--work-dir', work, *seg_opts(
        data['city'], iters=4, warmup=2, extra=(
            'compile.backend=aot_eager',
            'model.backbone.grad_cfg.init=shine',
            'model.backbone.fp_correction.n_states=2')))
    logs = [json.loads(line) for line in open(glob.glob(
        osp.join(work, '*', 'vis_data', 'scalars.json'))[0])]
    implicit = [e for e in logs if e.get('step', 0) > 2 and 'loss' in e]
    assert implicit, logs
    for e in implicit:
        assert 'fpc0.decode.loss_ce' in e
        assert all(np.isfinite(v) for k, v in e.items() if 'loss' in k)
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
