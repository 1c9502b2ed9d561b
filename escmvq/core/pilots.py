"""Pilot symbols, the channel estimate a receiver forms from them, and the QPSK-with-repetition
modem of the small per-tile plan header (:mod:`escmvq.core.plan_header`).

Block fading (one ``h`` per tile): a tile is preceded by ``n`` known unit-energy pilots sent
at power ``p`` each, ``y_i = h sqrt(p) s_i + n_i``, ``n_i ~ CN(0, sigma^2)``. From them:

- least squares, ``h_ls = sum conj(s_i) y_i / (n sqrt(p))``: unbiased, error variance
  ``sigma^2 / (n p)`` whatever the fading law;
- LMMSE for Rayleigh (``h ~ CN(0, 1)``, ``sigma^2`` known):
  ``h_mmse = sqrt(p) sum conj(s_i) y_i / (n p + sigma^2)``, error variance
  ``sigma^2 / (n p + sigma^2)``; it shrinks the LS estimate towards 0 by ``n p / (n p + sigma^2)``.

Pure numpy, no randomness, no torch.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ESTIMATORS", "pilot_symbols", "estimate_h", "estimate_error_var", "qpsk_map", "qpsk_soft_combine"]

ESTIMATORS = ("ls", "lmmse")
_SQ = np.float32(1.0 / np.sqrt(2.0))


def _count(name: str, n) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {n!r}")
    return int(n)


def _positive(name: str, x) -> float:
    x = float(x)
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name}: expected a finite value > 0, got {x!r}")
    return x


def pilot_symbols(n: int) -> np.ndarray:
    """The ``n`` pilots every tile starts with: ``[n]`` complex64 QPSK points ``(+-1 +- 1j)/sqrt(2)``
    (unit energy, so the LS estimate needs no division by ``|s_i|^2``).

    Deterministic (no generator): pilot ``i`` is the QPSK point of the two bits of ``i*7 + 3``
    taken modulo 4, a fixed sequence that visits all four points every four pilots, so the
    pilots carry no DC offset in I or Q for ``n`` a multiple of 4.
    """
    n = _count("n", n)
    k = (np.arange(n) * 7 + 3) % 4
    re = np.where(k & 1, -1.0, 1.0)
    im = np.where(k & 2, -1.0, 1.0)
    return ((re + 1j * im) * _SQ).astype(np.complex64)


def estimate_h(y_pilots: np.ndarray, pilots: np.ndarray, pilot_power: float, method: str = "ls",
               noise_var: float | None = None) -> np.ndarray:
    """Channel estimate of each tile from its received pilots.

    y_pilots : [b, n] complex, ``h sqrt(pilot_power) s_i + noise``; pilots : [n] complex unit-energy
    (:func:`pilot_symbols`); pilot_power : float > 0; method : "ls" | "lmmse" (needs ``noise_var``,
    assumes ``E|h|^2 = 1``). Returns ``[b]`` complex64.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method: expected one of {', '.join(ESTIMATORS)}, got {method!r}")
    y = np.asarray(y_pilots)
    s = np.asarray(pilots)
    if y.ndim != 2 or s.ndim != 1 or y.shape[1] != s.size or s.size == 0:
        raise ValueError(f"y_pilots [b, n] and pilots [n] disagree: {y.shape} vs {s.shape}")
    p = _positive("pilot_power", pilot_power)
    corr = y.astype(np.complex128) @ np.conj(s.astype(np.complex128))  # sum_i conj(s_i) y_i
    n = s.size
    if method == "ls":
        return (corr / (n * np.sqrt(p))).astype(np.complex64)
    if noise_var is None:
        raise ValueError("noise_var: the LMMSE estimate needs the noise variance")
    nv = _positive("noise_var", noise_var)
    return (corr * np.sqrt(p) / (n * p + nv)).astype(np.complex64)


def estimate_error_var(n: int, pilot_power: float, noise_var: float, method: str = "ls") -> float:
    """``E|h - h_hat|^2`` of :func:`estimate_h`: ``sigma^2/(n p)`` (LS), ``sigma^2/(n p + sigma^2)``
    (LMMSE, ``h ~ CN(0, 1)``)."""
    if method not in ESTIMATORS:
        raise ValueError(f"method: expected one of {', '.join(ESTIMATORS)}, got {method!r}")
    n, p, nv = _count("n", n), _positive("pilot_power", pilot_power), _positive("noise_var", noise_var)
    return nv / (n * p) if method == "ls" else nv / (n * p + nv)


def qpsk_map(bits: np.ndarray, repetitions: int = 1) -> np.ndarray:
    """``bits [b, 2k]`` {0, 1} -> ``[b, k * repetitions]`` complex64 unit-energy QPSK, the whole
    sequence sent ``repetitions`` times. Bit ``2t`` drives I and ``2t+1`` drives Q, 0 -> +1
    (the TS 38.211 QPSK label, as :func:`escmvq.core.qam.map_bits` with m = 2)."""
    b = np.asarray(bits)
    if b.ndim != 2 or b.shape[1] % 2 or b.shape[1] == 0:
        raise ValueError(f"bits: expected [b, 2k] with k >= 1, got shape {b.shape}")
    if not np.isin(b, (0, 1)).all():
        raise ValueError("bits: expected values 0 or 1")
    r = _count("repetitions", repetitions)
    s = ((1.0 - 2.0 * b[:, 0::2]) + 1j * (1.0 - 2.0 * b[:, 1::2])) * _SQ
    return np.tile(s, (1, r)).astype(np.complex64)


def qpsk_soft_combine(y: np.ndarray, h_hat: np.ndarray, n_bits: int, repetitions: int = 1
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Decisions on :func:`qpsk_map`'s bits from the received ``y [b, k * repetitions]`` with the
    channel estimate ``h_hat [b]``: every copy is matched-filtered (``conj(h_hat) y``) and the
    copies are summed (maximum-ratio combining: all copies share ``h`` and the power), then the
    sign decides. Returns (bits ``[b, n_bits]`` uint8, combined soft values ``[b, n_bits]``
    float64, positive = bit 0)."""
    y = np.asarray(y)
    r = _count("repetitions", repetitions)
    n_bits = _count("n_bits", n_bits)
    if n_bits % 2:
        raise ValueError(f"n_bits: expected an even count, got {n_bits}")
    k = n_bits // 2
    if y.ndim != 2 or y.shape[1] != k * r:
        raise ValueError(f"y: expected [b, {k * r}] ({k} symbols x {r} copies), got shape {y.shape}")
    h = np.asarray(h_hat, np.complex128).reshape(-1)
    if h.shape[0] != y.shape[0]:
        raise ValueError(f"h_hat: expected [{y.shape[0]}], got shape {h.shape}")
    z = (np.conj(h)[:, None] * y.astype(np.complex128)).reshape(y.shape[0], r, k).sum(axis=1)
    soft = np.empty((y.shape[0], n_bits))
    soft[:, 0::2], soft[:, 1::2] = z.real, z.imag
    return (soft < 0).astype(np.uint8), soft
