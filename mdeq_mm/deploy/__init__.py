# Copyright (c) mdeq_mm authors. All rights reserved.
"""Deployment: ONNX export with a fixed solver budget (``onnx`` and
``onnxruntime`` are imported on use; ``make setup`` installs them). Load the
model and set its budget with :mod:`mdeq_mm.apis` (``init_model``,
``set_solver(..., tol=0)``)."""
from .onnx_export import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError,
                          TensorOutput, compare_onnx, export_onnx,
                          onnx_metadata, onnx_session, solver_exports,
                          verify_onnx)

__all__ = [
    'DEFAULT_OPSET', 'MAX_OPSET', 'MIN_OPSET', 'ExportError', 'TensorOutput',
    'compare_onnx', 'export_onnx', 'onnx_metadata', 'onnx_session',
    'solver_exports', 'verify_onnx'
]
