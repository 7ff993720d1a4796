# Copyright (c) mdeq_mm authors. All rights reserved.
"""Deployment: ONNX export with a fixed solver budget (``onnx`` and
``onnxruntime`` are imported on use; ``make setup`` installs them)."""
from .onnx_export import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError,
                          TensorOutput, compare_onnx, export_onnx,
                          load_model, mdeq_backbones, onnx_session,
                          set_solver_budget, solver_exports)

__all__ = [
    'DEFAULT_OPSET', 'MAX_OPSET', 'MIN_OPSET', 'ExportError', 'TensorOutput',
    'compare_onnx', 'export_onnx', 'load_model', 'mdeq_backbones',
    'onnx_session', 'set_solver_budget', 'solver_exports'
]
