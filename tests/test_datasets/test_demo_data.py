# Copyright (c) mdeq_mm authors. All rights reserved.
"""The generated data has the real formats and their quirks, and the real
dataset classes and loading transforms read it as they read the real
data."""
import glob
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

import mdeq_mm  # noqa: F401
from mdeq_mm.datasets.demo_data import (make_scene, write_cityscapes,
                                        write_imagenet)
from tests.helpers import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the official Cityscapes table (cityscapesScripts labels.py) for the ids
# the demo uses: label id -> train id
OFFICIAL = {0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0,
            9: 255, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13}


@pytest.fixture(scope='module')
def city(tmp_path_factory):
    return write_cityscapes(str(tmp_path_factory.mktemp('city')),
                            n_train=8, n_val=2)


def test_cityscapes_files_are_those_of_the_download(city):
    gt = sorted(glob.glob(osp.join(city, 'gtFine', '**', '*.png'),
                          recursive=True))
    suffixes = {p.rsplit('_gtFine_', 1)[1] for p in gt}
    assert suffixes == {'labelIds.png', 'instanceIds.png', 'color.png'}
    imgs = glob.glob(osp.join(city, 'leftImg8bit', '*', '*', '*.png'))
    assert len(imgs) == 10
    h, w = cv2.imread(imgs[0]).shape[:2]
    assert w == 2 * h  # Cityscapes' 2:1 aspect
    ids = np.concatenate([
        cv2.imread(p, cv2.IMREAD_UNCHANGED).ravel() for p in gt
        if p.endswith('labelIds.png')
    ])
    assert set(np.unique(ids)) <= set(OFFICIAL)
    void = np.isin(ids, [k for k, v in OFFICIAL.items() if v == 255])
    assert 0.03 < void.mean() < 0.3  # real frames: about a tenth is void
    # every void kind of a real frame appears
    assert {0, 1, 2, 3, 4, 5, 9} <= set(np.unique(ids))


def test_instance_and_colour_maps_agree_with_label_ids(city):
    stem = glob.glob(osp.join(city, 'gtFine', 'train', '*',
                              '*_labelIds.png'))[0][:-len('labelIds.png')]
    ids = cv2.imread(stem + 'labelIds.png', cv2.IMREAD_UNCHANGED)
    inst = cv2.imread(stem + 'instanceIds.png', cv2.IMREAD_UNCHANGED)
    assert inst.dtype == np.uint16
    is_instance = inst >= 1000
    np.testing.assert_array_equal(
        np.where(is_instance, inst // 1000, inst), ids)
    assert set(np.unique(ids[is_instance])) <= {24, 26}
    colour = cv2.imread(stem + 'color.png')[..., ::-1]
    np.testing.assert_array_equal(colour[ids == 7][0], (128, 64, 128))
    np.testing.assert_array_equal(colour[ids == 26][0], (0, 0, 142))


def test_converter_tool_maps_the_official_table(city, tmp_path):
    import shutil
    root = str(tmp_path / 'c')
    shutil.copytree(city, root)
    out = run_tool('dataset_converters/cityscapes', root)
    assert '10/10 label maps converted' in out
    for path in glob.glob(osp.join(root, 'gtFine', '*', '*',
                                   '*_labelIds.png')):
        ids = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        train = cv2.imread(path.replace('labelIds', 'labelTrainIds'),
                           cv2.IMREAD_UNCHANGED)
        expected = np.vectorize(OFFICIAL.get)(ids)
        np.testing.assert_array_equal(train, expected)
    assert open(osp.join(root, 'val.txt')).read().splitlines() == [
        'frankfurt/frankfurt_000000_000019',
        'frankfurt/frankfurt_000001_000019'
    ]


def test_converter_without_label_ids_names_the_download(tmp_path):
    out, rc = run_tool('dataset_converters/cityscapes', tmp_path, ok=False)
    assert rc == 1
    assert 'gtFine_trainvaltest.zip' in out
    assert 'Traceback' not in out


@pytest.fixture(scope='module')
def imnet(tmp_path_factory):
    return write_imagenet(str(tmp_path_factory.mktemp('imnet')), n_train=2,
                          n_val=2)


def test_imagenet_holds_the_real_sets_odd_files(imnet):
    files = {p: Image.open(p) for p in glob.glob(
        osp.join(imnet, 'train', '*', '*.JPEG'))}
    kinds = {(im.format, im.mode) for im in files.values()}
    assert kinds == {('JPEG', 'RGB'), ('JPEG', 'L'), ('JPEG', 'CMYK'),
                     ('PNG', 'RGB')}
    val = sorted(os.listdir(osp.join(imnet, 'val')))
    assert val[0] == 'ILSVRC2012_val_00000001.JPEG'
    assert Image.open(osp.join(imnet, 'val', val[0])).mode == 'L'
    lines = open(osp.join(imnet, 'meta', 'val.txt')).read().splitlines()
    assert len(lines) == len(val) == 8
    assert lines[0] == 'ILSVRC2012_val_00000001.JPEG 0'


@pytest.mark.parametrize('loader', ['LoadImageFromFile',
                                    'CheckedLoadImageFromFile'])
def test_odd_files_load_as_three_channel_images(imnet, loader):
    """Through mmpretrain's ImageNet class and its loading pipeline; the
    pixels equal PIL's RGB conversion (CMYK: within JPEG rounding)."""
    from mmpretrain.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(
            dict(type='ImageNet', data_root=imnet, split='train',
                 metainfo=dict(classes=['a', 'b', 'c', 'd']),
                 pipeline=[dict(type=loader)]))
    assert len(ds) == 8
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        img = ds[i]['img']
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        rgb = np.asarray(Image.open(info['img_path']).convert('RGB'))
        diff = np.abs(img[..., ::-1].astype(int) - rgb).max()
        assert diff <= 2, (info['img_path'], diff)


def test_both_val_layouts_give_the_same_labels(imnet, tmp_path):
    from mmpretrain.registry import DATASETS
    folders = write_imagenet(str(tmp_path / 'f'), n_train=2, n_val=2,
                             val_layout='folders')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        flat = DATASETS.build(dict(type='ImageNet', data_root=imnet,
                                   split='val'))
        by_folder = DATASETS.build(
            dict(type='ImageNet', data_root=folders, split='val',
                 metainfo=dict(classes=['a', 'b', 'c', 'd'])))
    assert sorted(flat.get_gt_labels()) == sorted(
        by_folder.get_gt_labels()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_demo_scenes_are_not_colour_coded():
    """No class is recoverable from one pixel's colour: a per-colour
    lookup table learned on some scenes labels others badly."""
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
    present = set(np.unique(np.concatenate(
        [lab.reshape(-1) for _, lab in scenes])))
    assert {0, 2, 8, 10, 11, 13} <= present
