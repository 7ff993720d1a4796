# Copyright (c) mdeq_mm authors. All rights reserved.
"""Clear errors for missing or malformed datasets, before a Runner starts.

mmseg and mmpretrain fail late and vaguely on a wrong data root (an empty
dataset, a KeyError deep in a loader, an IndexError in the loss for raw
Cityscapes label ids). ``tools/train.py`` and ``tools/test.py`` call
:func:`check_datasets` first, which names the file, the expected layout and
the command that fixes it. The checks read file headers only, plus the
pixels of a few label maps; every file is checked when it is loaded by the
checked transforms (:mod:`mdeq_mm.datasets.transforms`).
"""
import glob
import os
import os.path as osp
from typing import Iterable, List

import numpy as np
from PIL import Image

from .cityscapes_labels import (CONVERTER, IGNORE, IMG_SUFFIX, LABEL_IDS,
                                NUM_CLASSES, TRAIN_IDS)

CITYSCAPES_LAYOUT = """\
{root}/
  leftImg8bit/{{train,val}}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{{train,val}}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png"""
FOLDER_LAYOUT = """\
{root}/
  {prefix}/<class name>/<image>.JPEG   (one folder per class), or
  {prefix}/<image>.JPEG + an ann_file (ImageNet: meta/<split>.txt) listing
  '<path relative to {prefix}> <class index>' per line"""
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
# label maps whose pixels are read at start-up (all are checked on load)
LABEL_SAMPLES = 3


class DatasetLayoutError(FileNotFoundError):
    """The data on disk does not match what the config expects."""


class DataFileError(ValueError):
    """One image or label file cannot be used; the message names it."""


def data_error_message(exc: BaseException):
    """The one-line message of a dataset error, also one re-raised by a
    DataLoader worker (whose message carries the worker's traceback), or
    None when ``exc`` is not one."""
    if not isinstance(exc, (DataFileError, DatasetLayoutError)):
        return None
    msg = str(exc)
    if 'Original Traceback' in msg:  # torch's worker ExceptionWrapper
        last = msg.strip().splitlines()[-1]
        msg = last.split(f'{type(exc).__name__}: ', 1)[-1]
    return msg


def _files(folder: str, suffix: str) -> List[str]:
    return sorted(
        glob.glob(osp.join(folder, '**', '*' + suffix), recursive=True))


def label_value_problem(lab: np.ndarray, num_classes: int = NUM_CLASSES,
                        ignore: int = IGNORE) -> str:
    """Why the values of a train-id label map are wrong ('' if they are
    not): values that are neither class indices nor ``ignore``, which are
    raw Cityscapes label ids when a ``*_labelIds.png`` is used as train
    ids. Shared by the start-up check and ``CheckedLoadAnnotations``."""
    bad = np.unique(lab[(lab >= num_classes) & (lab != ignore)])
    if not bad.size:
        return ''
    return (f'holds values {bad[:8].tolist()}, which are neither train ids '
            f'(0..{num_classes - 1}) nor the ignore label {ignore}: raw '
            f'Cityscapes label ids (a *{LABEL_IDS} used as train ids?). '
            f'Convert the download with '
            f'{CONVERTER.format(root="<data root>")} and use the '
            f'*{TRAIN_IDS} maps')


def check_label_map(path: str, num_classes: int = NUM_CLASSES,
                    ignore: int = IGNORE) -> np.ndarray:
    """Read one train-id label map and check its values; returns it.

    Raises:
        DataFileError: raw label ids, several channels, or unreadable.
    """
    try:
        with Image.open(path) as im:
            lab = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFileError(
            f'{path}: cannot be decoded ({e}); the file is truncated or not '
            'an image: re-extract it from the download') from None
    if lab.ndim != 2:
        raise DataFileError(
            f'{path}: a label map has one channel, this one has shape '
            f'{lab.shape} (a *_gtFine_color.png?). Use the '
            f'*{TRAIN_IDS} files made by: {CONVERTER.format(root="<root>")}')
    problem = label_value_problem(lab, num_classes, ignore)
    if problem:
        raise DataFileError(f'{path}: {problem}.')
    return lab


def _image_size(path: str):
    try:
        with Image.open(path) as im:
            return im.size[::-1]  # (h, w)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFileError(
            f'{path}: cannot be read ({e}); the file is truncated or not an '
            'image: re-extract it from the download, or delete it and its '
            'label map') from None


def _cityscapes(ds: dict) -> None:
    root = ds.get('data_root', '')
    prefix = ds.get('data_prefix', {})
    img_dir = osp.join(root, prefix.get('img_path', ''))
    seg_dir = osp.join(root, prefix.get('seg_map_path', ''))
    img_suffix = ds.get('img_suffix', IMG_SUFFIX)
    seg_suffix = ds.get('seg_map_suffix', TRAIN_IDS)
    converter = CONVERTER.format(root=root or '.')
    layout = CITYSCAPES_LAYOUT.format(root=root.rstrip('/') or '.')
    if not osp.isdir(img_dir):
        raise DatasetLayoutError(
            f'Cityscapes images not found: {img_dir} does not exist.\n'
            f'Expected layout:\n{layout}\nDownload leftImg8bit_trainvaltest'
            ' and gtFine_trainvaltest from cityscapes-dataset.com, unpack '
            f'them into {root or "."}, then run:\n  {converter}')
    images = _files(img_dir, img_suffix)
    if not images:
        raise DatasetLayoutError(
            f'the split is empty: no *{img_suffix} images under {img_dir}.'
            f'\nExpected layout:\n{layout}')
    labels = _files(seg_dir, seg_suffix)
    if not labels:
        raw = _files(seg_dir, LABEL_IDS)
        hint = (f'{len(raw)} *{LABEL_IDS} files are there (the official '
                'label ids): convert them to train ids with:\n  '
                + converter) if raw else f'Expected layout:\n{layout}'
        raise DatasetLayoutError(
            f'no *{seg_suffix} label maps under {seg_dir}. {hint}')
    by_name = {osp.basename(p)[:-len(seg_suffix)]: p for p in labels}
    pairs, missing = [], []
    for img in images:
        name = osp.basename(img)[:-len(img_suffix)]
        if name in by_name:
            pairs.append((img, by_name[name]))
        else:
            missing.append(name)
    if missing:
        raise DatasetLayoutError(
            f'{len(missing)} image(s) under {img_dir} have no label map '
            f'under {seg_dir}, e.g. {missing[0]}{seg_suffix}.\nExpected '
            f'layout:\n{layout}')
    for img, lab in pairs:  # headers only
        (ih, iw), (lh, lw) = _image_size(img), _image_size(lab)
        if (ih, iw) != (lh, lw):
            raise DataFileError(
                f'{lab} is {lw}x{lh} but its image {img} is {iw}x{ih} '
                '(width x height): a label map must have the size of its '
                'image. Re-extract both, or delete the pair.')
    if seg_suffix.endswith(TRAIN_IDS):
        for _, lab in pairs[:LABEL_SAMPLES]:
            check_label_map(lab)


def _has_images(folder: str) -> bool:
    return any(n.lower().endswith(IMG_EXTENSIONS) for n in os.listdir(folder))


def _folder(ds: dict) -> None:
    """ImageNet / CustomDataset: class folders, or files + ann_file."""
    typ = str(ds.get('type', '')).split('.')[-1]
    root = ds.get('data_root', '')
    prefix = ds.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    split = ds.get('split', '')
    if not prefix and split:
        prefix = split
    ann = ds.get('ann_file', '')
    if not ann and typ == 'ImageNet' and split and osp.isfile(
            osp.join(root, 'meta', f'{split}.txt')):
        ann = osp.join('meta', f'{split}.txt')  # what ImageNet picks up
    folder = osp.join(root, prefix)
    layout = FOLDER_LAYOUT.format(root=root.rstrip('/') or '.',
                                  prefix=prefix or '<split>')
    if not osp.isdir(folder):
        raise DatasetLayoutError(
            f'image folder {folder} does not exist.\nExpected layout:\n'
            f'{layout}')
    if ann:
        path = ann if osp.isabs(ann) else osp.join(root, ann)
        if not osp.isfile(path):
            raise DatasetLayoutError(
                f'annotation file {path} not found.\nExpected layout:\n'
                f'{layout}')
        with open(path) as f:
            first = next((line.strip() for line in f if line.strip()), None)
        if first is None:
            raise DatasetLayoutError(f'the split is empty: {path} lists no '
                                     'images')
        name = first.rsplit(' ', 1)[0]
        if not osp.isfile(osp.join(folder, name)):
            raise DatasetLayoutError(
                f'{path} lists {name}, but {osp.join(folder, name)} does not '
                'exist: the annotation paths are relative to '
                f"data_prefix ('{prefix}').")
        return
    classes = [d for d in sorted(os.listdir(folder))
               if osp.isdir(osp.join(folder, d))]
    if not classes:
        if _has_images(folder):
            ann_hint = (f"ImageNet reads {osp.join(root, 'meta', split)}.txt"
                        if typ == 'ImageNet' and split else
                        'set ann_file to it')
            raise DatasetLayoutError(
                f'{folder} holds images but no class folders and no '
                "annotation file (ImageNet's flat val layout). Add the "
                "annotation file, one '<file name> <class index>' per line "
                f'(ILSVRC2012_val_00000001.JPEG 65, ...; {ann_hint}), or '
                'sort the images into one folder per class.')
        raise DatasetLayoutError(
            f'the split is empty: {folder} has no class folders and no '
            f'images.\nExpected layout:\n{layout}')
    if not any(  # stops at the first class folder holding an image
            n.lower().endswith(IMG_EXTENSIONS) for c in classes
            for _, _, files in os.walk(osp.join(folder, c)) for n in files):
        raise DatasetLayoutError(
            f'the split is empty: the class folders under {folder} hold no '
            f'images ({", ".join(IMG_EXTENSIONS)}).')
    expected = (ds.get('metainfo') or {}).get('classes')
    if expected is None and typ == 'ImageNet':
        expected = range(1000)
    if expected is not None and len(expected) != len(classes):
        raise DatasetLayoutError(
            f'{folder} has {len(classes)} class folders but the dataset '
            f'expects {len(expected)} classes. Give '
            'metainfo=dict(classes=[...]) for a subset, or an annotation '
            'file.')


CHECKS = {
    'CityscapesDataset': _cityscapes,
    'ImageNet': _folder,
    'CustomDataset': _folder,
}


def check_dataset_cfg(ds: dict) -> None:
    """Check one dataset config dict; unknown types pass unchecked.

    Raises:
        DatasetLayoutError: missing folders or files, an empty split.
        DataFileError: a file that cannot be used (raw label ids, a label
            map of another size than its image, an unreadable header).
    """
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
