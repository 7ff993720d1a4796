# Copyright (c) mdeq_mm authors. All rights reserved.
"""Cityscapes labels: the official label ids, the label-id → train-id
mapping (34 ids → 19 classes + 255), and the conversion of a download's
``*_gtFine_labelIds.png`` into ``*_gtFine_labelTrainIds.png``."""
import glob
import os.path as osp
from multiprocessing import Pool
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

LABEL_IDS = '_gtFine_labelIds.png'
TRAIN_IDS = '_gtFine_labelTrainIds.png'
IMG_SUFFIX = '_leftImg8bit.png'
NUM_CLASSES = 19
IGNORE = 255
CONVERTER = 'python tools/dataset_converters/cityscapes.py {root}'

# The official labels used by the demo data: id -> (name, colour RGB).
# Ids 0-6, 9, 10, 14-16, 18, 29, 30 and -1 are void (train id 255).
LABELS: Dict[int, tuple] = {
    0: ('unlabeled', (0, 0, 0)),
    1: ('ego vehicle', (0, 0, 0)),
    2: ('rectification border', (0, 0, 0)),
    3: ('out of roi', (0, 0, 0)),
    4: ('static', (0, 0, 0)),
    5: ('dynamic', (111, 74, 0)),
    6: ('ground', (81, 0, 81)),
    7: ('road', (128, 64, 128)),
    8: ('sidewalk', (244, 35, 232)),
    9: ('parking', (250, 170, 160)),
    11: ('building', (70, 70, 70)),
    21: ('vegetation', (107, 142, 35)),
    23: ('sky', (70, 130, 180)),
    24: ('person', (220, 20, 60)),
    26: ('car', (0, 0, 142)),
}
# labelId: trainId for the 19 evaluated classes; every other id maps to 255.
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18
}
TRAIN_ID_TO_LABEL_ID = {t: i for i, t in LABEL_ID_TO_TRAIN_ID.items()}
# classes with instances in *_gtFine_instanceIds.png (id * 1000 + k)
INSTANCE_LABEL_IDS = (24, 25, 26, 27, 28, 31, 32, 33)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a ``*_gtFine_labelIds.png`` array to train ids (uint8)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut[label_ids]


def convert_label_file(path: str) -> str:
    """Write the train-id map beside one ``*_gtFine_labelIds.png``."""
    out = path[:-len(LABEL_IDS)] + TRAIN_IDS
    ids = np.asarray(Image.open(path))
    if ids.ndim != 2:
        raise ValueError(f'{path}: a label-id map has one channel, this '
                         f'file has shape {ids.shape}; is it the '
                         '*_gtFine_color.png?')
    Image.fromarray(label_ids_to_train_ids(ids)).save(out)
    return out


def convert_cityscapes(root: str,
                       nproc: int = 1,
                       progress: Optional[Callable[[int, int], None]] = None
                       ) -> List[str]:
    """Convert every ``gtFine/**/*_gtFine_labelIds.png`` under ``root`` and
    write the split lists ``root/{train,val,test}.txt``.

    Args:
        root (str): folder holding ``leftImg8bit/`` and ``gtFine/``.
        nproc (int): worker processes.
        progress (Callable | None): called with (done, total).

    Returns:
        list[str]: the written train-id files.
    """
    gt = osp.join(root, 'gtFine')
    files = sorted(glob.glob(osp.join(gt, '**', '*' + LABEL_IDS),
                             recursive=True))
    if not files:
        raise FileNotFoundError(
            f'no *{LABEL_IDS} under {gt}: unpack gtFine_trainvaltest.zip '
            f'from cityscapes-dataset.com into {root}')
    out = []
    with Pool(nproc) as pool:
        for i, path in enumerate(pool.imap(convert_label_file, files), 1):
            out.append(path)
            if progress is not None:
                progress(i, len(files))
    for split in ('train', 'val', 'test'):
        img_dir = osp.join(root, 'leftImg8bit', split)
        names = sorted(
            osp.relpath(p, img_dir)[:-len(IMG_SUFFIX)] for p in glob.glob(
                osp.join(img_dir, '*', '*' + IMG_SUFFIX)))
        if names:
            with open(osp.join(root, f'{split}.txt'), 'w') as f:
                f.write('\n'.join(names) + '\n')
    return out
