# Copyright (c) mdeq_mm authors. All rights reserved.
"""Small synthetic datasets in the real on-disk formats, for the demo and
the tests.

* Street scenes as the official Cityscapes download holds them:
  ``leftImg8bit/{split}/<city>/<name>_leftImg8bit.png`` (2:1 aspect) and
  ``gtFine/{split}/<city>/<name>_gtFine_{labelIds,instanceIds,color}.png``
  with official label ids: six of the 19 evaluated classes (road, building,
  vegetation, sky, person, car) and void regions (ego vehicle,
  rectification border, out of roi, unlabeled, static, dynamic, parking).
  No train-id maps: run ``python tools/dataset_converters/cityscapes.py``
  (or :func:`~mdeq_mm.datasets.convert_cityscapes`) as for the real data.
* Object crops in the ImageNet layout with four classes (building, car,
  person, vegetation): ``train/<class>/<class>_<i>.JPEG`` and the val split
  either flat (``val/ILSVRC2012_val_<k>.JPEG`` with ``meta/val.txt``, as
  ImageNet ships it) or in class folders. Like real ImageNet, the files
  named ``.JPEG`` include a grayscale JPEG, a CMYK JPEG and a PNG.

Scenes are learnable but not trivial: every instance draws its colour from
one shared range, so no class can be told from one pixel's colour; classes
differ by shape, texture and context (window grids on buildings, speckled
foliage, wheels and windows on cars, two-tone people, lane markings on the
road, gradients and clouds in the sky), and objects overlap.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from .cityscapes_labels import (IMG_SUFFIX, INSTANCE_LABEL_IDS, LABEL_IDS,
                                LABELS, TRAIN_ID_TO_LABEL_ID)

ROAD, BUILDING, VEGETATION, SKY, PERSON, CAR = 0, 2, 8, 10, 11, 13
CLS_CLASSES = ('building', 'car', 'person', 'vegetation')


def _colour(rng) -> np.ndarray:
    return rng.uniform(40, 220, 3)


def _building(img, lab, rng, x0, y0, x1, y1):
    base = _colour(rng)
    img[y0:y1, x0:x1] = base
    lab[y0:y1, x0:x1] = BUILDING
    win = _colour(rng)
    step = int(rng.integers(5, 9))
    size = max(2, step // 2)
    for y in range(y0 + 2, y1 - size, step):
        for x in range(x0 + 2, x1 - size, step):
            img[y:y + size, x:x + size] = win


def _vegetation(img, lab, rng, cx, cy, rx, ry):
    mask = np.zeros(lab.shape, np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, 1,
                -1)
    # trunk
    h = img.shape[0]
    trunk_end = min(h - 1, int(cy + 2 * ry))
    cv2.rectangle(mask, (int(cx) - 1, int(cy)), (int(cx) + 1, trunk_end), 1,
                  -1)
    base = _colour(rng)
    speckle = rng.uniform(0.45, 1.3, lab.shape + (1, ))
    sel = mask.astype(bool)
    img[sel] = np.clip(base * speckle[sel], 0, 255)
    lab[sel] = VEGETATION


def _car(img, lab, rng, x0, y1, w):
    h = max(5, int(w * rng.uniform(0.35, 0.5)))
    y0 = y1 - h
    body = _colour(rng)
    img[y0:y1, x0:x0 + w] = body
    lab[y0:y1, x0:x0 + w] = CAR
    # cabin with windows
    cx0, cx1 = x0 + w // 5, x0 + 4 * w // 5
    cy0 = max(0, y0 - h // 2)
    img[cy0:y0, cx0:cx1] = body
    lab[cy0:y0, cx0:cx1] = CAR
    glass = _colour(rng) * 0.5 + 100
    img[cy0 + 1:y0 - 1, cx0 + 1:cx1 - 1] = glass
    r = max(2, h // 3)
    for wx in (x0 + w // 5, x0 + 4 * w // 5):
        cv2.circle(img, (int(wx), int(y1)), r, (20, 20, 20), -1)
        cv2.circle(lab, (int(wx), int(y1)), r, CAR, -1)


def _person(img, lab, rng, cx, y1, h):
    w = max(3, h // 3)
    top, bottom = _colour(rng), _colour(rng)
    y0 = y1 - h
    mid = y0 + h // 2
    img[y0 + h // 5:mid, cx - w // 2:cx + w // 2 + 1] = top
    img[mid:y1, cx - w // 2:cx + w // 2 + 1] = bottom
    lab[y0 + h // 5:y1, cx - w // 2:cx + w // 2 + 1] = PERSON
    r = max(1, h // 10)
    skin = _colour(rng)
    cv2.circle(img, (int(cx), int(y0 + r)), r, tuple(float(c) for c in skin),
               -1)
    cv2.circle(lab, (int(cx), int(y0 + r)), r, PERSON, -1)


def make_scene(rng, size: Tuple[int, int] = (64, 128)):
    """One street scene: (BGR uint8 image, uint8 train-id label map)."""
    h, w = size
    img = np.zeros((h, w, 3), np.float64)
    lab = np.full((h, w), 255, np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.45))
    road_top = int(h * rng.uniform(0.62, 0.75))
    # sky: vertical gradient between two random colours, a few clouds
    c0, c1 = _colour(rng), _colour(rng)
    t = np.linspace(0, 1, road_top)[:, None, None]
    img[:road_top] = c0 * (1 - t) + c1 * t
    lab[:road_top] = SKY
    for _ in range(int(rng.integers(0, 3))):
        cv2.ellipse(img, (int(rng.integers(0, w)), int(rng.integers(
            0, max(1, horizon - 2)))), (int(rng.integers(4, 12)), 2), 0, 0,
                    360, (235, 235, 235), -1)
    # band between sky and road: buildings side by side
    x = 0
    while x < w:
        bw = int(rng.integers(12, 36))
        top = int(rng.integers(max(2, horizon - 14), horizon + 4))
        _building(img, lab, rng, x, top, min(w, x + bw), road_top)
        x += bw
    # road: noisy asphalt of a random colour with dashed lane markings
    img[road_top:] = _colour(rng) * rng.uniform(0.9, 1.1,
                                                (h - road_top, w, 1))
    lab[road_top:] = ROAD
    lane_y = (road_top + h) // 2
    lane = (230, 230, 230) if rng.random() < 0.5 else (60, 200, 230)
    for lx in range(int(rng.integers(0, 8)), w, 16):
        cv2.line(img, (lx, lane_y), (lx + 7, lane_y), lane, 1)
    # objects, drawn in random order so that they overlap
    objects = (['veg'] * int(rng.integers(1, 4)) +
               ['car'] * int(rng.integers(1, 4)) +
               ['person'] * int(rng.integers(1, 4)))
    rng.shuffle(objects)
    for kind in objects:
        if kind == 'veg':
            ry = int(rng.integers(7, 14))
            _vegetation(img, lab, rng, rng.integers(0, w),
                        road_top - ry - int(rng.integers(0, 6)),
                        int(rng.integers(6, 14)), ry)
        elif kind == 'car':
            cw = int(rng.integers(16, 34))
            _car(img, lab, rng, int(rng.integers(0, max(1, w - cw))),
                 int(rng.integers(road_top + 2, h - 2)), cw)
        else:
            ph = int(rng.integers(14, 26))
            _person(img, lab, rng, int(rng.integers(3, w - 3)),
                    int(rng.integers(road_top, h - 1)), ph)
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def make_object(rng, cls: str, size: int = 64) -> np.ndarray:
    """One object crop of ``cls`` on a random background (BGR uint8)."""
    img = np.zeros((size, size, 3), np.float64)
    lab = np.zeros((size, size), np.uint8)
    bg0, bg1 = _colour(rng), _colour(rng)
    t = np.linspace(0, 1, size)[:, None, None]
    img[:] = bg0 * (1 - t) + bg1 * t
    s = size
    if cls == 'building':
        _building(img, lab, rng, int(rng.integers(0, s // 4)),
                  int(rng.integers(0, s // 4)), int(rng.integers(3 * s // 4,
                                                                 s)),
                  int(rng.integers(3 * s // 4, s)))
    elif cls == 'vegetation':
        _vegetation(img, lab, rng, s // 2 + rng.integers(-6, 7),
                    s // 2 - rng.integers(0, 8), int(rng.integers(12, 22)),
                    int(rng.integers(12, 20)))
    elif cls == 'car':
        cw = int(rng.integers(s // 2, s - 4))
        _car(img, lab, rng, int(rng.integers(0, s - cw)),
             int(rng.integers(2 * s // 3, s - 6)), cw)
    elif cls == 'person':
        _person(img, lab, rng, s // 2 + int(rng.integers(-10, 11)),
                int(rng.integers(3 * s // 4, s - 2)),
                int(rng.integers(s // 2, 3 * s // 4)))
    else:
        raise KeyError(f'unknown demo class {cls!r}; one of {CLS_CLASSES}')
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# void label ids painted into the scenes
UNLABELED, EGO_VEHICLE, RECT_BORDER, OUT_OF_ROI = 0, 1, 2, 3
STATIC, DYNAMIC, PARKING = 4, 5, 9


def to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Train ids of the demo classes (and 255) -> official label ids."""
    lut = np.zeros(256, np.uint8)  # 255 -> 0 ('unlabeled')
    for train_id, label_id in TRAIN_ID_TO_LABEL_ID.items():
        lut[train_id] = label_id
    return lut[train_ids]


def paint_void(img: np.ndarray, ids: np.ndarray, rng) -> None:
    """Paint the void regions of a real Cityscapes frame, in place: the
    ego vehicle's hood, a rectification border, an out-of-roi frame,
    unlabeled blobs, static poles, dynamic objects, a parking patch."""
    h, w = ids.shape
    road = np.argwhere(ids == TRAIN_ID_TO_LABEL_ID[0])
    if len(road) and rng.random() < 0.7:  # parking bay at the road edge
        y, x = road[rng.integers(len(road))]
        y0, x0 = int(y), int(x)
        y1, x1 = min(h, y0 + int(rng.integers(3, 8))), min(
            w, x0 + int(rng.integers(8, 20)))
        img[y0:y1, x0:x1] = _colour(rng)
        ids[y0:y1, x0:x1] = PARKING
    for _ in range(int(rng.integers(0, 3))):  # static: poles, signs
        x = int(rng.integers(0, w - 2))
        y1 = int(rng.integers(h // 2, h))
        y0 = max(0, y1 - int(rng.integers(10, 25)))
        img[y0:y1, x:x + 2] = _colour(rng)
        ids[y0:y1, x:x + 2] = STATIC
    for _ in range(int(rng.integers(0, 2))):  # dynamic: a cart, a bin
        x, y = int(rng.integers(0, w - 6)), int(rng.integers(h // 2, h - 4))
        img[y:y + 4, x:x + 6] = _colour(rng)
        ids[y:y + 4, x:x + 6] = DYNAMIC
    for _ in range(int(rng.integers(0, 3))):  # unlabeled blobs
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                   int(rng.integers(1, 4)), 1, -1)
        img[mask > 0] = _colour(rng)
        ids[mask > 0] = UNLABELED
    # the hood of the recording car, at the bottom centre
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h + h // 40), (int(w * 0.42), h // 9), 0, 180,
                360, 1, -1)
    img[mask > 0] = (30, 30, 35)
    ids[mask > 0] = EGO_VEHICLE
    # rectification border left/right, out of roi at the top and bottom
    b = int(rng.integers(1, 3))
    ids[:, :b] = ids[:, w - b:] = RECT_BORDER
    img[:, :b] = img[:, w - b:] = 0
    ids[:1] = ids[h - 1:] = OUT_OF_ROI
    img[:1] = img[h - 1:] = 0


def instance_ids(ids: np.ndarray) -> np.ndarray:
    """``*_gtFine_instanceIds.png``: label id * 1000 + instance index for
    instance classes (connected regions), the label id elsewhere."""
    out = ids.astype(np.uint16)
    for label_id in INSTANCE_LABEL_IDS:
        n, comp = cv2.connectedComponents((ids == label_id).astype(np.uint8))
        for k in range(1, n):
            out[comp == k] = label_id * 1000 + k - 1
    return out


def colour_map(ids: np.ndarray) -> np.ndarray:
    """``*_gtFine_color.png`` (BGR for cv2)."""
    lut = np.zeros((256, 3), np.uint8)
    for label_id, (_, rgb) in LABELS.items():
        lut[label_id] = rgb[::-1]
    return lut[ids]


def write_gtfine(root: str, split: str, city: str, name: str,
                 ids: np.ndarray) -> None:
    """``gtFine/{split}/<city>/<name>_gtFine_{labelIds,instanceIds,color}
    .png`` of a label-id map, as the download has them."""
    folder = osp.join(root, 'gtFine', split, city)
    os.makedirs(folder, exist_ok=True)
    stem = osp.join(folder, name)
    cv2.imwrite(stem + LABEL_IDS, ids)
    cv2.imwrite(stem + '_gtFine_instanceIds.png', instance_ids(ids))
    cv2.imwrite(stem + '_gtFine_color.png', colour_map(ids))


def make_frame(rng, size: Tuple[int, int] = (64, 128)):
    """One frame as the download has it: (BGR image, label-id map)."""
    img, train_ids = make_scene(rng, size)
    ids = to_label_ids(train_ids)
    paint_void(img, ids, rng)
    return img, ids


def write_cityscapes(root: str,
                     n_train: int = 160,
                     n_val: int = 24,
                     size: Tuple[int, int] = (64, 128),
                     seed: int = 0) -> str:
    """Write street scenes under ``root`` as the official Cityscapes
    download holds them (label ids, no train ids); returns ``root``."""
    rng = np.random.default_rng(seed)
    cities = {'train': ('aachen', 'bochum'), 'val': ('frankfurt', )}
    for split, n in (('train', n_train), ('val', n_val)):
        for i in range(n):
            city = cities[split][i % len(cities[split])]
            name = f'{city}_{i:06d}_000019'
            img, ids = make_frame(rng, size)
            folder = osp.join(root, 'leftImg8bit', split, city)
            os.makedirs(folder, exist_ok=True)
            cv2.imwrite(osp.join(folder, name + IMG_SUFFIX), img)
            write_gtfine(root, split, city, name, ids)
    return root


def _write_jpeg(path: str, img: np.ndarray, quirk: Optional[str]) -> None:
    """Write ``img`` (BGR) to a file named .JPEG: a colour JPEG, or one of
    real ImageNet's odd files ('gray', 'cmyk', 'png')."""
    rgb = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
    if quirk is None:
        rgb.save(path, format='JPEG', quality=95)
    elif quirk == 'gray':
        rgb.convert('L').save(path, format='JPEG', quality=95)
    elif quirk == 'cmyk':
        rgb.convert('CMYK').save(path, format='JPEG', quality=95)
    elif quirk == 'png':
        rgb.save(path, format='PNG')
    else:
        raise KeyError(f'unknown file quirk {quirk!r}')


QUIRKS = ('gray', 'cmyk', 'png')


def write_imagenet(root: str,
                   n_train: int = 40,
                   n_val: int = 10,
                   size: int = 64,
                   seed: int = 1,
                   val_layout: str = 'flat') -> str:
    """Write object crops in the ImageNet layout under ``root``.

    ``train/<class>/<class>_<i>.JPEG`` (class folders, sorted names give
    the label indices) and mmpretrain's list of them, ``meta/train.txt``;
    ``val_layout='flat'``: ``val/ILSVRC2012_val_<k>.JPEG``
    with ``meta/val.txt`` ('<file> <label>' per line, as ImageNet's val set
    is distributed), ``'folders'``: ``val/<class>/*.JPEG``. The first
    training images of the first three classes are a grayscale JPEG, a CMYK
    JPEG and a PNG named .JPEG; the first val image is grayscale.

    Returns:
        str: ``root``.
    """
    if val_layout not in ('flat', 'folders'):
        raise ValueError(f"val_layout must be 'flat' or 'folders', got "
                         f'{val_layout!r}')
    rng = np.random.default_rng(seed)
    train = []
    for label, cls in enumerate(CLS_CLASSES):
        folder = osp.join(root, 'train', cls)
        os.makedirs(folder, exist_ok=True)
        for i in range(n_train):
            quirk = QUIRKS[label] if i == 0 and label < len(QUIRKS) else None
            name = f'{cls}_{i:05d}.JPEG'
            _write_jpeg(osp.join(folder, name), make_object(rng, cls, size),
                        quirk)
            train.append(f'{cls}/{name} {label}')
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    with open(osp.join(root, 'meta', 'train.txt'), 'w') as f:
        f.write('\n'.join(train) + '\n')
    lines, k = [], 0
    for i in range(n_val):
        for label, cls in enumerate(CLS_CLASSES):
            k += 1
            if val_layout == 'flat':
                name = f'ILSVRC2012_val_{k:08d}.JPEG'
                lines.append(f'{name} {label}')
            else:
                name = osp.join(cls, f'{cls}_val_{i:05d}.JPEG')
            path = osp.join(root, 'val', name)
            os.makedirs(osp.dirname(path), exist_ok=True)
            _write_jpeg(path, make_object(rng, cls, size),
                        'gray' if k == 1 else None)
    if lines:
        with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return root


def write_cifar10(root: str, n_per_batch: int = 8, seed: int = 2) -> str:
    """Write object crops (32x32, labels 0-3) as CIFAR-10's python version:
    ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``,
    pickled dicts with 'data' (N, 3072) uint8 in RGB planes and 'labels'.
    (mmpretrain's CIFAR10 also checks the official files' md5 sums, which
    generated files cannot match.)"""
    import pickle
    rng = np.random.default_rng(seed)
    folder = osp.join(root, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name in names:
        labels = [i % len(CLS_CLASSES) for i in range(n_per_batch)]
        imgs = [make_object(rng, CLS_CLASSES[k], 32)[..., ::-1]
                for k in labels]
        data = np.stack([im.transpose(2, 0, 1).reshape(-1) for im in imgs])
        with open(osp.join(folder, name), 'wb') as f:
            pickle.dump(dict(batch_label=name, labels=labels, data=data,
                             filenames=[f'{i}.png' for i in labels]), f)
    with open(osp.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump(dict(label_names=['airplane', 'automobile', 'bird',
                                      'cat', 'deer', 'dog', 'frog', 'horse',
                                      'ship', 'truck'],
                         num_cases_per_batch=n_per_batch, num_vis=3072), f)
    return root


def write_cityscapes_sequence(root: str,
                              n_seq: int = 4,
                              n_frames: int = 30,
                              annotated: Union[int, Sequence[int]] = 19,
                              size: Tuple[int, int] = (64, 128),
                              pan: int = 2,
                              split: str = 'val',
                              seed: int = 3) -> str:
    """Write video snippets as Cityscapes' ``leftImg8bit_sequence`` holds
    them, with the annotation of one frame per snippet in ``gtFine``.

    ``leftImg8bit_sequence/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit
    .png``: ``n_frames`` consecutive frame numbers per snippet, of which the
    ``annotated``-th (the 20th, as in the download) has its
    ``gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_*.png``; a sequence
    of indices annotates several frames of each snippet (denser than the
    download, for steadier video mIoU on few snippets). The frame
    numbers do not start at 0 (as in the download, where snippet
    ``frankfurt_000000`` holds frames 000275-000304 around the annotated
    000294). Moving content: the camera pans ``pan`` pixels per frame over
    a wider scene; sensor noise differs per frame; the void regions of the
    camera (hood, borders) stay in place.

    Returns:
        str: ``root``.
    """
    annotated = {annotated} if isinstance(annotated, int) else set(annotated)
    if not annotated <= set(range(n_frames)):
        raise ValueError(f'annotated frames {sorted(annotated)} are not all '
                         f'among the {n_frames} frames of a snippet')
    rng = np.random.default_rng(seed)
    h, w = size
    city = 'frankfurt' if split == 'val' else 'aachen'
    for s in range(n_seq):
        scene, train_ids = make_scene(rng, (h, w + pan * (n_frames - 1)))
        first = int(rng.integers(0, 50)) * 10 + 5
        void_seed = int(rng.integers(1 << 30))
        for t in range(n_frames):
            x0 = pan * t
            img = scene[:, x0:x0 + w].astype(np.float64)
            img = img + rng.normal(0, 3, img.shape)
            img = np.clip(img, 0, 255).astype(np.uint8)
            ids = to_label_ids(train_ids[:, x0:x0 + w].copy())
            # the same draws every frame: the void stays in camera frame
            paint_void(img, ids, np.random.default_rng(void_seed))
            name = f'{city}_{s:06d}_{first + t:06d}'
            folder = osp.join(root, 'leftImg8bit_sequence', split, city)
            os.makedirs(folder, exist_ok=True)
            cv2.imwrite(osp.join(folder, name + IMG_SUFFIX), img)
            if t in annotated:
                write_gtfine(root, split, city, name, ids)
    return root


# the street scenes' classes in the other datasets' label values: ADE20K's
# annotations count from 1 (0 is "other"), VOC's 0 is the background
ADE20K_IDS = {ROAD: 7, BUILDING: 2, VEGETATION: 5, SKY: 3, PERSON: 13, CAR: 21}
VOC_IDS = {PERSON: 15, CAR: 7}


def _relabel(lab: np.ndarray, table: dict, rest: int) -> np.ndarray:
    out = np.full(lab.shape, rest, np.uint8)
    for train_id, value in table.items():
        out[lab == train_id] = value
    return out


def write_ade20k(root: str, n_train: int = 8, n_val: int = 4,
                 size: Tuple[int, int] = (64, 128), seed: int = 0) -> str:
    """Street scenes under ``root`` as ADEChallengeData2016 holds them:
    ``images/{training,validation}/ADE_{train,val}_<8 digits>.jpg`` and
    ``annotations/...png`` with the 150 classes as 1 to 150 and 0 for
    "other" (here the void regions), which mmseg's ``reduce_zero_label``
    turns into the ignore label; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, tag, n in (('training', 'train', n_train),
                          ('validation', 'val', n_val)):
        for folder in ('images', 'annotations'):
            os.makedirs(osp.join(root, folder, split), exist_ok=True)
        for i in range(n):
            img, lab = make_frame(rng, size)
            name = f'ADE_{tag}_{i + 1:08d}'
            cv2.imwrite(osp.join(root, 'images', split, name + '.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(root, 'annotations', split, name + '.png'),
                        _relabel(lab, ADE20K_IDS, 0))
    return root


def write_voc(root: str, n_train: int = 8, n_val: int = 4, n_aug: int = 8,
              size: Tuple[int, int] = (64, 128), seed: int = 0) -> str:
    """Street scenes under ``root`` (a ``VOCdevkit/VOC2012`` folder) as
    PASCAL VOC 2012 with the SBD augmentation holds them:
    ``JPEGImages/*.jpg``; ``SegmentationClass/*.png``, palette PNGs with 0
    for the background, 1 to 20 for the classes and 255 on object
    boundaries and void; ``SegmentationClassAug/*.png``, plain index PNGs
    of every image (as the usual SBD conversion writes them);
    ``ImageSets/Segmentation/{train,val,aug}.txt``; returns ``root``."""
    from mmseg.datasets import PascalVOCDataset
    rng = np.random.default_rng(seed)
    palette = [v for rgb in PascalVOCDataset.METAINFO['palette']
               for v in rgb]
    for folder in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                   'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, folder), exist_ok=True)
    names = {'train': [], 'val': [], 'aug': []}
    for split, n in (('train', n_train), ('val', n_val), ('aug', n_aug)):
        for i in range(n):
            name = f'2012_{split}{i:06d}'
            img, lab = make_frame(rng, size)
            ids = _relabel(lab, VOC_IDS, 0)
            ids[lab == 255] = 255
            cv2.imwrite(osp.join(root, 'JPEGImages', name + '.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(root, 'SegmentationClassAug', name + '.png'),
                        ids)
            if split != 'aug':  # boundaries of the objects: 255
                edge = cv2.morphologyEx(ids, cv2.MORPH_GRADIENT,
                                        np.ones((3, 3), np.uint8)) > 0
                voc = np.where(edge & (ids > 0), 255, ids).astype(np.uint8)
                png = Image.fromarray(voc, mode='P')
                png.putpalette(palette)
                png.save(osp.join(root, 'SegmentationClass', name + '.png'))
            names[split].append(name)
    names['aug'] += names['train']
    for split, stems in names.items():
        with open(osp.join(root, 'ImageSets/Segmentation', split + '.txt'),
                  'w') as f:
            f.write('\n'.join(stems) + '\n')
    return root
