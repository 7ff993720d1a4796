# Copyright (c) mdeq_mm authors. All rights reserved.
"""The converter against every key file of the original checkpoints."""
import ast
import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mdeq_mm.converters import (ConversionError, build_target,
                                check_against_model, convert)
from mdeq_mm.converters.__main__ import main

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the original checkpoints' key names and shapes (copied from the
# reference notes, so that a clone runs these tests on its own)
KEYS = osp.join(ROOT, 'tests', 'data', 'locuslab_keys')
FILES = sorted(glob.glob(osp.join(KEYS, '*.txt')))


def original_state(path, seed=0, shapes=None):
    """Random tensors with the listed keys and shapes (segmentation files
    get the ``model.`` prefix and the loss weights of the real files)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    with open(path) as f:
        for line in f:
            name, shape = line.rstrip('\n').split('\t')
            shape = ast.literal_eval(shape)
            if shapes:
                shape = tuple(shapes.get(s, s) for s in shape)
            if name.endswith('num_batches_tracked'):
                state[name] = torch.tensor(100)
            elif name.endswith('running_var'):
                state[name] = torch.rand(shape, generator=g) + 0.5
            else:
                state[name] = 0.1 * torch.randn(shape, generator=g)
    if '_seg_' in osp.basename(path):
        state = {f'model.{k}': v for k, v in state.items()}
        state['loss.criterion.weight'] = torch.rand(19, generator=g)
    return state


def task_of(path):
    return 'seg' if '_seg_' in osp.basename(path) else 'cls'


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """Convert every key file once; build each target model once."""
    tmp = tmp_path_factory.mktemp('ckpts')
    out = {}
    for path in FILES:
        src = tmp / (osp.basename(path) + '.pth')
        original = original_state(path)
        torch.save(original, src)
        result = convert(str(src), task_of(path))
        model = build_target(result['config'], result['cfg_options'])
        out[osp.basename(path)] = (original, result, model)
    return out


def test_every_key_file_is_present():
    assert len(FILES) == 13


@pytest.mark.parametrize('name', [osp.basename(p) for p in FILES])
def test_converts_and_loads_strictly(converted, name):
    original, result, model = converted[name]
    assert result['unmapped'] == []
    assert check_against_model(result['state_dict'], model) == []
    model.load_state_dict(result['state_dict'], strict=True)
    info = result['info']
    assert info['format'] == ('deq-v2' if name.startswith('keysv2') else
                              'mdeq')
    n_copies = sum(k.split('model.')[-1].startswith(
        ('fullstage_copy.', 'deq.func.', 'deq.func_copy.')) for k in original)
    assert len(result['dropped']) == n_copies + ('_seg_' in name)
    assert len(result['state_dict']) + len(result['dropped']) == len(
        original)


@pytest.mark.parametrize('name', [osp.basename(p) for p in FILES])
def test_weight_norm_weights_are_g_v_over_norm_v(converted, name):
    original, result, model = converted[name]
    prefix = 'model.' if '_seg_' in name else ''
    g = original[prefix + 'fullstage.branches.0.blocks.0.conv1.weight_g']
    v = original[prefix + 'fullstage.branches.0.blocks.0.conv1.weight_v']
    model.load_state_dict(result['state_dict'])
    conv = model.backbone.deq_layer.branches[0].blocks[0].conv1
    expected = g * v / v.flatten(1).norm(dim=1)[:, None, None, None]
    torch.testing.assert_close(conv.compute_weight(), expected)
    copy = original.get(prefix +
                        'fullstage_copy.branches.0.blocks.0.conv1.weight')
    if copy is not None:  # the lagging copy is not what we load
        assert not torch.allclose(copy, expected)


def _bn(x, state, prefix):
    return F.batch_norm(x, state[prefix + 'running_mean'],
                        state[prefix + 'running_var'],
                        state.get(prefix + 'weight'),
                        state.get(prefix + 'bias'), False, 0., 1e-5)


def reference_cls_head(state, feats):
    """The reference classification head computed from original keys."""
    y = None
    for i, x in enumerate(feats):
        p = f'incre_modules.{i}.0.'
        t = F.relu(_bn(F.conv2d(x, state[p + 'conv1.weight']), state,
                       p + 'bn1.'))
        t = F.relu(_bn(F.conv2d(t, state[p + 'conv2.weight'], padding=1),
                       state, p + 'bn2.'))
        t = _bn(F.conv2d(t, state[p + 'conv3.weight']), state, p + 'bn3.')
        short = _bn(F.conv2d(x, state[p + 'downsample.0.weight']), state,
                    p + 'downsample.1.')
        inc = F.relu(t + short)
        if y is None:
            y = inc
        else:
            q = f'downsamp_modules.{i - 1}.'
            down = F.relu(_bn(
                F.conv2d(y, state[q + '0.weight'], state[q + '0.bias'],
                         stride=2, padding=1), state, q + '1.'))
            y = inc + down
    y = F.relu(_bn(F.conv2d(y, state['final_layer.0.weight'],
                            state['final_layer.0.bias']), state,
                   'final_layer.1.'))
    y = y.mean((2, 3))
    return F.linear(y, state['classifier.weight'], state['classifier.bias'])


@pytest.mark.parametrize('name', [
    'keys_cifar_cls_mdeq_TINY.yaml.txt',
    'keys_imagenet_cls_mdeq_SMALL.yaml.txt',
    'keysv2_experiments_imagenet_cls_mdeq_SMALL_reg.yaml.txt'
])
def test_classification_head_equals_reference_computation(converted, name):
    original, result, model = converted[name]
    model.load_state_dict(result['state_dict'])
    model.eval()
    channels = result['info']['channels']
    torch.manual_seed(0)
    feats = tuple(torch.randn(2, c, 16 // 2**i, 16 // 2**i)
                  for i, c in enumerate(channels))
    with torch.no_grad():
        ours = model.head.fc(model.neck(feats)[0])
        ref = reference_cls_head(original, feats)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_segmentation_head_equals_reference_computation(converted):
    original, result, model = converted['keys_cityscapes_seg_mdeq_SMALL'
                                        '.yaml.txt']
    state = {k[len('model.'):]: v for k, v in original.items()
             if k.startswith('model.')}
    model.load_state_dict(result['state_dict'])
    model.eval()
    torch.manual_seed(0)
    feats = [torch.randn(1, c, 16 // 2**i, 32 // 2**i)
             for i, c in enumerate((32, 64, 128, 256))]
    x = torch.cat([feats[0]] + [
        F.interpolate(f, size=(16, 32), mode='bilinear', align_corners=True)
        for f in feats[1:]
    ], 1)
    y = F.relu(_bn(F.conv2d(x, state['last_layer.0.weight'],
                            state['last_layer.0.bias']), state,
                   'last_layer.1.'))
    ref = F.conv2d(y, state['last_layer.3.weight'], state['last_layer.3.bias'])
    with torch.no_grad():
        ours = model.decode_head(feats)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def reference_f(state, z, x0, groups=8):
    """One application of the reference f_θ from original keys."""

    def wn(p):
        g, v = state[p + 'weight_g'], state[p + 'weight_v']
        return g * v / v.flatten(1).norm(dim=1)[:, None, None, None]

    def gn(t, p, ng):
        return F.group_norm(t, ng, state.get(p + 'weight'),
                            state.get(p + 'bias'))

    n = len(z)
    blocks = []
    for i in range(n):
        p = f'fullstage.branches.{i}.blocks.0.'
        t = F.relu(gn(F.conv2d(z[i], wn(p + 'conv1.'), padding=1), p + 'gn1.',
                      groups))
        t = F.conv2d(t, wn(p + 'conv2.'), padding=1)
        if i == 0:
            t = t + x0
        t = gn(t, p + 'gn2.', groups) + z[i]
        blocks.append(gn(F.relu(t), p + 'gn3.', groups))
    out = []
    for i in range(n):
        y = blocks[i]
        for j in range(n):
            p = f'fullstage.fuse_layers.{i}.{j}.net.'
            if j > i:
                t = gn(F.conv2d(blocks[j], state[p + 'conv.weight']),
                       p + 'gnorm.', groups)
                y = y + F.interpolate(t, scale_factor=2**(j - i),
                                      mode='nearest')
            elif j < i:
                t = blocks[j]
                for k in range(i - j):
                    q = f'{p}{k}.'
                    t = gn(F.conv2d(t, state[q + 'conv.weight'], stride=2,
                                    padding=1), q + 'gnorm.', groups)
                    if k < i - j - 1:
                        t = F.relu(t)
                y = y + t
        p = f'fullstage.post_fuse_layers.{i}.'
        y = F.conv2d(F.relu(y), wn(p + 'conv.'))
        out.append(gn(y, p + 'gnorm.', groups // 2))
    return out


@pytest.mark.parametrize('name', [
    'keys_cifar_cls_mdeq_TINY.yaml.txt',
    'keys_cityscapes_seg_mdeq_SMALL.yaml.txt',
    'keysv2_experiments_cifar_cls_mdeq_LARGE.yaml.txt'
])
def test_mdeq_layer_equals_reference_computation(converted, name):
    original, result, model = converted[name]
    state = {k[len('model.'):] if k.startswith('model.') else k: v
             for k, v in original.items()}
    model.load_state_dict(result['state_dict'])
    model.eval()
    layer = model.backbone.deq_layer
    torch.manual_seed(0)
    channels = result['info']['channels']
    z = [torch.randn(2, c, 16 // 2**i, 16 // 2**i)
         for i, c in enumerate(channels)]
    x0 = torch.randn(2, channels[0], 16, 16)
    layer.reset()
    with torch.no_grad():
        ours = layer(z, [x0] + [None] * (len(z) - 1))
        ref = reference_f(state, z, x0)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cli_writes_weights_only_file_and_names_the_config(tmp_path, capsys):
    path = osp.join(KEYS, 'keysv2_experiments_imagenet_cls_mdeq_SMALL_reg'
                    '.yaml.txt')
    src, dst = tmp_path / 'reg.pkl', tmp_path / 'out' / 'reg.pth'
    torch.save(original_state(path), src)
    assert main('cls', [str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'deq-v2 format' in out and 'non-affine' in out
    assert 'configs/mdeq/mdeq-small_4xb32_in1k.py' in out
    assert 'model.backbone.post_gn_affine=False' in out
    assert 'model.neck.0.head_channels=[28, 56, 112, 224]' in out
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['source_format'] == 'deq-v2'


def test_truncated_file_gives_a_clear_error(tmp_path, capsys):
    src = tmp_path / 'small.pkl'
    torch.save(original_state(osp.join(
        KEYS, 'keys_cifar_cls_mdeq_TINY.yaml.txt')), src)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    assert main('cls', [str(src), str(tmp_path / 'o.pth')]) == 2
    assert 'cannot read' in capsys.readouterr().err


def test_wrong_task_names_the_right_converter(tmp_path, capsys):
    src = tmp_path / 'seg.pkl'
    torch.save(original_state(osp.join(
        KEYS, 'keys_cityscapes_seg_mdeq_SMALL.yaml.txt')), src)
    assert main('cls', [str(src), str(tmp_path / 'o.pth')]) == 2
    err = capsys.readouterr().err
    assert 'segmentation checkpoint' in err and 'mdeq2mmseg.py' in err


def test_unknown_architecture_is_refused(tmp_path):
    src = tmp_path / 'odd.pkl'
    torch.save(original_state(osp.join(
        KEYS, 'keys_cifar_cls_mdeq_TINY.yaml.txt'), shapes={24: 16, 120: 80}),
        src)
    with pytest.raises(ConversionError, match='unknown MDEQ architecture'):
        convert(str(src), 'cls')
