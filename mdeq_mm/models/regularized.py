# Copyright (c) mdeq_mm authors. All rights reserved.
"""mmseg's EncoderDecoder and mmpretrain's ImageClassifier with the MDEQ
backbone's regularisers in their losses, taken from the record of the
forward that made the features (``backbone.last_output``): the Jacobian
loss (the backbone's ``jac_loss`` option) as ``loss_jac``, and the
fixed-point correction (``fp_correction``): the head's losses on each
correction state, weighted, as ``fpc<i>.<loss>``. Without them they are
the stock models."""
import importlib.util

from mdeq_mm.registry import register


def add_deq_losses(losses: dict, output, head_losses) -> dict:
    """``losses`` plus, from an :class:`~mdeq_mm.models.MDEQOutput`,
    ``loss_jac`` when the forward computed one and ``fpc<i>.<name>``:
    ``head_losses(feats)`` (a dict) on each correction state, the loss terms
    scaled by their weights (other entries, e.g. accuracies, left out)."""
    if output is None:
        return losses
    if output.jac_loss is not None:
        losses['loss_jac'] = output.jac_loss
    for i, (feats, weight) in enumerate(
            zip(output.corrections, output.correction_weights)):
        for name, value in head_losses(feats).items():
            if 'loss' in name:
                losses[f'fpc{i}.{name}'] = weight * value
    return losses


class WithDEQLosses:
    """Mixin for a model with an MDEQ ``backbone``, an optional ``neck``,
    ``loss(inputs, samples)`` and ``_head_losses(feats, samples)``: adds the
    Jacobian and correction losses of the forward behind ``loss``."""

    def _correction_head_losses(self, feats, data_samples):
        if self.with_neck:
            feats = self.neck(feats)
        return self._head_losses(feats, data_samples)

    def loss(self, inputs, data_samples):
        losses = super().loss(inputs, data_samples)
        return add_deq_losses(
            losses, getattr(self.backbone, 'last_output', None),
            lambda feats: self._correction_head_losses(feats, data_samples))


__all__ = ['add_deq_losses', 'WithDEQLosses']

if importlib.util.find_spec('mmseg') is not None:
    from mmseg.models.segmentors import EncoderDecoder

    @register('MODELS', hosts=('mmseg', ))
    class DEQEncoderDecoder(WithDEQLosses, EncoderDecoder):
        """EncoderDecoder whose losses include ``loss_jac`` and the
        fixed-point correction's."""

        def _head_losses(self, feats, data_samples):
            return self._decode_head_forward_train(feats, data_samples)

    __all__ += ['DEQEncoderDecoder']

if importlib.util.find_spec('mmpretrain') is not None:
    from mmpretrain.models.classifiers import ImageClassifier

    @register('MODELS', hosts=('mmpretrain', ))
    class DEQImageClassifier(WithDEQLosses, ImageClassifier):
        """ImageClassifier whose losses include ``loss_jac`` and the
        fixed-point correction's."""

        def _head_losses(self, feats, data_samples):
            return self.head.loss(feats, data_samples)

    __all__ += ['DEQImageClassifier']
