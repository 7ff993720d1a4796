# Copyright (c) mdeq_mm authors. All rights reserved.
"""Class-weighted cross-entropy that is correct with ignored pixels.

mmseg 1.2.2's ``CrossEntropyLoss(class_weight=...)`` looks up
``class_weight[label]`` before it masks ``ignore_index``, so any ignored
pixel (Cityscapes void classes, ``seg_pad_val=255`` padding) raises
``IndexError: index 255 is out of bounds`` (a device-side assert on GPU).
:class:`WeightedCrossEntropyLoss` computes what the reference's
``nn.CrossEntropyLoss(weight=w, ignore_index=255)`` computes.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mdeq_mm.registry import register

REDUCTIONS = ('none', 'mean', 'sum')


@register('MODELS', hosts=('mmseg', ))
class WeightedCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy with class weights and an ignore label.

    With ``reduction='mean'`` the loss is Σ w[y]·ℓ / Σ w[y] over the pixels
    whose label is not ``ignore_index`` (ℓ the per-pixel negative
    log-likelihood, w the class weights, 1 for every class when None) —
    PyTorch's weighted mean. A batch in which every pixel is ignored gives
    0 and zero gradients. Per-pixel weights (an mmseg sampler's
    ``seg_weight``, e.g. OHEM's 0/1 mask) multiply both sums. The loss is
    computed in float32 (float64 for float64 logits), also under
    autocast.

    Args:
        class_weight (Sequence[float] | None): one weight per class.
        loss_weight (float): factor on the loss.
        loss_name (str): key in the loss dict; must start with ``loss_``
            to be back-propagated.
        reduction (str): 'mean', 'sum' or 'none' (per pixel, 0 where
            ignored).
        ignore_index (int | None): label to ignore; None takes the one the
            decode head passes (its ``ignore_index``, 255 by default).
    """

    def __init__(self,
                 class_weight: Optional[Sequence[float]] = None,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce',
                 reduction: str = 'mean',
                 ignore_index: Optional[int] = None):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f'reduction must be one of {REDUCTIONS}, got '
                             f'{reduction!r}')
        self.class_weight = (None if class_weight is None else
                             [float(w) for w in class_weight])
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def extra_repr(self) -> str:
        return (f'class_weight={self.class_weight}, loss_weight='
                f'{self.loss_weight}, ignore_index={self.ignore_index}')

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None,
                ignore_index: int = 255,
                **kwargs) -> Tensor:
        """Args:
            cls_score (Tensor): logits (N, C, H, W) (or (N, C)).
            label (Tensor): class indices (N, H, W) (or (N, )).
            weight (Tensor | None): per-pixel weights, shape of ``label``.
            avg_factor (float | Tensor | None): divide the sum by this
                instead of the summed weights ('mean' only).
            reduction_override (str | None): overrides ``reduction``.
            ignore_index (int): the decode head's ignore label, used when
                the loss was built without one.

        Returns:
            Tensor: the loss (a scalar, or per pixel for 'none').
        """
        reduction = reduction_override or self.reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f'reduction must be one of {REDUCTIONS}, got '
                             f'{reduction!r}')
        ignore = self.ignore_index if self.ignore_index is not None else \
            ignore_index
        num_classes = cls_score.shape[1]
        label = label.long()
        valid = label != ignore
        self._check_labels(label, valid, num_classes, ignore)
        safe = torch.where(valid, label, torch.zeros_like(label))
        logits = cls_score if cls_score.dtype == torch.float64 else \
            cls_score.float()
        nll = F.cross_entropy(logits, safe, reduction='none')
        pixel_w = valid.float()
        if self.class_weight is not None:
            if len(self.class_weight) != num_classes:
                raise ValueError(
                    f'class_weight has {len(self.class_weight)} entries but '
                    f'the head predicts {num_classes} classes; give one '
                    'weight per class')
            w = logits.new_tensor(self.class_weight)
            pixel_w = pixel_w * w[safe]
        if weight is not None:
            pixel_w = pixel_w * weight.float()
        loss = nll * pixel_w
        if reduction == 'none':
            out = loss
        elif reduction == 'sum':
            out = loss.sum()
        else:
            denom = pixel_w.sum() if avg_factor is None else avg_factor
            # all pixels ignored: 0 / 0 -> 0 (and zero gradients)
            out = loss.sum() / torch.clamp(
                torch.as_tensor(denom, dtype=loss.dtype,
                                device=loss.device),
                min=torch.finfo(loss.dtype).tiny)
        return self.loss_weight * out

    @staticmethod
    def _check_labels(label: Tensor, valid: Tensor, num_classes: int,
                      ignore: int) -> None:
        bad = valid & ((label < 0) | (label >= num_classes))
        if bool(bad.any()):
            values = torch.unique(label[bad]).tolist()[:8]
            raise ValueError(
                f'label values {values} are neither class indices '
                f'(0..{num_classes - 1}) nor the ignore label {ignore}. '
                'Label maps holding raw Cityscapes label ids '
                '(*_gtFine_labelIds.png) must be converted to train ids '
                'first: python tools/dataset_converters/cityscapes.py '
                '<data root>; or set num_classes to the number of classes '
                'in your labels.')
