# Copyright (c) mdeq_mm authors. All rights reserved.
"""mmseg's EncoderDecoder and mmpretrain's ImageClassifier with the MDEQ
backbone's Jacobian loss (``backbone.jac_loss``, see the backbone's
``jac_loss`` option) added to their losses as ``loss_jac``. Without a
Jacobian loss they are the stock models."""
import importlib.util

from mdeq_mm.registry import register


def add_jac_loss(losses: dict, backbone) -> dict:
    """``losses`` plus ``loss_jac`` when the backbone computed one."""
    jac = getattr(backbone, 'jac_loss', None)
    if jac is not None:
        losses['loss_jac'] = jac
    return losses


class WithJacLoss:
    """Mixin for a model with ``backbone`` and ``loss(inputs, samples)``."""

    def loss(self, inputs, data_samples):
        return add_jac_loss(super().loss(inputs, data_samples),
                            self.backbone)


__all__ = ['add_jac_loss', 'WithJacLoss']

if importlib.util.find_spec('mmseg') is not None:
    from mmseg.models.segmentors import EncoderDecoder

    @register('MODELS', hosts=('mmseg', ))
    class DEQEncoderDecoder(WithJacLoss, EncoderDecoder):
        """EncoderDecoder whose losses include ``loss_jac``."""

    __all__ += ['DEQEncoderDecoder']

if importlib.util.find_spec('mmpretrain') is not None:
    from mmpretrain.models.classifiers import ImageClassifier

    @register('MODELS', hosts=('mmpretrain', ))
    class DEQImageClassifier(WithJacLoss, ImageClassifier):
        """ImageClassifier whose losses include ``loss_jac``."""

    __all__ += ['DEQImageClassifier']
