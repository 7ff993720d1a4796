# Copyright (c) mdeq_mm authors. All rights reserved.
"""tools/train_solver.py with a real Runner on Cityscapes-layout data: only
the learned solver changes; what it writes works with tools/test.py,
init_model, set_solver, warm starts and ONNX export."""
import os.path as osp

import pytest
import torch

from tests.helpers import make_contractive, run_tool

SEG = 'configs/demo/mdeq-demo_seg.py'


@pytest.fixture(scope='module')
def fitted(cityscapes, tmp_path_factory):
    """A demo segmentor (contractive f), and the tool's outputs for it."""
    from mdeq_mm.apis import find_mdeq, init_model
    model = init_model(SEG)
    make_contractive(find_mdeq(model))
    work = tmp_path_factory.mktemp('fit')
    ckpt = str(work / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = run_tool(
        'train_solver', SEG, ckpt, '--work-dir', str(work / 'neural'),
        '--iters', '4', '--steps', '3', '--reference-budget', '12',
        '--budget', '3', '--lr', '1e-2', '--cfg-options',
        f'train_dataloader.dataset.data_root={cityscapes}',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False')
    stem = osp.join(work, 'neural', 'mdeq-demo_seg_neural')
    return ckpt, stem + '.py', stem + '.pth', out


def test_only_the_learned_solver_is_fitted(fitted):
    original, _, written, out = fitted
    assert 'loss_iterates' in out and 'fitted in' in out
    before = torch.load(original)['state_dict']
    after = torch.load(written)['state_dict']
    learned = {k for k in after if '.learned_solver.' in k}
    assert learned and set(after) - learned == set(before)
    for key in before:  # no gradient reached the model: bit for bit
        assert torch.equal(before[key], after[key]), key
    # the solver moved away from its unfitted (all-zero) last layers
    moved = [k for k in learned if after[k].abs().sum() > 0 and (
        'initializer' in k or 'mixer.2' in k)]
    assert moved, sorted(learned)


def test_the_written_config_and_checkpoint_test_and_deploy(
        fitted, cityscapes, tmp_path):
    _, config, ckpt, _ = fitted
    out = run_tool(
        'test', config, ckpt, '--work-dir', str(tmp_path), '--cfg-options',
        f'test_dataloader.dataset.data_root={cityscapes}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False')
    assert 'mIoU' in out and 'deq/fwd_nfev: 3.0000' in out, out[-1500:]

    from mdeq_mm.apis import find_mdeq, init_model, set_solver
    model = init_model(config, ckpt)
    backbone = find_mdeq(model)
    assert backbone.deq.solver == 'neural'
    assert set_solver(model, 'neural', budget=2, tol=0.)[0]['budget'] == 2
    # warm starts: the second frame starts from the first one's state, not
    # from the initializer
    backbone.set_warm_start(True)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        backbone(x)
        assert backbone.last_output.start == 'cold'
        backbone(x)
        assert backbone.last_output.start == 'warm'

    pytest.importorskip('onnxruntime')
    out = run_tool('deployment/pytorch2onnx', config, ckpt, '--out',
                   str(tmp_path / 'm.onnx'), '--shape', '64', '128',
                   '--budget', '3', '--verify')
    assert 'solver neural' in out and 'FAILED' not in out, out[-1500:]


def test_the_written_config_of_a_shine_recipe_is_valid():
    # SHINE needs a Broyden forward solve: the written (evaluation) config
    # starts its backward from zero instead, and builds
    import importlib.util

    from mmengine.config import Config
    from mmseg.registry import MODELS
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        'train_solver', osp.join(root, 'tools', 'train_solver.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = Config.fromfile(osp.join(root, 'configs/speed/mdeq-small_shine.py'))
    assert cfg.model.backbone.grad_cfg.init == 'shine'
    out = tool.written_config(cfg, dict(m=5, hidden=32), budget=4)
    backbone = out.model.backbone
    assert backbone.solver == 'neural' and backbone.grad_cfg.init == 'zero'
    assert backbone.eval_solver_cfg.max_iter == 3
    assert cfg.model.backbone.solver == 'broyden'  # the input is untouched
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(out.model)
    assert model.backbone.deq.settings('eval')['budget'] == 4


def test_a_checkpoint_that_cannot_load_stops_before_the_fit(tmp_path):
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(b'PK\x03\x04 not a whole checkpoint')
    for path in (bad, tmp_path / 'missing.pth'):
        out, rc = run_tool('train_solver', SEG, str(path), '--work-dir',
                           str(tmp_path / 'w'), ok=False)
        assert rc == 1 and 'Traceback' not in out, out[-2000:]
        assert f'error: cannot load {path}' in out
    assert not (tmp_path / 'w').exists()  # nothing written


def test_a_classifier_is_fitted_and_tested_with_its_learned_solver(
        imagenet, tmp_path):
    """The same tool on an mmpretrain classifier (ImageNet layout): only
    the learned solver changes, and tools/test.py runs the written config
    at the budget it names."""
    from mdeq_mm.apis import find_mdeq, init_model
    cls = 'configs/demo/mdeq-demo_cls.py'
    model = init_model(cls)
    make_contractive(find_mdeq(model))
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)

    def loader(split):
        return [f'{split}_dataloader.num_workers=0',
                f'{split}_dataloader.persistent_workers=False',
                f'{split}_dataloader.dataset.data_root={imagenet}']

    out = run_tool('train_solver', cls, ckpt, '--work-dir',
                   str(tmp_path / 'neural'), '--iters', '2', '--steps', '2',
                   '--reference-budget', '8', '--budget', '2',
                   '--cfg-options', 'train_dataloader.batch_size=2',
                   'default_hooks.logger.interval=1', *loader('train'))
    assert 'loss_iterates' in out and 'fitted in' in out, out[-2000:]
    stem = str(tmp_path / 'neural' / 'mdeq-demo_cls_neural')
    before = torch.load(ckpt)['state_dict']
    after = torch.load(stem + '.pth')['state_dict']
    assert {k for k in after if '.learned_solver.' in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    out = run_tool('test', stem + '.py', stem + '.pth', '--work-dir',
                   str(tmp_path / 'test'), '--cfg-options', *loader('test'))
    assert 'accuracy/top1' in out and 'deq/fwd_nfev: 2.0000' in out, \
        out[-1500:]
