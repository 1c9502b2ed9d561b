"""Batched modulation and demodulation where every row (tile) has its own plan.

Under block fading each tile has its own gamma and hence its own plan (orders, powers,
bit order). The QAM tables are :mod:`escmvq.core.qam`'s; this module only gathers, for
each order m, all (row, symbol) pairs of that order across the batch, so one call of
:func:`qam.map_bits` / :func:`qam.demap_hard` per order serves the whole batch.
"""
from __future__ import annotations

import numpy as np

from escmvq.core import qam

__all__ = ["modulate", "demodulate"]


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
    out = np.empty((b, T), np.complex64)
    for m, rows, ts, pos in _positions(orders):
        out[rows, ts] = qam.map_bits(perm[rows[:, None], pos], m)
    return out


def demodulate(y: np.ndarray, orders: np.ndarray, bit_order: np.ndarray) -> np.ndarray:
    """Hard decisions: equalised ``y [b, T]`` -> ``[b, L]`` uint8 in flat label-bit order."""
    b, T = orders.shape
    L = bit_order.shape[1]
    perm = np.empty((b, L), np.uint8)
    for m, rows, ts, pos in _positions(orders):
        perm[rows[:, None], pos] = qam.demap_hard(y[rows, ts], m)
    out = np.empty_like(perm)
    np.put_along_axis(out, bit_order, perm, axis=1)
    return out
