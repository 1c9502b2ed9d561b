"""Nearest-codeword search and lookup with a per-sub-vector codebook assignment (numpy).

The search minimises ``-2 z.c + ||c||^2`` in float32 (the training code's
``||z||^2 - 2 z.c + ||c||^2`` without the per-row constant ``||z||^2``, which cannot change
the argmin except by rounding at exact near-ties; the export self-check counts the labels
that differ from PyTorch's). It is one BLAS product of ``[z, 1]`` with the precomputed
``[-2 C^T; ||c||^2]`` per codebook, and each codebook is searched only by the sub-vectors
assigned to it, so the cost is that of a single codebook.
"""
from __future__ import annotations

import numpy as np

__all__ = ["quantize", "dequantize", "search_matrices"]


def search_matrices(codebooks: np.ndarray) -> np.ndarray:
    """``[V, D+1, K]`` float32: ``[-2 C^T; ||c||^2]`` per codebook (precompute once per bundle)."""
    cb = np.asarray(codebooks, np.float32)
    return np.ascontiguousarray(np.concatenate([-2.0 * cb.transpose(0, 2, 1), (cb * cb).sum(-1)[:, None, :]], 1),
                                dtype=np.float32)


def quantize(zs: np.ndarray, codebooks: np.ndarray, assign: np.ndarray, search: np.ndarray | None = None) -> np.ndarray:
    """``zs [b, N, D]`` float32, ``codebooks [V, K, D]``, ``assign [b, N]`` or ``[N]`` (0-based)
    -> labels ``[b, N]`` int64 (ties to the lowest index). ``search``: :func:`search_matrices`."""
    zs = np.asarray(zs, np.float32)
    b, N, D = zs.shape
    assign = np.broadcast_to(np.asarray(assign), (b, N))
    if search is None:
        search = search_matrices(codebooks)
    za = np.empty((b, N, D + 1), np.float32)
    za[..., :D] = zs
    za[..., D] = 1.0
    vs = np.unique(assign)
    if len(vs) == 1:
        return (za @ search[vs[0]]).argmin(-1).astype(np.int64)
    out = np.empty((b, N), np.int64)
    for v in vs:
        mask = assign == v
        out[mask] = (za[mask] @ search[v]).argmin(1)
    return out


def dequantize(labels: np.ndarray, codebooks: np.ndarray, assign: np.ndarray) -> np.ndarray:
    """Inverse mapper (11): ``labels [b, N]`` with ``assign [b, N]`` or ``[N]`` -> ``[b, N, D]`` codewords."""
    labels = np.asarray(labels)
    assign = np.broadcast_to(np.asarray(assign), labels.shape)
    return codebooks[assign, labels]
