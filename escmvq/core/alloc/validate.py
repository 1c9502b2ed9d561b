"""Input checks for the allocators: every bad input raises ``ValueError`` naming the
argument and the problem."""
from __future__ import annotations

import math

import numpy as np

from escmvq.core.vocab import ALLOCATORS as METHODS
from escmvq.core.vocab import VARIANTS

ORDERS = (2, 4, 6, 8)


def check_tables(distortion, mu) -> tuple[np.ndarray, np.ndarray]:
    """distortion : [V, N] float; mu : [V, N, B] float in (0, 0.5]. Returns float64 C-contiguous copies."""
    try:
        d = np.array(distortion, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("distortion: expected a numeric [V, N] array") from None
    try:
        m = np.array(mu, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("mu: expected a numeric [V, N, B] array") from None
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"distortion: expected shape [V, N] with V, N >= 1, got {d.shape}")
    if m.ndim != 3 or m.shape[2] < 1:
        raise ValueError(f"mu: expected shape [V, N, B] with B >= 1, got {m.shape}")
    if m.shape[:2] != d.shape:
        raise ValueError(f"mu: shape {m.shape} disagrees with distortion {d.shape} (expected [{d.shape[0]}, {d.shape[1]}, B])")
    if np.isnan(d).any():
        raise ValueError("distortion: contains NaN")
    if not np.isfinite(d).all():
        raise ValueError("distortion: contains inf")
    if np.isnan(m).any():
        raise ValueError("mu: contains NaN")
    if (m <= 0).any() or (m > 0.5).any():
        raise ValueError(f"mu: values must lie in (0, 0.5], got min {m.min():.3g}, max {m.max():.3g}")
    return np.ascontiguousarray(d), np.ascontiguousarray(m)


def check_rate(rate, m_max, n_bits: int) -> tuple[int, int, int]:
    """Returns ``(rate, m_max, T)``; the rate must be an order the QAM set can carry."""
    if m_max not in ORDERS or int(m_max) != m_max:
        raise ValueError(f"m_max: expected one of {ORDERS}, got {m_max!r}")
    m_max = int(m_max)
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"rate: expected an even integer in 2..{m_max}, got {rate!r}") from None
    if not math.isfinite(r) or r != int(r) or int(r) not in ORDERS or int(r) > m_max:
        raise ValueError(
            f"rate: {rate!r} bits per channel use cannot be reached with orders {tuple(o for o in ORDERS if o <= m_max)} "
            f"(expected an even integer in 2..{m_max})"
        )
    r = int(r)
    if n_bits % r:
        raise ValueError(f"rate: N*B = {n_bits} bits is not a multiple of rate {r}, so T = N*B/rate is not an integer")
    return r, m_max, n_bits // r


def check_budget(p_tot, gamma) -> tuple[float, float]:
    out = []
    for name, x in (("p_tot", p_tot), ("gamma", gamma)):
        if np.ndim(x) != 0:
            raise ValueError(f"{name}: expected a scalar, got shape {np.shape(x)}")
        try:
            xf = float(x)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {x!r}") from None
        if math.isnan(xf):
            raise ValueError(f"{name}: is NaN")
        if not math.isfinite(xf) or xf <= 0:
            raise ValueError(f"{name}: expected a finite value > 0, got {xf!r}")
        out.append(xf)
    return out[0], out[1]


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_iter_max(iter_max) -> int:
    if int(iter_max) != iter_max or iter_max < 1:
        raise ValueError(f"iter_max: expected a positive int, got {iter_max!r}")
    return int(iter_max)
