# Copyright (c) mdeq_mm authors. All rights reserved.
"""The MDEQ segmentation fusion as an mmseg neck, for stock decode heads."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.models.utils import resize
from torch import Tensor

from mdeq_mm.registry import register


@register('MODELS', hosts=('mmseg', ))
class MDEQFuseNeck(BaseModule):
    """Resize every scale to the first one (bilinear), concatenate, and
    optionally apply 1x1 conv (bias) + norm + ReLU.

    Returns a 1-tuple, so any decode head with ``in_index=0`` follows it.

    Args:
        in_channels (Sequence[int]): channels per scale.
        out_channels (int | None): channels of the fusion conv; None keeps
            sum(in_channels).
        fuse_conv (bool): apply the 1x1 conv-norm-ReLU.
        norm_cfg (dict): norm of the fusion conv.
        align_corners (bool): as the reference (True).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Optional[int] = None,
                 fuse_conv: bool = True,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 align_corners: bool = True,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        total = sum(in_channels)
        self.out_channels = out_channels or total
        self.align_corners = align_corners
        if not fuse_conv and self.out_channels != total:
            raise ValueError('out_channels must equal sum(in_channels) '
                             'without fuse_conv')
        self.conv = ConvModule(
            total, self.out_channels, 1, bias=True,
            norm_cfg=norm_cfg) if fuse_conv else nn.Identity()

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor]:
        size = inputs[0].shape[2:]
        feats: List[Tensor] = [inputs[0]] + [
            resize(x, size=size, mode='bilinear',
                   align_corners=self.align_corners) for x in inputs[1:]
        ]
        return (self.conv(torch.cat(feats, dim=1)), )
