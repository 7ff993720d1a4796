# Copyright (c) mdeq_mm authors. All rights reserved.
"""Cityscapes leftImg8bit_sequence: the demo snippets' layout and motion,
and the reader's grouping, gaps and labels."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mdeq_mm.datasets import (cityscapes_sequences, convert_cityscapes,
                              label_ids_to_train_ids, read_train_ids)
from mdeq_mm.datasets.demo_data import write_cityscapes_sequence


@pytest.fixture(scope='module')
def seq_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('seq'))
    write_cityscapes_sequence(root, n_seq=2, n_frames=6, annotated=4,
                              pan=2)
    return root


def test_snippets_follow_the_download_layout(seq_root):
    snippets = cityscapes_sequences(seq_root, 'val')
    assert len(snippets) == 2
    for snip in snippets:
        assert len(snip.frames) == 6
        names = [osp.basename(p) for p in snip.frames]
        assert all(n.startswith('frankfurt_') and
                   n.endswith('_leftImg8bit.png') for n in names)
        numbers = [int(n.split('_')[2]) for n in names]
        assert numbers == list(range(numbers[0], numbers[0] + 6))
        assert numbers[0] > 0  # frame numbers do not start at 0
        assert snip.annotated == [4]
        assert snip.labels[0].endswith(
            f'{names[4][:-len("_leftImg8bit.png")]}_gtFine_labelIds.png')
        assert '/leftImg8bit_sequence/val/frankfurt/' in snip.frames[0]


def test_content_moves_by_the_pan_between_frames(seq_root):
    frames = cityscapes_sequences(seq_root)[0].frames
    a, b = (cv2.imread(p).astype(float) for p in frames[1:3])
    inner = (slice(8, 40), slice(10, 100))  # above the hood, off borders
    shifted = np.abs(b[:, :-2] - a[:, 2:])[inner].mean()
    still = np.abs(b - a)[inner].mean()
    assert shifted < 0.5 * still


def test_labels_are_read_as_train_ids_before_and_after_conversion(
        seq_root, tmp_path):
    snip = cityscapes_sequences(seq_root)[0]
    ids = cv2.imread(snip.labels[0], cv2.IMREAD_UNCHANGED)
    expected = label_ids_to_train_ids(ids)
    np.testing.assert_array_equal(read_train_ids(snip.labels[0]), expected)
    assert set(np.unique(expected)) - {0, 2, 8, 10, 11, 13, 255} == set()
    convert_cityscapes(seq_root)
    snip = cityscapes_sequences(seq_root)[0]
    assert snip.labels[0].endswith('_gtFine_labelTrainIds.png')
    np.testing.assert_array_equal(read_train_ids(snip.labels[0]), expected)


def test_a_gap_in_frame_numbers_splits_the_snippet(tmp_path):
    root = str(tmp_path)
    write_cityscapes_sequence(root, n_seq=1, n_frames=6, annotated=4)
    frames = cityscapes_sequences(root)[0].frames
    os.remove(frames[2])
    parts = cityscapes_sequences(root)
    assert [len(p.frames) for p in parts] == [2, 3]
    assert parts[0].annotated == [] and parts[1].annotated == [1]


def test_missing_or_misnamed_frames_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='leftImg8bit_sequence'):
        cityscapes_sequences(str(tmp_path))
    folder = tmp_path / 'leftImg8bit_sequence' / 'val' / 'x'
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / 'x_1_2_leftImg8bit.png'),
                np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='<seq:6 digits>'):
        cityscapes_sequences(str(tmp_path))


def test_several_annotated_frames_per_snippet_are_all_found(tmp_path):
    """Denser than the download (the benchmark's demo video): each listed
    frame gets its label, matching the frame's own content."""
    root = str(tmp_path)
    write_cityscapes_sequence(root, n_seq=1, n_frames=8, annotated=(1, 5, 7),
                              pan=4)
    snip = cityscapes_sequences(root)[0]
    assert snip.annotated == [1, 5, 7]
    for k, label in zip(snip.annotated, snip.labels):
        stem = osp.basename(snip.frames[k])[:-len('_leftImg8bit.png')]
        assert osp.basename(label) == stem + '_gtFine_labelIds.png'
    # each label is its own frame's: frames 5 and 7 differ by a 8 px pan
    a, b = (read_train_ids(p) for p in snip.labels[1:])
    inner = (slice(8, 40), slice(10, 100))  # above the hood, off borders
    assert (a != b)[inner].mean() > 0.02
    assert (b[:, :-8] != a[:, 8:])[inner].mean() < 0.2 * (a != b)[inner].mean()
    with pytest.raises(ValueError, match='among the 8 frames'):
        write_cityscapes_sequence(root, n_seq=1, n_frames=8, annotated=8)
