"""Batched modulation and demodulation where every row (tile) has its own plan.

Under block fading each tile has its own gamma and hence its own plan (orders, powers,
bit order). A plan with erasures has symbols of order 0 (unused channel uses, sent as 0)
and carries only the first ``sum(orders)`` entries of its bit order; the remaining bits
(those of the sub-vectors that are not sent) come back as 0. The QAM tables are :mod:`escmvq.core.qam`'s; this module only gathers, for
each order m, all (row, symbol) pairs of that order across the batch, so one call of
:func:`qam.map_bits` / :func:`qam.demap_hard` per order serves the whole batch.
"""
from __future__ import annotations

import numpy as np

from escmvq.core import qam

__all__ = ["modulate", "demodulate", "demodulate_llr"]


def _positions(orders: np.ndarray):
    """Per order m: rows, symbol indices and ``[n, m]`` positions in the permuted bit row."""
    start = np.zeros_like(orders)
    np.cumsum(orders[:, :-1], axis=1, out=start[:, 1:])
    for m in qam.ORDERS:
        rows, ts = np.nonzero(orders == m)
        if rows.size:
            yield m, rows, ts, start[rows, ts][:, None] + np.arange(m)[None, :]


def modulate(bits: np.ndarray, orders: np.ndarray, bit_order: np.ndarray) -> np.ndarray:
    """``bits [b, L]`` uint8 (flat label bits), ``orders [b, T]``, ``bit_order [b, L]``
    -> unit-energy symbols ``[b, T]`` complex64 (row r as ``qam.map_frame`` with row r's plan)."""
    b, T = orders.shape
    perm = np.take_along_axis(bits, bit_order, axis=1)
    out = np.zeros((b, T), np.complex64)
    for m, rows, ts, pos in _positions(orders):
        out[rows, ts] = qam.map_bits(perm[rows[:, None], pos], m)
    return out


def demodulate(y: np.ndarray, orders: np.ndarray, bit_order: np.ndarray) -> np.ndarray:
    """Hard decisions: equalised ``y [b, T]`` -> ``[b, L]`` uint8 in flat label-bit order."""
    b, T = orders.shape
    L = bit_order.shape[1]
    perm = np.zeros((b, L), np.uint8)
    for m, rows, ts, pos in _positions(orders):
        perm[rows[:, None], pos] = qam.demap_hard(y[rows, ts], m)
    out = np.empty_like(perm)
    np.put_along_axis(out, bit_order, perm, axis=1)
    return out


def demodulate_llr(y: np.ndarray, orders: np.ndarray, bit_order: np.ndarray, noise_var_per_symbol: np.ndarray,
                   mode: str = "exact") -> np.ndarray:
    """Soft decisions: per-bit LLRs (positive = bit 0 more likely), :func:`qam.demap_llr`.

    y : [b, T] complex, equalised ``y / (h sqrt(p_t))``; orders : [b, T] int (0 = unused);
    bit_order : [b, L] int, row r a permutation of the L flat bits;
    noise_var_per_symbol : [b, T] float64, ``sigma^2 / (|h|^2 p_t)`` (``inf`` where p_t = 0:
        :func:`escmvq.core.channels.effective_noise_var`); mode : "exact" | "maxlog".
    Returns ``[b, L]`` float32 in flat label-bit order; bits no symbol carries (order-0
    symbols, sub-vectors that are not sent) get LLR 0.
    """
    b, T = orders.shape
    L = bit_order.shape[1]
    nv = np.asarray(noise_var_per_symbol, np.float64)
    if nv.shape != (b, T):
        raise ValueError(f"noise_var_per_symbol: expected shape {(b, T)}, got {nv.shape}")
    perm = np.zeros((b, L), np.float32)
    for m, rows, ts, pos in _positions(orders):
        perm[rows[:, None], pos] = qam.demap_llr(y[rows, ts], m, nv[rows, ts], mode)
    out = np.empty_like(perm)
    np.put_along_axis(out, bit_order, perm, axis=1)
    return out
