# Copyright (c) mdeq_mm authors. All rights reserved.
"""Clear errors for missing or malformed data; the Cityscapes converter."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mdeq_mm.datasets import (DatasetLayoutError, check_dataset_cfg,
                              label_ids_to_train_ids)
from mdeq_mm.utils.demo_data import write_cityscapes, write_imagenet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def city_cfg(root):
    return dict(type='CityscapesDataset', data_root=str(root),
                data_prefix=dict(img_path='leftImg8bit/train',
                                 seg_map_path='gtFine/train'))


def test_missing_cityscapes_root_names_layout_and_converter(tmp_path):
    with pytest.raises(DatasetLayoutError) as e:
        check_dataset_cfg(city_cfg(tmp_path / 'nowhere'))
    msg = str(e.value)
    assert 'leftImg8bit/{train,val}/<city>' in msg
    assert '_gtFine_labelTrainIds.png' in msg
    assert 'tools/dataset_converters/cityscapes.py' in msg


def test_raw_label_ids_point_to_the_converter_which_fixes_them(tmp_path):
    write_cityscapes(str(tmp_path), n_train=2, n_val=1)
    # turn the train-id maps into official-style label-id maps
    inverse = {0: 7, 2: 11, 8: 21, 10: 23, 11: 24, 13: 26, 255: 0}
    for dirpath, _, files in os.walk(tmp_path / 'gtFine'):
        for name in files:
            path = os.path.join(dirpath, name)
            train = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            ids = np.vectorize(inverse.get)(train).astype(np.uint8)
            cv2.imwrite(path.replace('labelTrainIds', 'labelIds'), ids)
            os.remove(path)
    with pytest.raises(DatasetLayoutError, match='convert them'):
        check_dataset_cfg(city_cfg(tmp_path))
    subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools/dataset_converters/cityscapes.py'),
        str(tmp_path)
    ], check=True, capture_output=True)
    check_dataset_cfg(city_cfg(tmp_path))  # now valid
    assert (tmp_path / 'train.txt').read_text().count('\n') == 2


def test_label_id_mapping():
    ids = np.array([[7, 8, 26], [0, 33, 34]], np.uint8)
    np.testing.assert_array_equal(label_ids_to_train_ids(ids),
                                  [[0, 1, 13], [255, 18, 255]])


def test_image_without_label_map_is_reported(tmp_path):
    write_cityscapes(str(tmp_path), n_train=2, n_val=1)
    label = next((tmp_path / 'gtFine' / 'train').rglob('*.png'))
    label.unlink()
    with pytest.raises(DatasetLayoutError, match='no label map'):
        check_dataset_cfg(city_cfg(tmp_path))


def test_folder_layout_checks(tmp_path):
    cfg = dict(type='CustomDataset', data_root=str(tmp_path),
               data_prefix='train')
    with pytest.raises(DatasetLayoutError, match='does not exist'):
        check_dataset_cfg(cfg)
    (tmp_path / 'train').mkdir()
    with pytest.raises(DatasetLayoutError, match='no class sub-folders'):
        check_dataset_cfg(cfg)
    write_imagenet(str(tmp_path), n_train=1, n_val=1)
    check_dataset_cfg(cfg)


def test_demo_scenes_are_not_colour_coded():
    """No class is recoverable from one pixel's colour: a per-colour
    lookup table learned on some scenes labels others badly."""
    from mdeq_mm.utils.demo_data import make_scene
    rng = np.random.default_rng(0)
    scenes = [make_scene(rng) for _ in range(30)]
    table = {}
    for img, lab in scenes[:20]:
        q = (img // 32).reshape(-1, 3)
        for key, cls in zip(map(tuple, q), lab.reshape(-1)):
            table.setdefault(key, []).append(cls)
    majority = {k: np.bincount(v).argmax() for k, v in table.items()}
    hits = total = 0
    for img, lab in scenes[20:]:
        q = (img // 32).reshape(-1, 3)
        pred = np.array([majority.get(tuple(k), 255) for k in q])
        hits += (pred == lab.reshape(-1)).sum()
        total += lab.size
    assert hits / total < 0.7
    # every class appears
    present = set(np.unique(np.concatenate(
        [lab.reshape(-1) for _, lab in scenes])))
    assert {0, 2, 8, 10, 11, 13} <= present
