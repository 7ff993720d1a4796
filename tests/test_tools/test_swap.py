# Copyright (c) mdeq_mm authors. All rights reserved.
"""The README's swap (mmseg's HRNet-W18 FCN config with MDEQ-Small as the
backbone, no DEQ hook) trained by tools/train.py, scaled down by
--cfg-options only: healthy without any hook."""
import copy
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


def _swapped(stock, **kwargs):
    from mmengine.config import Config

    from mdeq_mm.models import swap_backbone
    from mdeq_mm.models.backbones.mdeq import check_head_channels
    import mmseg
    model = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), '.mim',
                                     'configs', stock)).model
    out = swap_backbone(model, **kwargs)
    # the independent check the tools run on every loaded config
    merged = Config(dict(model=model))
    merged.merge_from_dict(dict(model=copy.deepcopy(out)))
    check_head_channels(merged.model)
    return out


@pytest.mark.parametrize('stock, decode, aux', [
    # ResNet-D8 (stage strides 1, 2, 1, 1): outputs at strides 4, 8, 8, 8;
    # the heads read index 3 and 2, both at stride 8 -> MDEQ's index 1
    ('pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', (1, 64),
     (1, 64)),
    ('deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
     (1, 64), (1, 64)),
    # ResNet-50 (strides 4, 8, 16, 32), as MDEQ's
    ('upernet/upernet_r50_4xb4-20k_voc12aug-512x512.py',
     ([0, 1, 2, 3], [32, 64, 128, 256]), (2, 128)),
])
def test_swap_backbone_reads_each_stride_where_the_old_backbone_did(
        stock, decode, aux):
    out = _swapped(stock)
    assert out['pretrained'] is None and out['backbone'] == dict(
        _delete_=True, type='MDEQ', arch='small')
    head, aux_head = out['decode_head'], out['auxiliary_head']
    assert (head['in_index'], head['in_channels']) == decode
    assert (aux_head['in_index'], aux_head['in_channels']) == aux
    if 'c1_in_channels' in head:  # DeepLabV3+'s low-level input: stride 4
        assert head['c1_in_channels'] == 32


def test_swap_backbone_keeps_the_concatenation_rule_of_hrnet_heads():
    # HRNet's FCN: channels = the sum of its concatenated inputs (270)
    out = _swapped('hrnet/fcn_hr18_4xb4-80k_ade20k-512x512.py',
                   arch='large')
    assert out['decode_head']['in_channels'] == [80, 160, 320, 640]
    assert out['decode_head']['channels'] == 1200
    assert out['decode_head']['num_classes'] == 150  # the rest kept
    # OCRNet: a list of heads, each restated whole; OCRHead's own width
    # (512) is not a sum and stays
    fcn, ocr = _swapped(
        'ocrnet/ocrnet_hr18_4xb4-20k_voc12aug-512x512.py')[
            'decode_head']
    assert fcn['type'] == 'FCNHead' and fcn['channels'] == 480
    assert ocr['type'] == 'OCRHead' and ocr['channels'] == 512
    assert ocr['in_channels'] == [32, 64, 128, 256]
    assert fcn['num_classes'] == ocr['num_classes'] == 21


def test_swap_backbone_names_a_stride_the_mdeq_does_not_have():
    # MDEQ-Tiny (CIFAR) keeps the input's resolution: strides 1 and 2
    with pytest.raises(ValueError, match=r'stride 4; the MDEQ has '
                       r'strides \[1, 2\]'):
        _swapped('upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
                 arch='tiny')
