# Copyright (c) mdeq_mm authors. All rights reserved.
"""The OpenMMLab stack itself works here (not the plugin): imports, stock
models forward/backward, checkpoint resume under torch >= 2.6, and the
environment check."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

from .helpers import cls_batch, seg_batch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_openmmlab_models_and_compiled_ops_import():
    import mmcv.ops
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401
    # a compiled CPU op actually runs
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.]])
    _, keep = mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


def _one_sgd_step_lowers_loss(model, data):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        loss = sum(v for k, v in model(**data, mode='loss').items()
                   if 'loss' in k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_stock_mmseg_fcn_trains_on_cpu():
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(
            ConfigDict(
                type='EncoderDecoder',
                data_preprocessor=dict(
                    type='SegDataPreProcessor',
                    mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375],
                    size=(32, 32)),
                backbone=dict(
                    type='ResNetV1c', depth=18, num_stages=2,
                    out_indices=(1, ), strides=(1, 2), dilations=(1, 1),
                    norm_cfg=dict(type='BN')),
                decode_head=dict(
                    type='FCNHead', in_channels=128, channels=16,
                    num_convs=1, num_classes=3, norm_cfg=dict(type='BN')),
                train_cfg=dict(),
                test_cfg=dict(mode='whole')))
        data = model.data_preprocessor(seg_batch(2, 32, 32), True)
        losses = _one_sgd_step_lowers_loss(model, data)
        assert losses[1] < losses[0]
        model.eval()
        with torch.no_grad():
            pred = model(**data, mode='predict')
        assert pred[0].pred_sem_seg.data.shape == (1, 32, 32)


def test_stock_mmpretrain_classifier_trains_on_cpu():
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(type='ResNet', depth=18, num_stages=1,
                              strides=(1, ), dilations=(1, ),
                              out_indices=(0, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=3,
                          in_channels=64)))
        data = cls_batch(4, 32, 3)
        losses = _one_sgd_step_lowers_loss(model, data)
        assert losses[1] < losses[0]


class ToyModel(nn.Module):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=(out - labels).pow(2).mean())
        return out


def _toy_runner(work_dir, max_iters, **kw):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):

        def __init__(self, init_cfg=None):
            super().__init__(init_cfg=init_cfg)
            self.backbone = ToyModel()

        def forward(self, inputs, labels, mode='tensor'):
            return self.backbone(inputs, labels, mode)

    g = torch.Generator().manual_seed(0)
    data = [
        dict(inputs=torch.randn(2, generator=g),
             labels=torch.randn(1, generator=g)) for _ in range(8)
    ]
    return Runner(
        model=Toy(init_cfg=kw.pop('init_cfg', None)),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        default_scope='mmengine',
        log_level='WARNING',
        experiment_name=f'toy_{osp.basename(work_dir)}_{max_iters}_'
        f'{len(os.listdir(work_dir))}',
        **kw)


def test_full_runner_checkpoint_resumes_and_loads(tmp_path):
    """torch >= 2.6 refuses mmengine's full checkpoints by default; importing
    mdeq_mm allow-lists their contents (weights_only stays on)."""
    import mdeq_mm  # noqa: F401
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
    work = str(tmp_path)
    torch.manual_seed(0)
    straight = _toy_runner(work, 4)
    straight.train()
    ckpt = osp.join(work, 'iter_2.pth')
    full = torch.load(ckpt, weights_only=True)  # the real default
    assert {'message_hub', 'optimizer', 'state_dict'} <= set(full)
    # resume from iteration 2 and finish: same weights as straight through
    resumed = _toy_runner(work, 4, resume=True, load_from=ckpt)
    resumed.train()
    assert resumed.iter == 4
    for a, b in zip(straight.model.parameters(),
                    resumed.model.parameters()):
        torch.testing.assert_close(a, b)
    # Pretrained init with a prefix, from the same full checkpoint
    state = _load_checkpoint_with_prefix('backbone.', ckpt)
    torch.testing.assert_close(state['linear.weight'],
                               full['state_dict']['backbone.linear.weight'])
    runner = _toy_runner(work, 0, init_cfg=dict(
        type='Pretrained', checkpoint=ckpt))
    runner.model.init_weights()
    torch.testing.assert_close(runner.model.backbone.linear.weight,
                               full['state_dict']['backbone.linear.weight'])


def test_published_checkpoint_has_only_weights_and_meta(tmp_path):
    from mdeq_mm.engine import publish_checkpoint
    work = str(tmp_path)
    _toy_runner(work, 2).train()
    out = publish_checkpoint(osp.join(work, 'iter_2.pth'))
    # loads with a fresh safe-globals list: nothing but tensors and plain
    # types inside
    code = ('import torch, sys; c = torch.load(sys.argv[1], '
            'weights_only=True); print(sorted(c))')
    res = subprocess.run([sys.executable, '-c', code, out],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['meta', 'state_dict']"


def _check_env(extra_path=None):
    env = dict(os.environ)
    if extra_path:
        env['PYTHONPATH'] = extra_path + os.pathsep + env.get(
            'PYTHONPATH', '')
    return subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'check_env.py')],
        capture_output=True, text=True, env=env)


def test_environment_check_passes_here():
    res = _check_env()
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'all requirements met' in res.stdout
    for name in ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmseg',
                 'mmpretrain', 'CUDA'):
        assert name in res.stdout


def test_environment_check_fails_on_a_broken_package(tmp_path):
    """Simulate a broken mmpretrain: a shadowing package that fails to
    import."""
    pkg = tmp_path / 'mmpretrain'
    pkg.mkdir()
    (pkg / '__init__.py').write_text(
        "raise ImportError('simulated broken install')\n")
    res = _check_env(str(tmp_path))
    assert res.returncode == 1
    assert 'UNMET: mmpretrain' in res.stdout
    assert 'simulated broken install' in res.stdout
    assert 'fix: pip install "mmpretrain==1.2.0"' in res.stdout


def test_environment_check_reports_wrong_versions(capsys):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import check_env
    finally:
        sys.path.pop(0)
    reqs = [r for r in check_env.requirements() if r[0] != 'mmengine']
    reqs.append(('mmengine', 'mmengine', 'mmengine', '==0.9.0',
                 'pip install mmengine==0.10.7'))
    reqs.append(('nonexistent', 'no-such-dist-xyz', None, '', 'install it'))
    assert check_env.main(reqs) == 2
    out = capsys.readouterr().out
    assert 'version 0.10.7 does not satisfy ==0.9.0' in out
    assert 'UNMET: nonexistent: not installed' in out


def test_checkpoint_allowlist_does_not_open_getattr():
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer

    from mdeq_mm.engine.checkpoint import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        _history_buffer_getattr(os, 'system')
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        _history_buffer_getattr(HistoryBuffer, '__init__')


def test_mmcv_wheel_cache_is_keyed_by_torch_python_cuda(monkeypatch,
                                                        tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import setup_env
    finally:
        sys.path.pop(0)
    monkeypatch.setenv('MDEQ_MM_CACHE', str(tmp_path))
    a = setup_env.wheel_dir('2.14.1+cu130', '3.11', 'cpu')
    assert a.startswith(str(tmp_path))
    assert 'mmcv-2.1.0' in a and 'torch-2.14.1+cu130' in a
    others = {setup_env.wheel_dir('2.13.0+cpu', '3.11', 'cpu'),
              setup_env.wheel_dir('2.14.1+cu130', '3.12', 'cpu'),
              setup_env.wheel_dir('2.14.1+cu130', '3.11', '13.0')}
    assert a not in others and len(others) == 3
    # the installed mmcv has working ops here, so setup leaves it alone
    ok, version = setup_env.mmcv_ops_ok()
    assert ok and version == '2.1.0'
