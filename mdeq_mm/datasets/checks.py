# Copyright (c) mdeq_mm authors. All rights reserved.
"""Clear errors for missing or malformed datasets, before a Runner starts.

mmseg and mmpretrain fail late and vaguely on a wrong data root (an empty
dataset, a KeyError deep in a loader). ``tools/train.py`` and
``tools/test.py`` call :func:`check_datasets` first, which names the
expected layout and the command that produces it.
"""
import glob
import os.path as osp
from typing import Iterable

CONVERTER = 'python tools/dataset_converters/cityscapes.py {root}'
CITYSCAPES_LAYOUT = """\
{root}/
  leftImg8bit/{{train,val}}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{{train,val}}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png"""
FOLDER_LAYOUT = """\
{root}/
  {prefix}/<class name>/<image>.JPEG   (one folder per class), or
  an ann_file listing '<relative path> <label>' per line"""


class DatasetLayoutError(FileNotFoundError):
    """The data on disk does not match what the config expects."""


def _cityscapes(ds: dict) -> None:
    root = ds.get('data_root', '')
    prefix = ds.get('data_prefix', {})
    img_dir = osp.join(root, prefix.get('img_path', ''))
    seg_dir = osp.join(root, prefix.get('seg_map_path', ''))
    img_suffix = ds.get('img_suffix', '_leftImg8bit.png')
    seg_suffix = ds.get('seg_map_suffix', '_gtFine_labelTrainIds.png')
    layout = CITYSCAPES_LAYOUT.format(root=root.rstrip('/') or '.')
    if not osp.isdir(img_dir):
        raise DatasetLayoutError(
            f'Cityscapes images not found: {img_dir} does not exist.\n'
            f'Expected layout:\n{layout}\nDownload leftImg8bit_trainvaltest'
            ' and gtFine_trainvaltest from cityscapes-dataset.com, unpack '
            f'them into {root or "."}, then run:\n  '
            + CONVERTER.format(root=root or '.'))
    images = glob.glob(osp.join(img_dir, '**', '*' + img_suffix),
                       recursive=True)
    if not images:
        raise DatasetLayoutError(
            f'no *{img_suffix} images under {img_dir}.\nExpected layout:\n'
            f'{layout}')
    labels = glob.glob(osp.join(seg_dir, '**', '*' + seg_suffix),
                       recursive=True)
    if not labels:
        raw = glob.glob(osp.join(seg_dir, '**', '*_gtFine_labelIds.png'),
                        recursive=True)
        hint = (f'{len(raw)} *_gtFine_labelIds.png files are there: convert '
                'them to train ids with:\n  '
                + CONVERTER.format(root=root or '.')) if raw else (
                    f'Expected layout:\n{layout}')
        raise DatasetLayoutError(
            f'no *{seg_suffix} label maps under {seg_dir}. {hint}')
    names = {osp.basename(p)[:-len(img_suffix)] for p in images}
    missing = [
        n for n in sorted(names)
        if not glob.glob(osp.join(seg_dir, '**', n + seg_suffix),
                         recursive=True)
    ]
    if missing:
        raise DatasetLayoutError(
            f'{len(missing)} image(s) under {img_dir} have no label map '
            f'under {seg_dir}, e.g. {missing[0]}{seg_suffix}.\nExpected '
            f'layout:\n{layout}')


def _folder(ds: dict) -> None:
    root = ds.get('data_root', '')
    prefix = ds.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    if not prefix and ds.get('split'):
        prefix = ds['split']
    ann = ds.get('ann_file', '')
    if ann:
        path = ann if osp.isabs(ann) else osp.join(root, ann)
        if not osp.isfile(path):
            raise DatasetLayoutError(f'annotation file {path} not found')
        return
    folder = osp.join(root, prefix)
    layout = FOLDER_LAYOUT.format(root=root.rstrip('/') or '.',
                                  prefix=prefix)
    if not osp.isdir(folder):
        raise DatasetLayoutError(
            f'image folder {folder} does not exist.\nExpected layout:\n'
            f'{layout}')
    classes = [d for d in sorted(glob.glob(osp.join(folder, '*')))
               if osp.isdir(d)]
    if not classes:
        raise DatasetLayoutError(
            f'{folder} has no class sub-folders.\nExpected layout:\n'
            f'{layout}')


CHECKS = {
    'CityscapesDataset': _cityscapes,
    'ImageNet': _folder,
    'CustomDataset': _folder,
}


def check_dataset_cfg(ds: dict) -> None:
    """Check one dataset config dict; unknown types pass unchecked."""
    ds = dict(ds)
    while ds.get('type') in ('RepeatDataset', 'ClassBalancedDataset'):
        ds = dict(ds['dataset'])
    check = CHECKS.get(str(ds.get('type', '')).split('.')[-1])
    if check is not None:
        check(ds)


def check_datasets(cfg, loaders: Iterable[str] = (
        'train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """Check the datasets of the given dataloaders of a config."""
    for name in loaders:
        loader = cfg.get(name)
        if loader and loader.get('dataset') is not None:
            check_dataset_cfg(loader['dataset'])
