# Copyright (c) mdeq_mm authors. All rights reserved.
"""Building blocks of the MDEQ layer f_θ(z, x).

Module and parameter names follow the original implementation
(``branches.{i}.blocks.0.conv1.weight_g``, ``fuse_layers.{i}.{j}.net...``,
``post_fuse_layers.{i}.conv...``) so that converted checkpoints map 1:1.
"""
from collections import OrderedDict
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class WeightNormConv2d(nn.Module):
    """Conv2d with weight normalisation W = g · v / ‖v‖ (norm over all dims
    but the output channel), computed once per :meth:`reset` and reused by
    every call until the next reset.

    The parameters are ``weight_g`` (C_out, 1, 1, 1) and ``weight_v``, the
    key names of ``torch.nn.utils.weight_norm(dim=0)`` and of the original
    MDEQ checkpoints. v starts with PyTorch's default conv init and g = ‖v‖.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        kernel_size (int): square kernel size; padding keeps the size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)
        v = conv.weight.detach()
        self.weight_v = nn.Parameter(v.clone())
        self.weight_g = nn.Parameter(
            torch.linalg.vector_norm(v, dim=(1, 2, 3), keepdim=True))
        self.padding = kernel_size // 2
        self._weight: Optional[Tensor] = None
        self.n_computed = 0  # how often the weight was recomputed

    def compute_weight(self) -> Tensor:
        v = self.weight_v
        return self.weight_g * v / torch.linalg.vector_norm(
            v, dim=(1, 2, 3), keepdim=True)

    def reset(self) -> None:
        """Recompute the normalised weight (once per model forward)."""
        self._weight = self.compute_weight()
        self.n_computed += 1

    def clear(self) -> None:
        self._weight = None

    def forward(self, x: Tensor) -> Tensor:
        weight = self._weight if self._weight is not None else \
            self.compute_weight()
        return F.conv2d(x, weight, padding=self.padding)

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight_v.shape
        return f'{c_in}, {c_out}, kernel_size={k}, weight_norm=True'


class VariationalDropout2d(nn.Module):
    """Dropout with one (B, C, 1, 1) mask per :meth:`reset`.

    The mask is drawn on the first call after a reset, on the input's device
    and dtype, and reused by every later call (all solver iterations and the
    tracked application) until the next reset. Identity in eval mode or
    with p = 0.

    Args:
        p (float): drop probability.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f'dropout must be in [0, 1), got {p}')
        self.p = p
        self.mask: Optional[Tensor] = None
        self.n_drawn = 0

    def reset(self) -> None:
        self.mask = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.mask is None or self.mask.shape[:2] != x.shape[:2]:
            keep = 1 - self.p
            self.mask = torch.empty(
                x.shape[0], x.shape[1], 1, 1, device=x.device,
                dtype=x.dtype).bernoulli_(keep) / keep
            self.n_drawn += 1
        return x * self.mask

    def extra_repr(self) -> str:
        return f'p={self.p}'


def _gn(groups: int, channels: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, affine=affine)


class MDEQBlock(nn.Module):
    """Residual block of one branch, in the reference's operation order:

    t = GN1(conv1(z)) → ReLU → conv2 → dropout → + x → GN2 → + z → ReLU → GN3

    Args:
        channels (int): C_i.
        expansion (int): width multiplier of the hidden conv.
        groups (int): GroupNorm groups.
        dropout (float): variational dropout after conv2.
        weight_norm (bool): weight-normalise conv1 and conv2.
        kernel_size (int): conv kernel size.
    """

    def __init__(self,
                 channels: int,
                 expansion: int = 5,
                 groups: int = 8,
                 dropout: float = 0.0,
                 weight_norm: bool = True,
                 kernel_size: int = 3):
        super().__init__()
        hidden = channels * expansion

        def conv(cin, cout):
            if weight_norm:
                return WeightNormConv2d(cin, cout, kernel_size)
            return nn.Conv2d(
                cin, cout, kernel_size, padding=kernel_size // 2, bias=False)

        self.conv1 = conv(channels, hidden)
        self.gn1 = _gn(groups, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(hidden, channels)
        self.gn2 = _gn(groups, channels)
        self.gn3 = _gn(groups, channels)
        self.drop = VariationalDropout2d(dropout)

    def forward(self, z: Tensor, injection: Optional[Tensor] = None) -> Tensor:
        t = self.relu(self.gn1(self.conv1(z)))
        t = self.drop(self.conv2(t))
        if injection is not None:
            t = t + injection
        t = self.gn2(t) + z
        return self.gn3(F.relu(t))


class BranchNet(nn.Module):
    """The blocks of one branch; only the first receives the injection."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, z: Tensor, injection: Optional[Tensor]) -> Tensor:
        z = self.blocks[0](z, injection)
        for block in self.blocks[1:]:
            z = block(z)
        return z


class UpsampleModule(nn.Module):
    """Lower → higher resolution: 1x1 conv, GroupNorm, nearest ×2^(j−i)."""

    def __init__(self, in_channels: int, out_channels: int, level_diff: int,
                 groups: int):
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                gnorm=_gn(groups, out_channels),
                upsample=nn.Upsample(
                    scale_factor=2**level_diff, mode='nearest')))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DownsampleModule(nn.Module):
    """Higher → lower resolution: (i − j) stride-2 3x3 conv + GroupNorm
    stages, ReLU between them; the last stage maps to the target channels."""

    def __init__(self, in_channels: int, out_channels: int, level_diff: int,
                 groups: int):
        super().__init__()
        stages = []
        for k in range(level_diff):
            last = k == level_diff - 1
            cout = out_channels if last else in_channels
            layers = OrderedDict(
                conv=nn.Conv2d(in_channels, cout, 3, 2, 1, bias=False),
                gnorm=_gn(groups, cout))
            if not last:
                layers['relu'] = nn.ReLU(inplace=True)
            stages.append(nn.Sequential(layers))
        self.net = nn.Sequential(*stages)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MDEQLayer(nn.Module):
    """The MDEQ transformation f_θ(z, x) on a list of multiscale states.

    Per branch a residual block (injection into the branches given), then
    every branch sums every other branch resized to its resolution, then a
    post-fusion ReLU → 1x1 conv (weight-normed) → GroupNorm(groups // 2).

    Args:
        channels (Sequence[int]): C_i per branch, highest resolution first.
        num_blocks (Sequence[int]): residual blocks per branch.
        expansion (int): block width multiplier.
        groups (int): GroupNorm groups (post-fusion uses groups // 2).
        dropout (float): variational dropout rate in the blocks.
        weight_norm (bool): weight norm on block convs and post-fusion conv.
        post_gn_affine (bool): affine post-fusion GroupNorm (locuslab/deq's
            POST_GN_AFFINE; False in its Jacobian-regularised configs).
    """

    def __init__(self,
                 channels: Sequence[int],
                 num_blocks: Sequence[int],
                 expansion: int = 5,
                 groups: int = 8,
                 dropout: float = 0.0,
                 weight_norm: bool = True,
                 post_gn_affine: bool = True):
        super().__init__()
        n = len(channels)
        self.channels = list(channels)
        self.branches = nn.ModuleList([
            BranchNet([
                MDEQBlock(c, expansion, groups, dropout, weight_norm)
                for _ in range(nb)
            ]) for c, nb in zip(channels, num_blocks)
        ])
        self.fuse_layers = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(
                        UpsampleModule(channels[j], channels[i], j - i,
                                       groups))
                elif j < i:
                    row.append(
                        DownsampleModule(channels[j], channels[i], i - j,
                                         groups))
                else:
                    row.append(None)
            self.fuse_layers.append(row)
        post_groups = max(1, groups // 2)
        self.post_fuse_layers = nn.ModuleList([
            nn.Sequential(
                OrderedDict(
                    relu=nn.ReLU(inplace=False),
                    conv=WeightNormConv2d(c, c, 1) if weight_norm else
                    nn.Conv2d(c, c, 1, bias=False),
                    gnorm=_gn(post_groups, c, post_gn_affine)))
            for c in channels
        ])

    def reset(self) -> None:
        """Start a new model forward: recompute normalised weights, redraw
        dropout masks on first use."""
        for m in self.modules():
            if isinstance(m, (WeightNormConv2d, VariationalDropout2d)):
                m.reset()

    def clear(self) -> None:
        """Drop the cached normalised weights (their graphs stay with any
        outputs that use them)."""
        for m in self.modules():
            if isinstance(m, WeightNormConv2d):
                m.clear()

    def forward(self, z: List[Tensor],
                injection: Sequence[Optional[Tensor]]) -> List[Tensor]:
        blocks = [
            branch(zi, xi)
            for branch, zi, xi in zip(self.branches, z, injection)
        ]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = blocks[i]
            for j, fuse in enumerate(row):
                if fuse is not None:
                    y = y + fuse(blocks[j])
            out.append(self.post_fuse_layers[i](y))
        return out
