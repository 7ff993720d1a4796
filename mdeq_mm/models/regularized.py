# Copyright (c) mdeq_mm authors. All rights reserved.
"""mmseg's EncoderDecoder and mmpretrain's ImageClassifier with the MDEQ
backbone's regularisers in their losses: the Jacobian loss
(``backbone.jac_loss``, see the backbone's ``jac_loss`` option) as
``loss_jac``, and the fixed-point correction (``fp_correction``): the
head's losses on each correction state, weighted, as ``fpc<i>.<loss>``.
Without them they are the stock models."""
import importlib.util

from mdeq_mm.registry import register


def add_jac_loss(losses: dict, backbone) -> dict:
    """``losses`` plus ``loss_jac`` when the backbone computed one."""
    jac = getattr(backbone, 'jac_loss', None)
    if jac is not None:
        losses['loss_jac'] = jac
    return losses


def add_correction_losses(losses: dict, backbone, head_losses) -> dict:
    """``losses`` plus ``fpc<i>.<name>``: ``head_losses(feats)`` (a dict)
    on each of the backbone's correction states, the loss terms scaled by
    their weights (other entries, e.g. accuracies, are left out)."""
    states = getattr(backbone, 'corrections', None) or []
    for i, (feats, weight) in enumerate(
            zip(states, backbone.correction_weights)):
        for name, value in head_losses(feats).items():
            if 'loss' in name:
                losses[f'fpc{i}.{name}'] = weight * value
    backbone.corrections = []  # their graphs go with this step
    return losses


class WithJacLoss:
    """Mixin for a model with ``backbone``, ``loss(inputs, samples)`` and
    ``_correction_head_losses(feats, samples)``."""

    def loss(self, inputs, data_samples):
        losses = add_jac_loss(super().loss(inputs, data_samples),
                              self.backbone)
        return add_correction_losses(
            losses, self.backbone,
            lambda feats: self._correction_head_losses(feats, data_samples))


__all__ = ['add_correction_losses', 'add_jac_loss', 'WithJacLoss']

if importlib.util.find_spec('mmseg') is not None:
    from mmseg.models.segmentors import EncoderDecoder

    @register('MODELS', hosts=('mmseg', ))
    class DEQEncoderDecoder(WithJacLoss, EncoderDecoder):
        """EncoderDecoder whose losses include ``loss_jac`` and the
        fixed-point correction's."""

        def _correction_head_losses(self, feats, data_samples):
            if self.with_neck:
                feats = self.neck(feats)
            return self._decode_head_forward_train(feats, data_samples)

    __all__ += ['DEQEncoderDecoder']

if importlib.util.find_spec('mmpretrain') is not None:
    from mmpretrain.models.classifiers import ImageClassifier

    @register('MODELS', hosts=('mmpretrain', ))
    class DEQImageClassifier(WithJacLoss, ImageClassifier):
        """ImageClassifier whose losses include ``loss_jac`` and the
        fixed-point correction's."""

        def _correction_head_losses(self, feats, data_samples):
            if self.with_neck:
                feats = self.neck(feats)
            return self.head.loss(feats, data_samples)

    __all__ += ['DEQImageClassifier']
