# Copyright (c) mdeq_mm authors. All rights reserved.
"""Small batched linear algebra for the solvers that also runs in a static
graph (:func:`~mdeq_mm.ops.solvers.loop.static_graph`): LAPACK and
``diagonal`` normally, unrolled elimination and masked sums when traced for
ONNX (which has neither LAPACK calls nor, before opset 13, a diagonal)."""
import torch
from torch import Tensor

from .loop import is_static


def _strictly_lower(k: int, device) -> Tensor:
    """(k, k) bool mask of the entries below the diagonal."""
    i = torch.arange(k, device=device)
    return i[:, None] > i[None, :]


def _diagonal(M: Tensor) -> Tensor:
    """(B, n) diagonal of (B, n, n) matrices (a masked sum in a static
    graph: ONNX has no diagonal before opset 13)."""
    if not is_static():
        return M.diagonal(dim1=1, dim2=2)
    return torch.where(_eye(M.shape[1], M.device), M, 0.).sum(2)


def _eye(n: int, device) -> Tensor:
    """(n, n) bool identity."""
    i = torch.arange(n, device=device)
    return i[:, None] == i[None, :]


def _solve_lower(L: Tensor, b: Tensor) -> Tensor:
    """Solve L x = b for batched lower-triangular L (B, k, k), b (B, k, 1):
    LAPACK normally, forward substitution unrolled in a static graph."""
    if not is_static():
        return torch.linalg.solve_triangular(L, b, upper=False)
    x = []
    for j in range(L.shape[1]):
        r = b[:, j, 0]
        for i in range(j):
            r = r - L[:, j, i] * x[i]
        x.append(r / L[:, j, j])
    return torch.stack(x, 1)[..., None]


def _solve_unpivoted(A: Tensor, b: Tensor) -> Tensor:
    """Gaussian elimination without pivoting, unrolled: A (B, n, n),
    b (B, n, 1). Stable when the leading blocks of A are positive
    definite (the static graph's replacement of ``torch.linalg.solve``)."""
    n = A.shape[1]
    rows = [A[:, i] for i in range(n)]
    rhs = [b[:, i, 0] for i in range(n)]
    for j in range(n):
        for i in range(j + 1, n):
            m = rows[i][:, j] / rows[j][:, j]
            rows[i] = rows[i] - m[:, None] * rows[j]
            rhs[i] = rhs[i] - m * rhs[j]
    x = [None] * n
    for i in reversed(range(n)):
        r = rhs[i]
        for j in range(i + 1, n):
            r = r - rows[i][:, j] * x[j]
        x[i] = r / rows[i][:, i]
    return torch.stack(x, 1)[..., None]
