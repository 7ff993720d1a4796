# Copyright (c) mdeq_mm authors. All rights reserved.
"""The README's swap (mmseg's HRNet-W18 FCN config with MDEQ-Small as the
backbone, no DEQ hook) trained by tools/train.py, scaled down by
--cfg-options only: healthy without any hook."""
import glob
import json
import os.path as osp

import pytest

from tests.helpers import run_tool

SWAP = 'configs/mdeq/mdeq-small_fcn-from-hr18_4xb2-80k_cityscapes-512x1024.py'


def train(city, work, iters, extra=()):
    out = run_tool(
        'train', SWAP, '--work-dir', work, '--no-validate', '--cfg-options',
        *[f'{n}.dataset.data_root={city}' for n in ('train_dataloader',
                                                    'val_dataloader')],
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.2.scale=(128,64)',
        'train_dataloader.dataset.pipeline.3.crop_size=(64,128)',
        'model.data_preprocessor.size=(64,128)',
        f'train_cfg.max_iters={iters}',
        'default_hooks.logger.interval=1', 'randomness.seed=0',
        f'default_hooks.checkpoint.interval={iters}', *extra)
    log = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(log[-1]) as f:
        rows = [json.loads(line) for line in f]
    return out, [r for r in rows if 'loss' in r]


@pytest.mark.slow
def test_readme_swap_trains_healthy_without_hooks(cityscapes, tmp_path):
    # unchanged: the backbone's own warm-up (2000 iterations) covers the
    # whole short run, and its statistics are in the log
    out, rows = train(cityscapes, str(tmp_path / 'default'), 20)
    assert len(rows) == 20
    assert all(r['deq/nfev_tracked'] == 5 for r in rows)  # unrolled
    assert 'fell back' not in out and 'one-step' not in out
    # a 10-iteration warm-up: the implicit iterations after it solve their
    # backward (the stock swap without it fell back on every sample of
    # the first implicit iterations at random initialisation)
    out, rows = train(cityscapes, str(tmp_path / 'short'), 20,
                      ['model.backbone.warmup_iters=10'])
    implicit = rows[10:]
    assert [r['deq/nfev_tracked'] for r in implicit] == [1] * 10
    assert all(r['deq/bwd_fallback'] == 0 for r in implicit), implicit
    assert max(r['deq/bwd_rel_residual'] for r in implicit) < 1e-2
    assert all(r['deq/fwd_nfev'] > 1 for r in implicit)
    assert 'fell back' not in out


def test_wrong_head_channels_stop_the_tools_in_one_line(cityscapes,
                                                        tmp_path):
    out, rc = run_tool(
        'train', SWAP, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        'model.decode_head.in_channels=[18,36,72,144]', ok=False)
    assert rc == 1 and 'Traceback' not in out, out[-2000:]
    line = next(x for x in out.splitlines() if x.startswith('error:'))
    assert 'its outputs are 32 at stride 4, 64 at stride 8' in line
    assert 'set decode_head.in_channels=[32, 64, 128, 256]' in line
    # a ResNet-based base config's pretrained weights: the fix, not a
    # download
    out, rc = run_tool(
        'train', SWAP, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        'model.pretrained=open-mmlab://resnet50_v1c',
        *[f'{n}.dataset.data_root={cityscapes}' for n in (
            'train_dataloader', 'val_dataloader')], ok=False)
    assert rc == 1 and 'Traceback' not in out, out[-2000:]
    assert 'model.pretrained=None' in out
