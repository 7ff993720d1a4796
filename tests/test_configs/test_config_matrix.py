# Copyright (c) mdeq_mm authors. All rights reserved.
"""Every config in configs/ trains, validates and tests with the real tools
on data in the users' formats, scaled down by --cfg-options only.

Per config: ``tools/train.py`` for 3 iterations (batch 2; the first
unrolled when the config has a warm-up, the others implicit; one
validation pass at the end), then ``tools/test.py`` on the checkpoint it
saved. Cityscapes data holds void labels (converted from label ids by the
project's converter); training crops are larger than the rescaled image
for half of the segmentation configs (padding with 255) and smaller for
the others; test images are 50x100 (not multiples of 32). SyncBN configs
run in a single process. ImageNet val is flat with meta/val.txt for most
classification configs and in class folders for MDEQ-Large. The transfer
configs load the checkpoints the matrix trained.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tests.helpers import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                       recursive=True) if '_base_' not in osp.basename(p)
    and '/_base_/' not in p)
SCALE = (128, 64)  # RandomResize target (w, h) for the 128x64 scenes
CROP = (64, 128)  # training crop (h, w)
TEST_SCALE = (100, 50)  # test Resize: 50x100 images, not multiples of 32
PAD_RATIO = (0.5, 0.7)  # rescaled image at most 44x89 < crop: padded
CROP_RATIO = (1.2, 2.0)  # rescaled image at least 76x153 > crop: cropped
CLS_CROP, CLS_EDGE = 64, 72
CLASSES = '[building,car,person,vegetation]'
# transfer configs -> the config whose checkpoint they load
PRETRAINED = {
    'configs/mdeq/mdeq-small_in1k-pre_4xb3-124k_cityscapes-512x1024.py':
    'configs/mdeq/mdeq-small_4xb32_in1k.py',
    'configs/mdeq/mdeq-small-fast_in1k-pre_4xb3-124k_cityscapes-512x1024.py':
    'configs/mdeq/mdeq-small-fast_4xb32_in1k.py',
    'configs/demo/mdeq-demo_seg_finetune.py': 'configs/demo/mdeq-demo_cls.py',
    'configs/demo/mdeq-demo_seg_frozen.py': 'configs/demo/mdeq-demo_cls.py',
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _index(pipeline, typ):
    return next((i for i, t in enumerate(pipeline) if t['type'] == typ),
                None)


def _hook(cfg, typ):
    return next((i for i, h in enumerate(cfg.get('custom_hooks', []))
                 if h['type'] == typ), None)


def case(path):
    """How the matrix runs ``path``: (kind, features, train options)."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    ds = cfg.train_dataloader.dataset
    typ = ds.type
    opts = [f'{n}.{k}' for n in LOADERS
            for k in ('num_workers=0', 'batch_size=2')]
    opts += ['default_hooks.logger.interval=1']
    features = set()
    if 'SyncBN' in str(cfg.model):
        features.add('SyncBN, one process')
    backbone = cfg.model.backbone
    if backbone.type == 'MDEQ':  # (the speed comparison has an HRNet)
        opts += ['model.backbone.solver_cfg.max_iter=4']
        if backbone.get('grad', 'ift') == 'ift':
            opts += ['model.backbone.grad_cfg.solver_cfg.max_iter=4']
    if cfg.train_cfg.get('by_epoch', False):
        opts += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                 'default_hooks.checkpoint.interval=1',
                 'train_dataloader.dataset.indices=6']
    else:
        opts += ['train_cfg.max_iters=3', 'train_cfg.val_interval=3',
                 'default_hooks.checkpoint.interval=3']
    warmup = _hook(cfg, 'DEQWarmupHook')
    if warmup is not None:
        opts += [f'custom_hooks.{warmup}.warmup_iters=1']
        features.add('unrolled warm-up, then implicit')
    tele = _hook(cfg, 'DEQTelemetryHook')
    if tele is not None:
        opts += [f'custom_hooks.{tele}.interval=1']
    if typ in ('CityscapesDataset', 'ADE20KDataset', 'ConcatDataset'):
        kind = {'CityscapesDataset': 'cityscapes', 'ADE20KDataset': 'ade20k',
                'ConcatDataset': 'voc'}[typ]
        features.add({'cityscapes': 'void labels',
                      'ade20k': 'label 0 is "other" (reduce_zero_label)',
                      'voc': 'VOC + SBD aug sets, palette PNGs, boundaries'
                      }[kind])
        # the training datasets (VOC: VOC 2012 and the SBD aug set)
        trains = ['train_dataloader.dataset'] if kind != 'voc' else [
            f'train_dataloader.dataset.datasets.{k}'
            for k in range(len(ds.datasets))]
        pipe = ds.pipeline if kind != 'voc' else ds.datasets[0].pipeline
        resize = _index(pipe, 'RandomResize')
        if resize is not None:
            pad = CONFIGS.index(path) % 2 == 0
            ratio = PAD_RATIO if pad else CROP_RATIO
            features.add('crop > image (padding)' if pad else
                         'crop < image')
            crop, padding = _index(pipe, 'RandomCrop'), _index(pipe, 'Pad')
            for train in trains:
                opts += [f'{train}.pipeline.{resize}.scale={SCALE}',
                         f'{train}.pipeline.{resize}.ratio_range={ratio}',
                         f'{train}.pipeline.{crop}.crop_size={CROP}']
                if padding is not None:
                    opts += [f'{train}.pipeline.{padding}.size={CROP}']
        if cfg.model.data_preprocessor.get('size') is not None:
            opts += [f'model.data_preprocessor.size={CROP}']
        for name in ('val_dataloader', 'test_dataloader'):
            i = _index(cfg[name].dataset.pipeline, 'Resize')
            if i is not None:
                opts += [f'{name}.dataset.pipeline.{i}.scale={TEST_SCALE}']
                features.add('test size not a multiple of 32')
    elif typ in ('ImageNet', 'CustomDataset'):
        kind = 'imagenet'
        if backbone.get('arch') == 'large':
            kind = 'imagenet_folders'
            opts += [f'{n}.dataset.metainfo.classes={CLASSES}'
                     for n in ('val_dataloader', 'test_dataloader')]
        features.add('val in class folders' if kind == 'imagenet_folders'
                     else 'flat val + meta/val.txt')
        features.add('grayscale / CMYK / PNG-named-JPEG images')
        for name in LOADERS:
            pipe = cfg[name].dataset.pipeline
            for typ_, key, value in (('RandomResizedCrop', 'scale', CLS_CROP),
                                     ('ResizeEdge', 'scale', CLS_EDGE),
                                     ('CenterCrop', 'crop_size', CLS_CROP)):
                i = _index(pipe, typ_)
                if i is not None:
                    opts += [f'{name}.dataset.pipeline.{i}.{key}={value}']
    elif typ == 'CIFAR10':
        kind = 'cifar10'
        features.add('CIFAR-10 pickle batches')
        opts += ['custom_imports.imports=[mdeq_mm,tests.plugins]']
        opts += [f'{n}.dataset.type=CIFAR10GeneratedFiles' for n in LOADERS]
    else:
        raise AssertionError(f'{path}: no matrix case for {typ}')
    return kind, features, opts


@pytest.fixture(scope='module')
def roots(cityscapes, imagenet, imagenet_folders, cifar10, tmp_path_factory):
    from mdeq_mm.datasets.demo_data import write_ade20k, write_voc
    root = tmp_path_factory.mktemp('seg_layouts')
    return dict(cityscapes=cityscapes, imagenet=imagenet,
                imagenet_folders=imagenet_folders, cifar10=cifar10,
                ade20k=write_ade20k(str(root / 'ADEChallengeData2016'),
                                    n_train=4, n_val=2),
                voc=write_voc(str(root / 'VOCdevkit' / 'VOC2012'),
                              n_train=4, n_val=2, n_aug=2))


def root_keys(path):
    """The data_root options of a config's datasets."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    train = cfg.train_dataloader.dataset
    keys = [f'{n}.dataset.data_root' for n in LOADERS[1:]]
    if train.type == 'ConcatDataset':
        return keys + [f'train_dataloader.dataset.datasets.{k}.data_root'
                       for k in range(len(train.datasets))]
    return keys + ['train_dataloader.dataset.data_root']


@pytest.fixture(scope='module')
def trained(roots, tmp_path_factory):
    """config -> (work dir, checkpoint, train output), trained once."""
    runs = {}

    def train(path):
        if path in runs:
            return runs[path][:3]
        kind, _, opts = case(path)
        opts = opts + [f'{key}={roots[kind]}' for key in root_keys(path)]
        if path in PRETRAINED:
            _, ckpt, _ = train(PRETRAINED[path])
            opts.append(f'model.backbone.init_cfg.checkpoint={ckpt}')
        work = str(tmp_path_factory.mktemp(osp.basename(path)[:-3]))
        out = run_tool('train', path, '--work-dir', work, '--cfg-options',
                       *opts)
        with open(osp.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        runs[path] = (work, ckpt, out, opts)
        return runs[path][:3]

    train.runs = runs
    return train


METRIC = {'cityscapes': 'mIoU:', 'ade20k': 'mIoU:', 'voc': 'mIoU:',
          'imagenet': 'accuracy/top1:',
          'imagenet_folders': 'accuracy/top1:', 'cifar10': 'accuracy/top1:'}


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS)
def test_config_trains_validates_and_tests(path, trained):
    kind, features, _ = case(path)
    work, ckpt, out = trained(path)
    assert osp.isfile(ckpt), out[-3000:]
    if 'unrolled warm-up, then implicit' in features:
        assert 'switches from unrolled to implicit' in out
        assert 'deq/fwd_rel_residual' in out  # an implicit iteration ran
    assert METRIC[kind] in out, out[-3000:]  # the validation pass
    if path in PRETRAINED:
        assert trained(PRETRAINED[path])[1] in out  # loaded the checkpoint
    opts = trained.runs[path][3]
    test_opts = [o for o in opts if o.startswith(('test_dataloader',
                                                  'custom_imports',
                                                  'model.'))]
    out = run_tool('test', path, ckpt, '--work-dir', work, '--cfg-options',
                   *test_opts)
    assert METRIC[kind] in out and '(test) [' in out, out[-3000:]


def test_matrix_covers_the_real_data_cases():
    covered = set()
    for path in CONFIGS:
        covered |= case(path)[1]
    assert covered >= {
        'SyncBN, one process', 'void labels', 'crop > image (padding)',
        'crop < image', 'test size not a multiple of 32',
        'flat val + meta/val.txt', 'val in class folders',
        'grayscale / CMYK / PNG-named-JPEG images',
        'unrolled warm-up, then implicit', 'CIFAR-10 pickle batches',
        'label 0 is "other" (reduce_zero_label)',
        'VOC + SBD aug sets, palette PNGs, boundaries'
    }, covered
    assert len(CONFIGS) >= 25
