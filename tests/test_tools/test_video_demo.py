# Copyright (c) mdeq_mm authors. All rights reserved.
"""tools/video_demo.py on generated .mp4 files: the overlay video, the
warm-start saving it reports, scene cuts."""
import json

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import make_contractive, run_tool

SEG = 'configs/demo/mdeq-demo_seg.py'


def texture(seed, width=400):
    """A smooth 64 x ``width`` BGR texture."""
    noise = np.random.RandomState(seed).randint(0, 255, (64, width, 3))
    blur = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 6)
    return cv2.normalize(blur, None, 0, 255, cv2.NORM_MINMAX).astype(
        np.uint8)


def write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'),
                             10, (128, 64))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return str(path)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The demo segmentor with a contractive f (its solve converges)."""
    from mdeq_mm.apis import find_mdeq, init_model
    model = init_model(SEG)
    make_contractive(find_mdeq(model))
    path = tmp_path_factory.mktemp('video') / 'model.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


def demo(video, ckpt, out, *extra):
    text = run_tool('video_demo', video, SEG, ckpt, '--out', out, '--tol',
                    '1e-4', '--cfg-options',
                    'model.backbone.eval_solver_cfg.max_iter=39', *extra)
    with open(str(out)[:-4] + '.json') as f:
        return text, json.load(f)


@pytest.mark.slow
def test_video_in_overlay_out_with_fewer_evaluations_warm(checkpoint,
                                                          tmp_path):
    # a camera pan of 8 px per frame over a smooth scene
    scene = texture(0)
    video = write_video(tmp_path / 'pan.mp4',
                        [scene[:, 8 * t:8 * t + 128] for t in range(12)])
    out = tmp_path / 'out.mp4'
    text, result = demo(video, checkpoint, out, '--compare-cold', '6')
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    assert ok and frame.shape == (64, 128, 3)
    s = result['summary']
    assert s['frames'] == 12 and s['cuts'] == 0 and s['compared'] == 6
    # the same tolerance reached both ways, with >= 2x fewer evaluations
    assert s['warm_residual'] < 1e-4 and s['cold_residual'] < 1e-4
    assert s['cold_nfev'] >= 2 * s['warm_nfev']
    assert [r['warm'] for r in result['frames']] == [False] + [True] * 11
    assert 'fewer' in text and 'fps' in text


@pytest.mark.slow
def test_a_scene_cut_starts_cold(checkpoint, tmp_path):
    a, b = texture(0), texture(1)
    video = write_video(tmp_path / 'cut.mp4',
                        [a[:, 4 * t:4 * t + 128] for t in range(4)] +
                        [b[:, 4 * t:4 * t + 128] for t in range(4)])
    _, result = demo(video, checkpoint, tmp_path / 'out.mp4',
                     '--compare-cold', '0')
    frames = result['frames']
    assert [r['cut'] for r in frames] == [False] * 4 + [True] + [False] * 3
    assert [r['warm'] for r in frames] == [False, True, True, True] * 2
    assert 'compared' not in result['summary']
