# Copyright (c) mdeq_mm authors. All rights reserved.
"""ONNX export of MDEQ segmentors and classifiers with a fixed solver budget.

At test time an MDEQ with ``max_iter=N, tol=0`` is a static graph: the
solver runs its whole budget. :func:`mdeq_mm.apis.set_solver` sets that on
every MDEQ backbone of a model (``tol=0``); :func:`export_onnx` traces the
model's ``mode='tensor'`` output (the segmentor's logits, the classifier's
scores) inside :func:`mdeq_mm.ops.static_graph`, where the solvers run the same
arithmetic as in PyTorch without host syncs, in-place writes or LAPACK
calls; :func:`compare_onnx` runs the file in onnxruntime against the
PyTorch eval path (no static graph) at the same solver and budget.

The exported graph takes the data preprocessor's output: normalised
(B, 3, H, W) float32 images at the export size (mean, std and channel
order are stored in the file's metadata). The batch axis is dynamic unless
exported static.
"""
import io
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from mdeq_mm.apis import find_mdeqs
from mdeq_mm.ops import static_graph

#: opsets the exporter (torch's TorchScript-based ONNX exporter) can write
MIN_OPSET, MAX_OPSET = 10, 20
DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """A model that cannot be exported as asked; the message says why and
    what to change."""


class TensorOutput(nn.Module):
    """``model(inputs, mode='tensor')`` as one tensor: the segmentor's
    logits at the decode head's resolution or the classifier's scores."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs, mode='tensor')
        if isinstance(out, (tuple, list)):  # a classifier without a head
            out = out[-1]
        return out


def _reason(exc: Exception) -> str:
    """The exporter's complaint, without its advice and graph dump."""
    text = str(exc).strip().split('\n')[0]
    for cut in (' Please feel free', ' [Caused by', ' Support for this'):
        text = text.split(cut)[0]
    return text.rstrip('. ')


def _exports(fn, opset: int) -> bool:
    """Whether ``fn(opset)`` (an export into memory) succeeds."""
    try:
        fn(opset)
        return True
    except torch.onnx.errors.OnnxExporterError:
        return False


def solver_exports(solver: str, opset: int) -> bool:
    """Whether ``solver`` alone (on a small fixed-point problem, through
    every kind of iteration it has) exports with ``opset``."""
    from mdeq_mm.ops import solve

    class Toy(nn.Module):

        def forward(self, x):
            return solve(solver, lambda z: torch.tanh(0.5 * z.flip(1) + x),
                         torch.zeros_like(x), max_iter=3, tol=0.)[0]

    def export(k):
        with static_graph(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(Toy(), (torch.randn(2, 8), ), io.BytesIO(),
                              dynamo=False, opset_version=k)

    return _exports(export, opset)


def _export_problem(exc: Exception, opset: int, solvers: Sequence[str],
                    retry) -> str:
    """The message of an ExportError: the operator, whether the solver or
    the rest of the model needs it, and the lowest opset that works
    (``retry(k)`` exports with opset k)."""
    what = f"with opset {opset}: {_reason(exc)}"
    culprits = [s for s in solvers if not solver_exports(s, opset)]
    where = (f"solver {', '.join(map(repr, culprits))} needs it"
             if culprits else 'the model (not its solver) needs it')
    works = next((k for k in range(opset + 1, MAX_OPSET + 1)
                  if _exports(retry, k)), None)
    if works is not None:
        return (f'cannot export {what} ({where}). Fix: export with opset '
                f'{works} or higher (--opset {works}).')
    return (f'cannot export {what} ({where}); no opset up to {MAX_OPSET} '
            'has it. Fix: another solver (fixed_point, broyden and anderson '
            f'export from opset {MIN_OPSET}), or register a symbolic for the '
            'operator (torch.onnx.register_custom_op_symbolic).')


def _export(wrapper, x, f, opset, axes):
    """torch's TorchScript-based exporter on the static-graph solvers."""
    with torch.no_grad(), static_graph(), warnings.catch_warnings():
        # the spatial size is fixed by design; the batch axis is traced
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper, (x, ), f, dynamo=False, opset_version=opset,
            input_names=['input'], output_names=['output'],
            dynamic_axes=axes, do_constant_folding=True)


def export_onnx(model: nn.Module,
                path: str,
                shape: Sequence[int],
                batch_size: int = 1,
                opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True,
                metadata: Optional[Dict[str, str]] = None) -> str:
    """Export ``model`` (an mmseg segmentor or mmpretrain classifier, in
    eval mode with its solver budget set) to ``path``; returns ``path``.

    Args:
        shape (Sequence[int]): input height and width.
        batch_size (int): batch of the example input used for tracing.
        opset (int): ONNX opset, ``MIN_OPSET`` to ``MAX_OPSET``.
        dynamic_batch (bool): a dynamic batch axis (else fixed to
            ``batch_size``).
        metadata (dict | None): strings stored in the model's
            ``metadata_props`` (e.g. mean, std, solver, budget).
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f'opset {opset} is outside the range this '
                          f'exporter writes ({MIN_OPSET} to {MAX_OPSET})')
    h, w = (int(s) for s in shape)
    model.eval()
    wrapper = TensorOutput(model).eval()
    device = next(model.parameters()).device
    x = torch.randn(batch_size, 3, h, w, device=device)
    axes = dict(input={0: 'batch'}, output={0: 'batch'}) \
        if dynamic_batch else None
    backbones = find_mdeqs(model)
    try:
        _export(wrapper, x, path, opset, axes)
    except torch.onnx.errors.OnnxExporterError as e:
        saved = [m.deq.eval_solver_cfg for m in backbones]
        for m in backbones:  # three iterations use every solver operator
            m.deq.set_solver('eval', budget=4)
        try:
            msg = _export_problem(
                e, opset, sorted({m.deq.solver for m in backbones}),
                lambda k: _export(wrapper, x[:1], io.BytesIO(), k, axes))
        finally:
            for m, cfg in zip(backbones, saved):
                m.deq.configure(eval_solver_cfg=cfg)
        raise ExportError(msg) from e
    if metadata:
        import onnx
        proto = onnx.load(path)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.save(proto, path)
    return path


def onnx_session(path: str, device: str = 'cpu', threads: int = 0):
    """An onnxruntime InferenceSession for ``path`` (CUDA provider for
    ``device='cuda'``; ``threads`` intra-op threads, 0: onnxruntime's
    default)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError('onnxruntime is not installed; `make setup` '
                          'installs it (or pip install onnxruntime)') from e
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ['CPUExecutionProvider']
    if device.startswith('cuda'):
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(path, options, providers=providers)


def compare_onnx(model: nn.Module, path: str, inputs: torch.Tensor,
                 session=None) -> Dict[str, float]:
    """Run ``inputs`` through the ONNX file (or its open ``session``) and
    through ``model`` in eval mode (PyTorch's ordinary path); the max
    absolute difference and the relative one (max |onnx − torch| /
    max |torch|)."""
    model.eval()
    with torch.no_grad():
        ref = TensorOutput(model)(inputs).float().cpu()
    session = session or onnx_session(path)
    out = session.run(None, {'input': inputs.cpu().numpy()})[0]
    out = torch.from_numpy(out)
    if out.shape != ref.shape:
        raise ExportError(f'the ONNX output has shape {tuple(out.shape)}, '
                          f'PyTorch {tuple(ref.shape)}')
    err = (out - ref).abs().max().item()
    return dict(max_abs=err, max_rel=err / max(ref.abs().max().item(),
                                               1e-30))


def onnx_metadata(model: nn.Module, shape: Sequence[int],
                  solve: Optional[Dict] = None) -> Dict[str, str]:
    """What a user of the file needs to feed it: the input's size and
    normalisation (the data preprocessor's mean, std and channel order
    from ``model.cfg``, as :func:`mdeq_mm.apis.init_model` sets it) and,
    with ``solve`` (one of :func:`mdeq_mm.apis.set_solver`'s returns), the
    solver, its budget in f evaluations and its dtype."""
    cfg = getattr(model, 'cfg', None) or {}
    pre = (cfg.get('model', {}).get('data_preprocessor')
           or cfg.get('data_preprocessor') or {})
    meta = dict(input='normalised (B, 3, H, W) float32',
                shape=f'{shape[0]}x{shape[1]}')
    for key in ('mean', 'std', 'bgr_to_rgb', 'to_rgb'):
        if key in pre:
            meta[key] = str(list(pre[key]) if key in ('mean', 'std')
                            else pre[key])
    if solve:
        meta.update(solver=solve['solver'], budget=str(solve['budget']),
                    solver_dtype=solve['dtype'])
    return meta


def verify_onnx(model: nn.Module, path: str, shape: Sequence[int],
                batch_sizes: Sequence[int] = (1, ), seed: int = 0,
                tolerance: float = 1e-4) -> List[Dict]:
    """:func:`compare_onnx` on a seeded random batch of each size: one row
    per size with the errors, ``ok`` (relative error within
    ``tolerance``) and, for each MDEQ, the PyTorch solve's largest final
    relative residual (``residuals``; a solve far from converged amplifies
    rounding differences with every iteration)."""
    g = torch.Generator().manual_seed(seed)
    session = onnx_session(path)
    rows = []
    for bsz in batch_sizes:
        err = compare_onnx(model, path,
                           torch.randn(bsz, 3, *shape, generator=g), session)
        residuals = [m.last_stats.forward.rel_lowest.max().item()
                     for m in find_mdeqs(model)]
        rows.append(dict(err, batch=bsz, residuals=residuals,
                         ok=err['max_rel'] <= tolerance))
    return rows
