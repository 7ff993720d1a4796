# Copyright (c) mdeq_mm authors. All rights reserved.
"""Clear errors, naming the file and the fix, for the mistakes users make
with real data: at start-up (check_dataset_cfg), on load (the checked
transforms), and through the tools (one line, no traceback)."""
import glob
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope

import mdeq_mm  # noqa: F401
from mdeq_mm.datasets import (DataFileError, DatasetLayoutError,
                              check_dataset_cfg, label_ids_to_train_ids)
from mdeq_mm.datasets.demo_data import write_cityscapes, write_imagenet
from tests.helpers import cityscapes_train_ids, run_tool

SEG = 'configs/demo/mdeq-demo_seg.py'
CLS = 'configs/demo/mdeq-demo_cls.py'


def city_cfg(root, split='train'):
    return dict(type='CityscapesDataset', data_root=str(root),
                data_prefix=dict(img_path=f'leftImg8bit/{split}',
                                 seg_map_path=f'gtFine/{split}'))


@pytest.fixture
def city(tmp_path):
    return cityscapes_train_ids(tmp_path / 'city', n_train=3, n_val=1)


def first(root, pattern):
    return sorted(glob.glob(osp.join(root, '**', pattern),
                            recursive=True))[0]


def truncate(path, keep=0.5):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:int(len(data) * keep)])


def test_missing_cityscapes_root_names_layout_and_converter(tmp_path):
    with pytest.raises(DatasetLayoutError) as e:
        check_dataset_cfg(city_cfg(tmp_path / 'nowhere'))
    msg = str(e.value)
    assert 'leftImg8bit/{train,val}/<city>' in msg
    assert '_gtFine_labelTrainIds.png' in msg
    assert 'tools/dataset_converters/cityscapes.py' in msg


def test_only_label_ids_point_to_the_converter_which_fixes_them(tmp_path):
    root = write_cityscapes(str(tmp_path), n_train=2, n_val=1)
    with pytest.raises(DatasetLayoutError,
                       match=r'2 \*_gtFine_labelIds.png files .* convert'):
        check_dataset_cfg(city_cfg(root))
    run_tool('dataset_converters/cityscapes', root)
    check_dataset_cfg(city_cfg(root))  # now valid
    assert (tmp_path / 'train.txt').read_text().count('\n') == 2


def test_label_ids_used_as_train_ids_name_the_file(tmp_path):
    root = write_cityscapes(str(tmp_path), n_train=2, n_val=1)
    raw = first(root, '*_labelIds.png')
    for path in glob.glob(osp.join(root, 'gtFine', '**', '*_labelIds.png'),
                          recursive=True):
        shutil.copy(path, path.replace('labelIds', 'labelTrainIds'))
    with pytest.raises(DataFileError) as e:
        check_dataset_cfg(city_cfg(root))
    msg = str(e.value)
    assert raw.replace('labelIds', 'labelTrainIds') in msg
    assert 'raw Cityscapes label ids' in msg and '21' in msg
    assert 'tools/dataset_converters/cityscapes.py' in msg


def test_label_map_of_another_size_names_both_files(city):
    lab = first(city, '*_labelTrainIds.png')
    cv2.imwrite(lab, np.zeros((32, 64), np.uint8))
    with pytest.raises(DataFileError) as e:
        check_dataset_cfg(city_cfg(city))
    assert lab in str(e.value) and '_leftImg8bit.png' in str(e.value)
    assert '64x32' in str(e.value) and '128x64' in str(e.value)


def test_image_without_label_map_is_reported(city):
    os.remove(first(osp.join(city, 'gtFine', 'train'),
                    '*_labelTrainIds.png'))
    with pytest.raises(DatasetLayoutError, match='no label map'):
        check_dataset_cfg(city_cfg(city))


def test_empty_splits(tmp_path, city):
    for path in glob.glob(osp.join(city, 'leftImg8bit', 'val', '*', '*')):
        os.remove(path)
    with pytest.raises(DatasetLayoutError, match='the split is empty'):
        check_dataset_cfg(city_cfg(city, 'val'))
    root = write_imagenet(str(tmp_path / 'imnet'), n_train=1, n_val=1)
    open(osp.join(root, 'meta', 'val.txt'), 'w').close()
    with pytest.raises(DatasetLayoutError, match='val.txt lists no images'):
        check_dataset_cfg(dict(type='ImageNet', data_root=root,
                               split='val'))
    (tmp_path / 'imnet' / 'none').mkdir()
    with pytest.raises(DatasetLayoutError, match='the split is empty'):
        check_dataset_cfg(dict(type='CustomDataset', data_root=root,
                               data_prefix='none'))


def test_flat_val_without_annotation_file(tmp_path):
    root = write_imagenet(str(tmp_path), n_train=1, n_val=1)
    check_dataset_cfg(dict(type='ImageNet', data_root=root, split='val'))
    os.remove(osp.join(root, 'meta', 'val.txt'))
    with pytest.raises(DatasetLayoutError) as e:
        check_dataset_cfg(dict(type='ImageNet', data_root=root,
                               split='val'))
    msg = str(e.value)
    assert 'no annotation file' in msg
    assert osp.join(root, 'meta', 'val') + '.txt' in msg
    assert 'ILSVRC2012_val_00000001.JPEG 65' in msg


def test_class_folder_count_must_match_the_classes(tmp_path):
    root = write_imagenet(str(tmp_path), n_train=1, n_val=1,
                          val_layout='folders')
    with pytest.raises(DatasetLayoutError, match='4 class folders but the '
                       'dataset expects 1000'):
        check_dataset_cfg(dict(type='ImageNet', data_root=root,
                               split='val'))
    check_dataset_cfg(dict(type='ImageNet', data_root=root, split='val',
                           metainfo=dict(classes=list('abcd'))))


def test_label_id_mapping():
    ids = np.array([[7, 8, 26], [0, 33, 34]], np.uint8)
    np.testing.assert_array_equal(label_ids_to_train_ids(ids),
                                  [[0, 1, 13], [255, 18, 255]])


# ---------------------------------------------------------------- on load
def build(typ, **kwargs):
    from mmseg.registry import TRANSFORMS
    with DefaultScope.overwrite_default_scope('mmseg'):
        return TRANSFORMS.build(dict(type=typ, **kwargs))


def load(city, image_kw=None, label_kw=None):
    img = first(city, '*_leftImg8bit.png')
    name = osp.basename(img)[:-len('_leftImg8bit.png')]
    lab = first(city, name + '_gtFine_labelTrainIds.png')
    results = dict(img_path=img, seg_map_path=lab, reduce_zero_label=False,
                   seg_fields=[])
    results = build('CheckedLoadImageFromFile', **(image_kw or {}))(results)
    if results is None:
        return None
    return build('CheckedLoadAnnotations', **(label_kw or {}))(results)


def test_checked_loading_equals_mmseg_loading_on_good_files(city):
    from mmseg.datasets.transforms import LoadAnnotations
    from mmcv.transforms import LoadImageFromFile
    ours = load(city, label_kw=dict(num_classes=19))
    theirs = LoadAnnotations()(LoadImageFromFile()(dict(
        img_path=ours['img_path'], seg_map_path=ours['seg_map_path'],
        reduce_zero_label=False, seg_fields=[])))
    np.testing.assert_array_equal(ours['img'], theirs['img'])
    np.testing.assert_array_equal(ours['gt_seg_map'], theirs['gt_seg_map'])
    assert 255 in ours['gt_seg_map']  # void pixels


def test_truncated_image_is_named_or_skipped(city):
    img = first(city, '*_leftImg8bit.png')
    truncate(img)
    check_dataset_cfg(city_cfg(city))  # the header is intact
    with pytest.raises(DataFileError) as e:
        load(city)
    assert img in str(e.value) and 'IEND' in str(e.value)
    skip = build('CheckedLoadImageFromFile', on_bad_file='skip')
    assert skip(dict(img_path=img)) is None and skip.skipped == 1


def test_truncated_jpeg_is_caught_though_opencv_decodes_it(tmp_path):
    """cv2 fills the missing rows with grey and warns on stderr only."""
    root = write_imagenet(str(tmp_path), n_train=1, n_val=1)
    path = osp.join(root, 'train', 'vegetation', 'vegetation_00000.JPEG')
    truncate(path, 0.7)
    assert cv2.imread(path) is not None  # what mmcv would accept
    with pytest.raises(DataFileError, match='end-of-image marker'):
        build('CheckedLoadImageFromFile')(dict(img_path=path))


def test_label_checks_on_load(city):
    lab = first(city, '*_labelTrainIds.png')
    raw = lab.replace('labelTrainIds', 'labelIds')
    shutil.copy(raw, lab)
    with pytest.raises(DataFileError, match='raw Cityscapes label ids'):
        load(city, label_kw=dict(num_classes=19))
    cv2.imwrite(lab, np.zeros((64, 100), np.uint8))
    with pytest.raises(DataFileError, match='is 100x64 but its image'):
        load(city)
    cv2.imwrite(lab, np.zeros((64, 128, 3), np.uint8))
    with pytest.raises(DataFileError, match='has one channel'):
        load(city)
    # 16 bits: mmseg's uint8 cast would read 258 as class 2
    wide = np.full((64, 128), 2, np.uint16)
    wide[0, 0] = 258
    cv2.imwrite(lab, wide)
    assert cv2.imread(lab, cv2.IMREAD_UNCHANGED).dtype == np.uint16
    with pytest.raises(DataFileError, match='a 16-bit label map'):
        load(city, label_kw=dict(num_classes=19))


# --------------------------------------------------------- through the tools
def seg_opts(root, workers=0):
    return ['--cfg-options'] + [
        f'{n}.dataset.data_root={root}' for n in
        ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
         f'train_dataloader.num_workers={workers}']


@pytest.mark.slow
def test_train_tool_names_raw_label_ids_in_one_line(tmp_path):
    root = write_cityscapes(str(tmp_path / 'c'), n_train=2, n_val=1)
    for path in glob.glob(osp.join(root, 'gtFine', '**', '*_labelIds.png'),
                          recursive=True):
        shutil.copy(path, path.replace('labelIds', 'labelTrainIds'))
    out, rc = run_tool('train', SEG, '--work-dir', str(tmp_path / 'w'),
                       *seg_opts(root), ok=False)
    assert rc == 1 and 'Traceback' not in out
    assert 'Dataset error: ' in out and 'labelTrainIds.png: holds' in out


@pytest.mark.slow
def test_train_tool_names_a_truncated_image_from_a_worker(tmp_path):
    root = cityscapes_train_ids(tmp_path / 'c', n_train=2, n_val=1)
    bad = first(osp.join(root, 'leftImg8bit', 'train'), '*.png')
    truncate(bad)
    out, rc = run_tool('train', SEG, '--work-dir', str(tmp_path / 'w'),
                       *seg_opts(root, workers=1), ok=False)
    assert rc == 1, out[-2000:]
    line = next(s for s in out.splitlines() if 'Dataset error' in s)
    assert bad in line and 'IEND' in line
