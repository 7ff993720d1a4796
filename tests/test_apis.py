# Copyright (c) mdeq_mm authors. All rights reserved.
"""mdeq_mm.apis: one loader of a config's model, one finder of its MDEQs,
one validated solver setter whose budget counts f evaluations."""
import os.path as osp

import pytest
import torch

from mdeq_mm.apis import (find_mdeq, find_mdeqs, init_model, set_solver,
                          solver_settings)
from mdeq_mm.models import MDEQ
from tests.helpers import make_contractive

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(ROOT, 'configs/mdeq/mdeq-tiny_2xb64_cifar10.py')


def tiny_backbone(**kw):
    torch.manual_seed(0)
    return MDEQ('tiny', solver_cfg=dict(max_iter=6, tol=1e-3,
                                        stop_mode='rel', history=4), **kw)


def counted_solve(backbone, x):
    """Evaluation forward; the number of f applications it made."""
    calls = []
    layer = backbone.deq_layer
    hook = layer.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            backbone.eval()(x)
    finally:
        hook.remove()
    return len(calls)


@pytest.mark.parametrize('solver', ['broyden', 'anderson', 'fixed_point'])
@pytest.mark.parametrize('budget', [1, 2, 7])
def test_budget_counts_f_evaluations(solver, budget):
    backbone = tiny_backbone()
    done = set_solver(backbone, solver, budget, tol=0.)
    assert done[0]['budget'] == budget
    assert done[0]['solver_cfg']['max_iter'] == budget - 1
    n = counted_solve(backbone, torch.randn(2, 3, 16, 16))
    assert n == budget  # f(z0), then one per iteration; tol=0: all run
    assert backbone.last_stats.forward.nfev.tolist() == [budget, budget]


def test_phases_are_set_separately_and_validated():
    backbone = tiny_backbone(eval_solver_cfg=dict(max_iter=3))
    set_solver(backbone, budget=10, phase='train')
    assert backbone.deq.solver_cfg['max_iter'] == 9
    assert backbone.deq.eval_solver_cfg == dict(max_iter=3)
    set_solver(backbone, budget=5, tol=1e-2)
    assert backbone.deq.eval_solver_cfg == dict(max_iter=4, tol=1e-2)
    assert backbone.deq.solver_cfg['max_iter'] == 9
    out = set_solver(backbone, 'anderson', 3, phase='both')[0]
    # options Anderson lacks (Broyden's history) are dropped in both phases
    assert backbone.deq.solver == 'anderson'
    assert backbone.deq.solver_cfg == dict(max_iter=2, tol=1e-3,
                                           stop_mode='rel')
    assert out == solver_settings(backbone)
    assert out['budget'] == 3 and out['dtype'] == 'float32'
    with pytest.raises(ValueError, match='valid solvers'):
        set_solver(backbone, 'newton')
    with pytest.raises(ValueError, match='counts f evaluations'):
        set_solver(backbone, budget=0)
    with pytest.raises(ValueError, match='phase must be one of'):
        set_solver(backbone, budget=3, phase='test')
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['f_thres'\]"):
        set_solver(backbone, options=dict(f_thres=30))
    with pytest.raises(ValueError, match='no MDEQ backbone'):
        set_solver(torch.nn.Linear(2, 2), budget=3)
    set_solver(backbone, dtype='float64')
    assert solver_settings(backbone)['dtype'] == 'float64'
    # a bad dtype rejects the whole call: the solver stays
    with pytest.raises(ValueError, match="solver_dtype must be None"):
        set_solver(backbone, 'fixed_point', dtype='float16')
    assert backbone.deq.solver == 'anderson'


def test_the_backward_solve_is_set_through_the_same_owner():
    backbone = tiny_backbone()
    out = set_solver(backbone, 'anderson', 5, tol=0., phase='backward')[0]
    assert out['solver'] == 'anderson' and out['budget'] == 5
    assert backbone.deq.grad_cfg['solver'] == 'anderson'
    assert backbone.deq.grad_cfg['solver_cfg']['max_iter'] == 4
    assert solver_settings(backbone, 'backward') == out
    backbone.deq.set_grad('phantom', dict(k=2))
    with pytest.raises(ValueError, match='no backward solve'):
        set_solver(backbone, budget=3, phase='backward')


def test_shine_needs_broyden_forward_whatever_the_order():
    backbone = tiny_backbone(grad_cfg=dict(init='shine'))
    for phase in ('both', 'eval', 'train'):
        with pytest.raises(ValueError, match="init='shine'.*use solver="
                           "'broyden' forward"):
            set_solver(backbone, 'anderson', phase=phase)
    # a rejected change changes nothing
    assert backbone.deq.solver == 'broyden'
    plain = tiny_backbone()
    set_solver(plain, 'anderson', phase='both')
    with pytest.raises(ValueError, match="init='shine'"):
        plain.deq.set_grad('ift', dict(init='shine'))
    assert plain.deq.grad_cfg['init'] == 'zero'


def test_settings_have_one_owner():
    """The settings are read-only properties: tools, hooks and apis can
    only change them through the validated owner (configure / set_solver /
    set_grad), and nothing outside the implicit layer assigns them."""
    import glob
    import re
    deq = tiny_backbone().deq
    for name in ('solver', 'solver_cfg', 'eval_solver_cfg', 'grad',
                 'grad_cfg', 'solver_dtype'):
        with pytest.raises(AttributeError):
            setattr(deq, name, getattr(deq, name))
    deq.solver_cfg['max_iter'] = 99  # a copy: the layer is unchanged
    assert deq.solver_cfg['max_iter'] == 6
    writes = re.compile(r'\b_settings\s*=|\.(eval_)?solver_cfg\[[^]]+\]\s*=')
    for path in glob.glob(osp.join(ROOT, 'mdeq_mm', '**', '*.py'),
                          recursive=True) + glob.glob(
                              osp.join(ROOT, 'tools', '**', '*.py'),
                              recursive=True):
        with open(path) as f:
            hits = [line for line in f if writes.search(line)]
        if path.endswith(osp.join('ops', 'implicit.py')):
            assert len(hits) == 2, hits  # __init__ and configure
        else:
            assert not hits, (path, hits)


def test_solver_option_values_are_checked_at_build():
    for bad, match in ((dict(solver_cfg=dict(max_iter=-1)), 'max_iter'),
                       (dict(solver_cfg=dict(stop_mode='relative')),
                        'stop_mode'),
                       (dict(grad_cfg=dict(solver_cfg=dict(
                           stop_mode='relative'))), 'stop_mode'),
                       (dict(grad_cfg=dict(solver_cfg=dict(tol=-1.))),
                        'tol'),
                       (dict(solver='anderson',
                             solver_cfg=dict(beta=2.)), 'beta'),
                       (dict(grad='phantom', grad_cfg=dict(k=0)), 'k >= 1')):
        with pytest.raises(ValueError, match=match):
            MDEQ('tiny', **bad)


def test_settings_report_the_solvers_default_budget():
    backbone = tiny_backbone()
    backbone.deq.configure(eval_solver_cfg=dict(tol=1e-3))  # no max_iter
    assert solver_settings(backbone)['budget'] == 31  # broyden: 30 + 1
    assert solver_settings(backbone, 'train')['budget'] == 7


def test_find_mdeq_inside_wrappers_and_its_errors():
    backbone = tiny_backbone()
    wrapped = torch.nn.Sequential(torch.nn.Identity(), backbone)
    assert find_mdeq(wrapped) is backbone
    assert find_mdeqs(wrapped) == [backbone]
    with pytest.raises(TypeError, match='no MDEQ backbone'):
        find_mdeq(torch.nn.Linear(2, 2))
    two = torch.nn.Sequential(tiny_backbone(), tiny_backbone())
    with pytest.raises(TypeError, match='2 MDEQ backbones'):
        find_mdeq(two)


def test_init_model_loads_checkpoints_and_seeds_the_init(tmp_path):
    a = init_model(TINY, seed=1)
    b = init_model(TINY, seed=1)
    c = init_model(TINY, seed=2)
    assert not a.training and a.cfg.model.type == 'ImageClassifier'
    key = 'backbone.deq_layer.branches.0.blocks.0.conv1.weight_v'
    torch.testing.assert_close(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
    path = tmp_path / 'c.pth'
    torch.save(dict(state_dict=c.state_dict(), meta={}), path)
    loaded = init_model(TINY, str(path), seed=1)
    for k, v in c.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, msg=k)
    # overrides reach the model; the config file itself is not changed
    d = init_model(TINY, cfg_options={
        'model.backbone.eval_solver_cfg': dict(max_iter=2)})
    assert solver_settings(find_mdeq(d))['budget'] == 3
    assert solver_settings(find_mdeq(a))['budget'] != 3


DEMO_SEG = osp.join(ROOT, 'configs/demo/mdeq-demo_seg.py')


@pytest.fixture(scope='module')
def snippet_root(tmp_path_factory):
    from mdeq_mm.datasets.demo_data import write_cityscapes_sequence
    root = str(tmp_path_factory.mktemp('snippets'))
    write_cityscapes_sequence(root, n_seq=1, n_frames=5, annotated=3)
    return root


def demo_segmentor(tol=1e-4):
    """The demo segmentor with a contractive f (see make_contractive)."""
    model = init_model(DEMO_SEG)
    make_contractive(find_mdeq(model))
    set_solver(model, budget=40, tol=tol, options=dict(stop_mode='rel'))
    return model


def test_segment_sequence_cold_equals_frame_by_frame_inference(
        snippet_root):
    import cv2
    from mmengine.registry import DefaultScope

    from mdeq_mm.apis import _frame_pipeline, segment_sequence
    from mdeq_mm.datasets import cityscapes_sequences
    frames = cityscapes_sequences(snippet_root)[0].frames
    model = demo_segmentor()
    cold = segment_sequence(model, frames, warm_start=False)
    arrays = segment_sequence(model, [cv2.imread(p) for p in frames],
                              warm_start=False)
    _, from_array = _frame_pipeline(model.cfg)
    for path, a, b in zip(frames, cold, arrays):
        assert not a['warm'] and a['nfev'] > 3
        with DefaultScope.overwrite_default_scope('mmseg'):
            data = from_array(dict(img=cv2.imread(path)))
            with torch.no_grad():
                ref = model.test_step(dict(inputs=[data['inputs']],
                                           data_samples=[data['data_samples']
                                                         ]))[0]
        ref = ref.pred_sem_seg.data[0].numpy()
        assert a['pred'].shape == (64, 128)
        assert (a['pred'] == ref).all() and (b['pred'] == ref).all()


def test_segment_sequence_warm_start_saves_evaluations_and_restores_state(
        snippet_root):
    from mdeq_mm.apis import segment_sequence
    from mdeq_mm.datasets import cityscapes_sequences
    frames = cityscapes_sequences(snippet_root)[0].frames
    model = demo_segmentor()
    mdeq = find_mdeq(model)
    cold = segment_sequence(model, frames, warm_start=False)
    warm = segment_sequence(model, frames, warm_start=True)
    assert [w['warm'] for w in warm] == [False] + [True] * (len(frames) - 1)
    assert warm[0]['nfev'] == cold[0]['nfev']
    assert sum(w['nfev'] for w in warm[1:]) < sum(c['nfev']
                                                  for c in cold[1:])
    for c, w in zip(cold, warm):
        assert w['residual'] < 1e-4
        assert (c['pred'] == w['pred']).mean() > 0.99
    assert mdeq.warm_start is False and mdeq.last_output is None
    model.test_cfg = dict(mode='slide', crop_size=(32, 32), stride=(16, 16))
    with pytest.raises(ValueError, match='whole-image inference'):
        segment_sequence(model, frames)


def test_sequence_tool_reports_cold_and_warm(snippet_root, tmp_path):
    import json

    from tests.helpers import run_tool
    from mdeq_mm.datasets import convert_cityscapes
    convert_cityscapes(snippet_root)
    model = demo_segmentor()
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = run_tool('analysis/sequence', DEMO_SEG, ckpt, '--data-root',
                   snippet_root, '--tol', '1e-3', '--out',
                   tmp_path / 'seq.png')
    assert '| cold | 5 |' in out and '| warm | 5 |' in out
    rows = json.load(open(tmp_path / 'seq.json'))
    assert [r['start'] for r in rows] == ['cold', 'warm']
    assert rows[1]['nfev_per_frame'] < rows[0]['nfev_per_frame']
    assert rows[0]['annotated'] == 1 and rows[0]['mIoU'] is not None


def test_sequence_tool_fixed_budgets_against_the_reference(snippet_root,
                                                           tmp_path):
    import json

    from tests.helpers import run_tool
    from mdeq_mm.datasets import convert_cityscapes
    convert_cityscapes(snippet_root)
    model = demo_segmentor()
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = run_tool('analysis/sequence', DEMO_SEG, ckpt, '--data-root',
                   snippet_root, '--budgets', '6', '1', '2', '--out',
                   tmp_path / 'seq.png')
    assert 'at equal mIoU (within 1 of' in out
    result = json.load(open(tmp_path / 'seq.json'))
    at = {(r['start'], r['budget']): r for r in result['rows']}
    assert sorted(at) == [(s, b) for s in ('cold', 'warm') for b in (1, 2, 6)]
    # the reference agrees with itself; every frame got exactly b evaluations
    assert at['cold', 6]['agreement'] == 100.
    for (_, b), r in at.items():
        assert r['nfev_per_frame'] == b and r['frames'] == 5
    # one evaluation cold returns z = 0 (residual 1); warm, f carried on
    assert at['cold', 1]['rel_residual'] == pytest.approx(1.)
    assert at['warm', 1]['rel_residual'] < 0.5
    assert at['warm', 1]['agreement'] > at['cold', 1]['agreement']
    eq = result['equal_mIoU']
    assert eq['reference_mIoU'] == at['cold', 6]['mIoU']
    assert eq['saving'] == eq['cold'] / eq['warm']


def test_equal_miou_budget_is_where_every_larger_budget_is_within_margin():
    from mdeq_mm.video import equal_miou_budgets

    def rows(start, mious):
        return [dict(start=start, budget=b, mIoU=m)
                for b, m in zip((1, 2, 4, 8, 16), mious)]
    # cold: within 1 of 50 from 8 on; warm: 2 is within, 4 is not (noise
    # at one budget must not count), so from 8 on as well
    cold = rows('cold', [5, 40, 48, 49.5, 50])
    r = cold + rows('warm', [30, 49.5, 48.8, 49.2, 50.1])
    eq = equal_miou_budgets(r)
    assert (eq['cold'], eq['warm'], eq['saving']) == (8, 8, 1.)
    r = cold + rows('warm', [30, 49.5, 49.1, 49.2, 50.1])
    eq = equal_miou_budgets(r, margin=1.)
    assert (eq['cold'], eq['warm'], eq['saving']) == (8, 2, 4.)
    assert equal_miou_budgets(r, margin=3.)['cold'] == 4
    # a warm chain below the margin even at the largest budget: that budget
    r = cold + rows('warm', [30, 40, 45, 47, 48.5])
    assert equal_miou_budgets(r)['warm'] == 16
    for x in r:
        x['mIoU'] = None
    assert equal_miou_budgets(r) is None


def test_equal_budget_of_one_curve():
    from mdeq_mm.video import equal_budget
    curve = [dict(budget=b, mIoU=m)
             for b, m in zip((1, 2, 3, 4, 6), (5, 43, 41, 44, 44.5))]
    assert equal_budget(curve, 44.5) == 4  # 3 dips below 43.5
    assert equal_budget(curve, 44.5, margin=4.) == 2
    assert equal_budget(curve, 50.) is None  # not even the largest


def test_init_model_is_a_drop_in_for_the_host_inference(tmp_path):
    """Like mmseg's init_model: the config's scope becomes the current one
    (mmseg's inference_model builds its pipeline from it) and the model
    carries dataset_meta (the checkpoint's, else the config dataset's)."""
    import cv2
    import numpy as np
    from mmengine.registry import DefaultScope
    from mmseg.apis import inference_model
    from mmseg.datasets import CityscapesDataset
    DefaultScope.get_instance('test:mmengine-scope', scope_name='mmengine')
    model = init_model(DEMO_SEG)
    assert DefaultScope.get_current_instance().scope_name == 'mmseg'
    assert model.dataset_meta['classes'] == \
        CityscapesDataset.METAINFO['classes']
    assert len(model.dataset_meta['palette']) == 19
    path = str(tmp_path / 'frame.png')
    cv2.imwrite(path, np.random.RandomState(0).randint(
        0, 255, (50, 100, 3), np.uint8))
    result = inference_model(model, path)
    assert result.pred_sem_seg.data.shape == (1, 50, 100)
    assert int(result.pred_sem_seg.data.max()) < 19
    # a checkpoint's own dataset_meta wins
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('a', 'b')))), ckpt)
    assert init_model(DEMO_SEG, str(ckpt)).dataset_meta == dict(
        classes=('a', 'b'))
    # classification: mmpretrain's scope and CIFAR-10's classes
    cls = init_model(TINY)
    assert DefaultScope.get_current_instance().scope_name == 'mmpretrain'
    assert len(cls.dataset_meta['classes']) == 10


def test_sequence_tool_on_any_video_plots_only_what_it_measured(
        snippet_root, tmp_path):
    """A folder of frames and the same frames as a video file: no labels,
    so no mIoU anywhere; the budget sweep plots the agreement."""
    import glob
    import json

    import cv2

    from tests.helpers import run_tool
    from mdeq_mm.datasets import frames_snippet
    from mdeq_mm.video import plot_rows
    files = sorted(glob.glob(osp.join(snippet_root, 'leftImg8bit_sequence',
                                      '*', '*', '*.png')))
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i, f in enumerate(files):  # natural order: frame_2 before frame_10
        (folder / f'frame_{i * 5}.png').write_bytes(open(f, 'rb').read())
    assert frames_snippet(str(folder)).frames == [
        str(folder / f'frame_{i * 5}.png') for i in range(len(files))]
    image = cv2.imread(files[0])
    writer = cv2.VideoWriter(str(tmp_path / 'v.mp4'),
                             cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (image.shape[1], image.shape[0]))
    for f in files:
        writer.write(cv2.imread(f))
    writer.release()
    assert len(frames_snippet(str(tmp_path / 'v.mp4')).frames) == len(files)
    model = demo_segmentor()
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    for source in (folder, tmp_path / 'v.mp4'):
        out = run_tool('analysis/sequence', DEMO_SEG, ckpt, '--frames',
                       source, '--budgets', '1', '4', '--out',
                       tmp_path / 'seq.png')
        result = json.load(open(tmp_path / 'seq.json'))
        assert all(r['mIoU'] is None and r['annotated'] == 0
                   for r in result['rows'])
        assert result['equal_mIoU'] is None and 'equal mIoU' not in out
        assert '4/4' in out  # the progress bar: 2 budgets x cold, warm
    assert plot_rows(result['rows'], str(tmp_path / 'p.png')) == \
        'agreement'
    out, rc = run_tool('analysis/sequence', DEMO_SEG, ckpt, '--frames',
                       tmp_path / 'none', ok=False)
    assert rc == 1 and 'no such folder or video file' in out
