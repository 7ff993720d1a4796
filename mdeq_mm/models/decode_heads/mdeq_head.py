# Copyright (c) mdeq_mm authors. All rights reserved.
"""The original MDEQ segmentation head as an mmseg decode head."""
from typing import List

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from mdeq_mm.registry import register


@register('MODELS', hosts=('mmseg', ))
class MDEQHead(BaseDecodeHead):
    """All branches resized to the highest resolution (bilinear,
    align_corners=True), concatenated, 1x1 conv (with bias) + BN + ReLU,
    then the 1x1 classifier ``conv_seg``.

    Equivalent to the reference's ``last_layer``; logits are at the
    backbone's highest resolution (stride 4 for the Cityscapes presets).

    Args:
        in_channels (Sequence[int]): channels of the backbone outputs.
        **kwargs: :class:`BaseDecodeHead` arguments (num_classes, norm_cfg,
            loss_decode, ...). ``channels`` defaults to sum(in_channels),
            ``in_index`` to all branches, ``align_corners`` to True and
            ``dropout_ratio`` to 0 (none), as in the reference.
    """

    def __init__(self, in_channels, **kwargs):
        total = sum(in_channels)
        kwargs.setdefault('channels', total)
        kwargs.setdefault('in_index', list(range(len(in_channels))))
        kwargs.setdefault('align_corners', True)
        kwargs.setdefault('dropout_ratio', 0.0)
        super().__init__(
            in_channels, input_transform='resize_concat', **kwargs)
        self.convs = nn.Sequential(
            ConvModule(
                self.in_channels,
                self.channels,
                1,
                bias=True,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg))

    def forward(self, inputs: List[Tensor]) -> Tensor:
        x = self._transform_inputs(inputs)
        return self.cls_seg(self.convs(x))
