# Copyright (c) mdeq_mm authors. All rights reserved.
"""Cityscapes video snippets (``leftImg8bit_sequence``).

The download ``leftImg8bit_sequence_trainvaltest.zip`` holds, for every
annotated frame of ``leftImg8bit``, the 30 frames around it:
``leftImg8bit_sequence/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png``
with consecutive frame numbers, the 20th of which has its annotation in
``gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_*.png``.
"""
import glob
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from PIL import Image

from .cityscapes_labels import (IMG_SUFFIX, LABEL_IDS, TRAIN_IDS,
                                label_ids_to_train_ids)

SEQUENCE_DIR = 'leftImg8bit_sequence'
_NAME = re.compile(r'^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$')


@dataclass
class Snippet:
    """Consecutive frames of one recording.

    Attributes:
        name (str): ``<city>_<seq>`` and the first frame number.
        frames (list[str | ndarray]): image files (or BGR arrays) in
            frame order.
        annotated (list[int]): indices into ``frames`` of the frames with a
            ``gtFine`` annotation.
        labels (list[str]): their label files (train ids if converted, else
            label ids), parallel to ``annotated``.
    """
    name: str
    frames: List[str]
    annotated: List[int]
    labels: List[str]


def _label_file(root: str, split: str, city: str, stem: str
                ) -> Optional[str]:
    for suffix in (TRAIN_IDS, LABEL_IDS):
        path = osp.join(root, 'gtFine', split, city, stem + suffix)
        if osp.isfile(path):
            return path
    return None


def cityscapes_sequences(root: str, split: str = 'val') -> List[Snippet]:
    """The snippets under ``root/leftImg8bit_sequence/<split>``, split where
    frame numbers jump (a warm start across a gap would start from another
    scene), with the annotated frames found in ``root/gtFine/<split>``.

    Raises:
        FileNotFoundError: no sequence frames there.
        ValueError: a file whose name is not ``<city>_<seq>_<frame>``.
    """
    folder = osp.join(root, SEQUENCE_DIR, split)
    files = sorted(glob.glob(osp.join(folder, '*', '*' + IMG_SUFFIX)))
    if not files:
        raise FileNotFoundError(
            f'no *{IMG_SUFFIX} under {folder}: unpack '
            'leftImg8bit_sequence_trainvaltest.zip from '
            f'cityscapes-dataset.com into {root} (or write demo snippets '
            'with mdeq_mm.datasets.demo_data.write_cityscapes_sequence)')
    groups = defaultdict(list)
    for path in files:
        stem = osp.basename(path)[:-len(IMG_SUFFIX)]
        m = _NAME.match(stem)
        if m is None:
            raise ValueError(
                f'{path}: Cityscapes sequence frames are named '
                f'<city>_<seq:6 digits>_<frame:6 digits>{IMG_SUFFIX}')
        groups[(m['city'], m['seq'])].append((int(m['frame']), stem, path))
    snippets = []
    for (city, seq), frames in sorted(groups.items()):
        frames.sort()
        start = 0
        for i in range(1, len(frames) + 1):
            if i < len(frames) and frames[i][0] == frames[i - 1][0] + 1:
                continue
            run = frames[start:i]
            annotated, labels = [], []
            for k, (_, stem, _) in enumerate(run):
                label = _label_file(root, split, city, stem)
                if label is not None:
                    annotated.append(k)
                    labels.append(label)
            snippets.append(Snippet(f'{city}_{seq}_{run[0][0]:06d}',
                                    [p for _, _, p in run], annotated,
                                    labels))
            start = i
    return snippets


def read_train_ids(path: str) -> np.ndarray:
    """A label file as train ids (converting a label-id map)."""
    ids = np.asarray(Image.open(path))
    return ids if path.endswith(TRAIN_IDS) else label_ids_to_train_ids(ids)


__all__ = ['Snippet', 'cityscapes_sequences', 'read_train_ids']


IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def frames_snippet(path: str) -> Snippet:
    """Any video as one unannotated snippet: a folder of images (in natural
    name order: frame_2 before frame_10) or a video file OpenCV reads
    (its frames as BGR arrays)."""
    if osp.isdir(path):
        def key(name):
            return [int(t) if t.isdigit() else t
                    for t in re.split(r'(\d+)', name)]

        frames = sorted((osp.join(path, n) for n in os.listdir(path)
                         if n.lower().endswith(IMAGE_SUFFIXES)),
                        key=lambda p: key(osp.basename(p)))
    elif osp.isfile(path):
        import cv2
        cap = cv2.VideoCapture(path)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    else:
        raise FileNotFoundError(f'{path}: no such folder or video file')
    if not frames:
        raise ValueError(f'{path}: no frames (a folder of '
                         f'{"/".join(IMAGE_SUFFIXES)} images, or a video '
                         'file OpenCV can read)')
    return Snippet(name=osp.basename(osp.normpath(path)), frames=frames,
                   annotated=[], labels=[])
