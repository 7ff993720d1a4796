# Copyright (c) mdeq_mm authors. All rights reserved.
"""mmseg's EncoderDecoder and mmpretrain's ImageClassifier with the MDEQ
backbone's Jacobian loss (``backbone.jac_loss``, see the backbone's
``jac_loss`` option) added to their losses as ``loss_jac``. Without a
Jacobian loss they are the stock models."""
import importlib.util


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
    from mmseg.registry import MODELS as SEG_MODELS

    @SEG_MODELS.register_module()
    class DEQEncoderDecoder(WithJacLoss, EncoderDecoder):
        """EncoderDecoder whose losses include ``loss_jac``."""

    __all__ += ['DEQEncoderDecoder']

if importlib.util.find_spec('mmpretrain') is not None:
    from mmpretrain.models.classifiers import ImageClassifier
    from mmpretrain.registry import MODELS as CLS_MODELS

    @CLS_MODELS.register_module()
    class DEQImageClassifier(WithJacLoss, ImageClassifier):
        """ImageClassifier whose losses include ``loss_jac``."""

    __all__ += ['DEQImageClassifier']
