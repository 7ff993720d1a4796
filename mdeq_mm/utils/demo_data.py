# Copyright (c) mdeq_mm authors. All rights reserved.
"""Small synthetic datasets in the real on-disk formats, for the demo and
the tests.

* Street scenes in the Cityscapes layout
  (``leftImg8bit/{split}/<city>/<name>_leftImg8bit.png`` and
  ``gtFine/{split}/<city>/<name>_gtFine_labelTrainIds.png``) with six of the
  19 Cityscapes classes: road, building, vegetation, sky, person, car.
* Object crops in the ImageNet folder layout
  (``{split}/<class>/<name>.JPEG``) with four classes: building, car,
  person, vegetation.

Scenes are learnable but not trivial: every instance draws its colour from
one shared range, so no class can be told from one pixel's colour; classes
differ by shape, texture and context (window grids on buildings, speckled
foliage, wheels and windows on cars, two-tone people, lane markings on the
road, gradients and clouds in the sky), and objects overlap.
"""
import os
import os.path as osp
from typing import Tuple

import cv2
import numpy as np

ROAD, BUILDING, VEGETATION, SKY, PERSON, CAR = 0, 2, 8, 10, 11, 13
SEG_CLASSES = {
    'road': ROAD,
    'building': BUILDING,
    'vegetation': VEGETATION,
    'sky': SKY,
    'person': PERSON,
    'car': CAR
}
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


def write_cityscapes(root: str,
                     n_train: int = 160,
                     n_val: int = 24,
                     size: Tuple[int, int] = (64, 128),
                     seed: int = 0) -> str:
    """Write the street scenes in the Cityscapes layout under ``root``."""
    rng = np.random.default_rng(seed)
    cities = {'train': ('aachen', 'bochum'), 'val': ('frankfurt', )}
    for split, n in (('train', n_train), ('val', n_val)):
        for i in range(n):
            city = cities[split][i % len(cities[split])]
            name = f'{city}_{i:06d}_000019'
            img, lab = make_scene(rng, size)
            for sub, suffix, arr in (('leftImg8bit', '_leftImg8bit.png', img),
                                     ('gtFine', '_gtFine_labelTrainIds.png',
                                      lab)):
                folder = osp.join(root, sub, split, city)
                os.makedirs(folder, exist_ok=True)
                cv2.imwrite(osp.join(folder, name + suffix), arr)
    return root


def write_imagenet(root: str,
                   n_train: int = 40,
                   n_val: int = 10,
                   size: int = 64,
                   seed: int = 1) -> str:
    """Write object crops in the ImageNet folder layout under ``root``."""
    rng = np.random.default_rng(seed)
    for split, n in (('train', n_train), ('val', n_val)):
        for cls in CLS_CLASSES:
            folder = osp.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                cv2.imwrite(
                    osp.join(folder, f'{cls}_{split}_{i:05d}.JPEG'),
                    make_object(rng, cls, size),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root
