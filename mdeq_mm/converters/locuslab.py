# Copyright (c) mdeq_mm authors. All rights reserved.
"""Convert the original MDEQ checkpoints (locuslab/mdeq and locuslab/deq)
to mdeq_mm state dicts for mmpretrain and mmseg.

Formats recognised:

* ``mdeq``: locuslab/mdeq. A raw state dict with the duplicated trees
  ``fullstage_copy.*``, ``deq.func.*`` and ``deq.func_copy.*``; segmentation
  files prefix every key with ``model.`` and add ``loss.criterion.weight``.
* ``deq-v2``: locuslab/deq (MDEQ-Vision). No copy trees; the post-fusion
  GroupNorm may be non-affine (``POST_GN_AFFINE: False``).

Recipe: drop the copy trees (their plain weights lag the last optimiser step)
and keep the weight-norm ``weight_g``/``weight_v`` (mdeq_mm's own parameter
names, so W = g·v/‖v‖ is recomputed, never taken from a copy); rename the
Sequential indices to mdeq_mm's modules. Nothing needs folding: mdeq_mm's
classification neck keeps the reference's affine-free BatchNorms and biased
convs, and its segmentation head's 1x1 conv keeps its bias.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from mdeq_mm.apis import config_path

COPY_PREFIXES = ('fullstage_copy.', 'deq.func.', 'deq.func_copy.')
COPY_REASON = ('duplicate tree (no-grad copy / deq wrapper); weights come '
               'from fullstage g and v')
# the repository (configs/ lives here in a checkout / editable install)

# (regex on the original key, replacement); applied in order, first match
_BACKBONE = [
    (r'^downsample\.0\.(.*)$', r'backbone.conv1.\1'),
    (r'^downsample\.1\.(.*)$', r'backbone.bn1.\1'),
    (r'^downsample\.3\.(.*)$', r'backbone.conv2.\1'),
    (r'^downsample\.4\.(.*)$', r'backbone.bn2.\1'),
    (r'^stage0\.0\.(.*)$', r'backbone.stage0.conv.\1'),
    (r'^stage0\.1\.(.*)$', r'backbone.stage0.bn.\1'),
    (r'^fullstage\.(.*)$', r'backbone.deq_layer.\1'),
]
_CLS = [
    (r'^incre_modules\.(\d+)\.0\.(.*)$', r'neck.0.incre_modules.\1.\2'),
    (r'^downsamp_modules\.(\d+)\.0\.(.*)$',
     r'neck.0.downsamp_modules.\1.conv.\2'),
    (r'^downsamp_modules\.(\d+)\.1\.(.*)$',
     r'neck.0.downsamp_modules.\1.bn.\2'),
    (r'^final_layer\.0\.(.*)$', r'neck.0.final_layer.conv.\1'),
    (r'^final_layer\.1\.(.*)$', r'neck.0.final_layer.bn.\1'),
    (r'^classifier\.(.*)$', r'head.fc.\1'),
]
_SEG = [
    (r'^last_layer\.0\.(.*)$', r'decode_head.convs.0.conv.\1'),
    (r'^last_layer\.1\.(.*)$', r'decode_head.convs.0.bn.\1'),
    (r'^last_layer\.3\.(.*)$', r'decode_head.conv_seg.\1'),
]

# mdeq_mm configs by (task, backbone channels, expansion)
CONFIGS = {
    ('cls', (24, 24), 5): 'configs/mdeq/mdeq-tiny_2xb64_cifar10.py',
    ('cls', (32, 64, 128, 256), 5, 10):
    'configs/mdeq/mdeq-large_4xb32_cifar10.py',
    ('cls', (32, 64, 128, 256), 5, 1000):
    'configs/mdeq/mdeq-small_4xb32_in1k.py',
    ('cls', (32, 64, 128, 256), 5): 'configs/mdeq/mdeq-small_4xb32_in1k.py',
    ('cls', (80, 160, 320, 640), 5): 'configs/mdeq/mdeq-large_4xb28_in1k.py',
    ('cls', (88, 176, 352, 704), 6): 'configs/mdeq/mdeq-xl_8xb24_in1k.py',
    ('seg', (32, 64, 128, 256), 5):
    'configs/mdeq/mdeq-small_4xb3-124k_cityscapes-512x1024.py',
    ('seg', (80, 160, 320, 640), 5):
    'configs/mdeq/mdeq-large_4xb3-124k_cityscapes-512x1024.py',
    ('seg', (88, 176, 352, 704), 6):
    'configs/mdeq/mdeq-xl_8xb2-93k_cityscapes-768x1024.py',
}


class ConversionError(ValueError):
    """The input is not a checkpoint this converter can map."""


def load_original(path: str) -> Dict[str, torch.Tensor]:
    """Read an original checkpoint (raw state dict, maybe wrapped)."""
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ConversionError(
            f'cannot read {path}: {type(e).__name__}: {e}. Is the file '
            'complete (re-download it) and a PyTorch checkpoint?') from e
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict) and obj[key] and all(
                    isinstance(v, torch.Tensor) for v in obj[key].values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f'{path} holds no state dict of tensors')
    return dict(obj)


def strip(state: Dict[str, torch.Tensor]
          ) -> Tuple[Dict[str, torch.Tensor], List[Tuple[str, str]]]:
    """Remove ``model.`` prefixes, loss weights and the copy trees.

    Returns:
        (state, dropped) with ``dropped`` a list of (key, reason).
    """
    dropped, out = [], {}
    for key, value in state.items():
        if key.startswith('loss.'):
            dropped.append((key, 'loss weights (class weights of the CE)'))
            continue
        name = key[len('model.'):] if key.startswith('model.') else key
        if name.startswith(COPY_PREFIXES):
            dropped.append((key, COPY_REASON))
            continue
        out[name] = value
    return out, dropped


def describe(state: Dict[str, torch.Tensor], had_copies: bool) -> dict:
    """Recognise task, format and architecture from keys and shapes."""
    if not any(k.startswith('fullstage.branches.') for k in state):
        raise ConversionError(
            'no fullstage.branches.* keys: not an MDEQ checkpoint of '
            'locuslab/mdeq or locuslab/deq')
    if 'last_layer.3.weight' in state:
        task = 'seg'
    elif 'classifier.weight' in state:
        task = 'cls'
    else:
        raise ConversionError('neither last_layer.* (segmentation) nor '
                              'classifier.* (classification) keys found')
    n = 1 + max(int(m.group(1)) for k in state
                for m in [re.match(r'fullstage\.branches\.(\d+)\.', k)] if m)
    channels = tuple(
        state[f'fullstage.branches.{i}.blocks.0.gn2.weight'].shape[0]
        for i in range(n))
    expansion = state['fullstage.branches.0.blocks.0.gn1.weight'].shape[
        0] // channels[0]
    info = dict(
        task=task,
        format='mdeq' if had_copies else 'deq-v2',
        channels=channels,
        expansion=expansion,
        stage0='stage0.0.weight' in state,
        post_gn_affine='fullstage.post_fuse_layers.0.gnorm.weight' in state,
        num_classes=(state['last_layer.3.weight'] if task == 'seg' else
                     state['classifier.weight']).shape[0])
    if task == 'cls':
        info['head_channels'] = tuple(
            state[f'incre_modules.{i}.0.conv1.weight'].shape[0]
            for i in range(n))
        info['out_channels'] = state['final_layer.0.weight'].shape[0]
    return info


def match_config(info: dict) -> Tuple[str, List[str]]:
    """The mdeq_mm config for ``info`` and the --cfg-options it needs."""
    keys = [(info['task'], info['channels'], info['expansion'],
             info['num_classes']),
            (info['task'], info['channels'], info['expansion'])]
    config = next((CONFIGS[k] for k in keys if k in CONFIGS), None)
    if config is None:
        known = sorted({(k[0], k[1], k[2]) for k in CONFIGS})
        raise ConversionError(
            f"unknown MDEQ architecture: {info['task']} with branch channels"
            f" {info['channels']} and expansion {info['expansion']}; known: "
            f'{known}. Build the model with a matching arch dict and '
            'convert with --no-verify.')
    from mmengine.config import Config
    model = Config.fromfile(config_path(config)).model
    options = []
    if not info['post_gn_affine']:
        options.append('model.backbone.post_gn_affine=False')
    if info['task'] == 'cls':
        head = tuple(model.neck[0].head_channels)
        out = model.neck[0].out_channels
        classes = model.head.num_classes
        if info['head_channels'] != head:
            options.append('model.neck.0.head_channels='
                           f"{list(info['head_channels'])}")
        if info['out_channels'] != out:
            options += [
                f"model.neck.0.out_channels={info['out_channels']}",
                f"model.head.in_channels={info['out_channels']}"
            ]
        if info['num_classes'] != classes:
            options.append(f"model.head.num_classes={info['num_classes']}")
    elif info['num_classes'] != model.decode_head.num_classes:
        options.append(
            f"model.decode_head.num_classes={info['num_classes']}")
    return config, options


def convert_state(state: Dict[str, torch.Tensor], task: str
                  ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Rename every key; return (mdeq_mm state, unmapped original keys)."""
    rules = _BACKBONE + (_CLS if task == 'cls' else _SEG)
    out, unmapped = OrderedDict(), []
    for key, value in state.items():
        for pattern, repl in rules:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                out[new] = value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def convert(path: str, task: Optional[str] = None) -> dict:
    """Convert a checkpoint file.

    Args:
        path (str): original checkpoint.
        task (str | None): 'cls' or 'seg'; a file of the other task raises.

    Returns:
        dict: state_dict, dropped [(key, reason)], unmapped [key], info
        (task, format, architecture), config and cfg_options.
    """
    raw = load_original(path)
    stripped, dropped = strip(raw)
    info = describe(stripped,
                    had_copies=any(r == COPY_REASON for _, r in dropped))
    if task is not None and info['task'] != task:
        tools = dict(cls='mdeq2mmpretrain.py', seg='mdeq2mmseg.py')
        kind = dict(cls='classification', seg='segmentation')
        raise ConversionError(
            f'{path} is a {kind[info["task"]]} checkpoint, not a '
            f'{kind[task]} one: use tools/model_converters/'
            f'{tools[info["task"]]}')
    state, unmapped = convert_state(stripped, info['task'])
    config, options = match_config(info)
    return dict(state_dict=state, dropped=dropped, unmapped=unmapped,
                info=info, config=config, cfg_options=options)


def build_target(config: str, options: List[str]):
    """The mdeq_mm model named by a config plus cfg-options (``key=value``
    strings, as printed for the user), built by
    :func:`mdeq_mm.apis.init_model`."""
    from mmengine.config import DictAction

    from mdeq_mm.apis import init_model
    parsed = {}
    for opt in options or ():
        key, value = opt.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    return init_model(config_path(config), cfg_options=parsed)


def check_against_model(state, model) -> List[str]:
    """Problems loading ``state`` strictly into ``model`` (empty: none)."""
    own = model.state_dict()
    problems = [f'missing in the checkpoint: {k}' for k in own
                if k not in state]
    problems += [f'not in the model: {k}' for k in state if k not in own]
    problems += [
        f'shape mismatch: {k}: checkpoint {tuple(v.shape)} vs model '
        f'{tuple(own[k].shape)}' for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    return problems
