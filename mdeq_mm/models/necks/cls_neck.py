# Copyright (c) mdeq_mm authors. All rights reserved.
"""The original MDEQ classification trunk as an mmpretrain neck."""
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from mdeq_mm.registry import register


class IncreBottleneck(nn.Module):
    """Bottleneck (expansion 4) with affine-free BN in its main path and a
    1x1 conv + affine BN shortcut, as the reference's ``incre_modules``."""
    expansion = 4

    def __init__(self, in_channels: int, channels: int, norm_cfg: dict):
        super().__init__()
        out = channels * self.expansion
        plain = dict(norm_cfg, affine=False)
        plain.pop('requires_grad', None)
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = build_norm_layer(plain, channels)[1]
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = build_norm_layer(plain, channels)[1]
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.bn3 = build_norm_layer(plain, out)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, out, 1, bias=False),
            build_norm_layer(norm_cfg, out)[1])

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.downsample(x))


def _conv_bn_relu(cin, cout, kernel, stride, norm_cfg):
    """conv (with bias, as the reference) → BN → ReLU, named conv/bn."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=True),
            bn=build_norm_layer(norm_cfg, cout)[1],
            relu=nn.ReLU(inplace=True)))


@register('MODELS', hosts=('mmpretrain', ))
class MDEQClsNeck(BaseModule):
    """HRNet-style classification trunk of the reference MDEQ:

    y = incre_0(z_0); y = incre_{i+1}(z_{i+1}) + downsamp_i(y) for each
    lower scale; then final_layer (1x1 conv to ``out_channels``, BN, ReLU).
    Follow it with GlobalAveragePooling and LinearClsHead.

    Args:
        in_channels (Sequence[int]): backbone channels per scale.
        head_channels (Sequence[int]): bottleneck widths h_i (outputs 4h_i).
        out_channels (int): final width (2048 for ImageNet).
        norm_cfg (dict): norm config.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (32, 64, 128, 256),
                 head_channels: Sequence[int] = (24, 48, 96, 192),
                 out_channels: int = 2048,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Optional[dict] = dict(
                     type='Normal', layer='Conv2d', std=0.01, bias=0.0)):
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(head_channels):
            raise ValueError('in_channels and head_channels need one entry '
                             f'per scale: {in_channels} vs {head_channels}')
        self.incre_modules = nn.ModuleList([
            IncreBottleneck(c, h, norm_cfg)
            for c, h in zip(in_channels, head_channels)
        ])
        widths = [4 * h for h in head_channels]
        self.downsamp_modules = nn.ModuleList([
            _conv_bn_relu(widths[i], widths[i + 1], 3, 2, norm_cfg)
            for i in range(len(widths) - 1)
        ])
        self.final_layer = _conv_bn_relu(widths[-1], out_channels, 1, 1,
                                         norm_cfg)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor]:
        if not isinstance(inputs, (tuple, list)):
            raise TypeError('MDEQClsNeck takes the tuple of backbone maps')
        y = self.incre_modules[0](inputs[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](inputs[i + 1]) + down(y)
        return (self.final_layer(y), )
