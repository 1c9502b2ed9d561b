"""The per-tile plan header: what a receiver that does not know ``h`` needs to rebuild the
transmitter's plan bit-exactly, and its CRC.

Why a state index and a power scale are enough. A precomputed
:class:`~escmvq.core.alloc.Allocator` turns ``(P_tot, gamma)`` into a plan through the budget
``b = P_tot * gamma`` only: the state ``k`` is the last one whose threshold fits ``b``
(``thresholds[k] <= b < thresholds[k+1]``), the codebooks, orders and bit order are functions
of ``k`` alone, and the powers are ``base_k / gamma`` plus the surplus ``P_tot - cost_k/gamma``
spread evenly (eq. (47)), i.e. a function of ``k`` and of where ``b`` sits in the state's
interval. Both ends know ``P_tot``. So the header carries

- ``k``, the trajectory index (``Plan.state_index + n_prefix``: erasure prefix states, negative
  in ``Plan.state_index``, come first), in ``ceil(log2(n_states))`` bits (9 for the shipped
  bundle's 288 states);
- ``j``, the power scale: the surplus share ``u = 1 - thresholds[k] / b`` in ``[0, 1)``,
  rounded *down* to ``j / 2^q`` (``q`` = ``scale_bits``, default 4). Between two states
  ``u`` stays below ~0.7 % (the shipped trajectory's median gap), so ``j`` is 0 there; it
  matters in the last state, where a good channel's whole surplus is spread evenly;
- a CRC-8 (polynomial x^8+x^2+x+1, i.e. 0x07, initial value 0xFF, over the header bits MSB
  first; its codewords of up to 127 bits have Hamming distance 4, so every single, double and
  triple bit error and every burst of up to 8 bits is detected), then a 0 pad bit to an even
  count for QPSK.

Both ends then plan with the *quantised* budget ``b_q = thresholds[k] / (1 - j/2^q)``
(``<= b``: rounding down never promises more than the channel gives) and
``gamma_q = b_q / P_tot``, moved up by one ulp when ``P_tot * gamma_q`` rounds below ``b_q``.
Only IEEE-754 division, multiplication and ``nextafter`` are involved (no ``exp``/``log``
whose last bit may differ between libm builds), so the two ends agree to the last bit on
any platform. The receiver accepts a header only when the CRC holds, the pad is 0, ``k`` is a
state on the trajectory and ``gamma_q`` lands back in state ``k``; anything else is a header
failure, reported, and the tile is decoded with every sub-vector "not sent" rather than with
another plan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CRC_BITS", "CRC_POLY", "CRC_INIT", "HeaderLayout", "HeaderError", "layout_for", "crc8",
           "quantize_budget", "header_gamma", "encode_headers", "decode_headers", "pack_bits", "unpack_bits"]

CRC_BITS = 8
CRC_POLY = 0x07  # x^8 + x^2 + x + 1
CRC_INIT = 0xFF
DEFAULT_SCALE_BITS = 4


class HeaderError(ValueError):
    """A plan header that does not describe a plan of this allocator (one line)."""


@dataclass(frozen=True)
class HeaderLayout:
    """Bit layout of one tile's header.

    n_states : states on the allocator's trajectory; state_bits : ``ceil(log2(n_states))``;
    scale_bits : q; n_bits : state + scale + CRC + pad (even); n_symbols : ``n_bits / 2`` QPSK
    symbols per copy.
    """
    n_states: int
    state_bits: int
    scale_bits: int

    @property
    def payload_bits(self) -> int:
        return self.state_bits + self.scale_bits

    @property
    def n_bits(self) -> int:
        n = self.payload_bits + CRC_BITS
        return n + (n % 2)

    @property
    def n_symbols(self) -> int:
        return self.n_bits // 2


def layout_for(allocator, scale_bits: int = DEFAULT_SCALE_BITS) -> HeaderLayout:
    """The header layout of ``allocator`` (anything with ``n_states``) with ``scale_bits`` in 0..16."""
    if isinstance(scale_bits, bool) or int(scale_bits) != scale_bits or not 0 <= scale_bits <= 16:
        raise ValueError(f"scale_bits: expected an int in 0..16, got {scale_bits!r}")
    n = int(allocator.n_states)
    return HeaderLayout(n_states=n, state_bits=max(1, math.ceil(math.log2(n))), scale_bits=int(scale_bits))


def pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """``values [b]`` non-negative ints -> ``[b, width]`` uint8, most significant bit first."""
    v = np.asarray(values, np.int64).reshape(-1)
    if width == 0:
        return np.zeros((v.size, 0), np.uint8)
    if (v < 0).any() or (v >> width).any():
        raise ValueError(f"values: expected ints in 0..{(1 << width) - 1}")
    return ((v[:, None] >> np.arange(width - 1, -1, -1)) & 1).astype(np.uint8)


def unpack_bits(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``[b, width]`` {0, 1} -> ``[b]`` int64."""
    b = np.asarray(bits, np.int64)
    if b.shape[1] == 0:
        return np.zeros(b.shape[0], np.int64)
    return (b << np.arange(b.shape[1] - 1, -1, -1)).sum(axis=1)


def crc8(bits: np.ndarray, init: int = CRC_INIT) -> np.ndarray:
    """CRC-8 (poly 0x07, no reflection, no final xor; initial register ``init``, 0xFF for the
    header: with 0 an all-zero header would carry an all-zero CRC) of each row of ``bits [b, n]``
    {0, 1}, fed MSB first. Returns ``[b, 8]`` uint8, most significant bit first."""
    b = np.asarray(bits)
    if b.ndim != 2:
        raise ValueError(f"bits: expected [b, n], got shape {b.shape}")
    reg = np.full(b.shape[0], int(init) & 0xFF, np.int64)
    for i in range(b.shape[1]):
        fb = ((reg >> 7) & 1) ^ b[:, i].astype(np.int64)
        reg = ((reg << 1) & 0xFF) ^ np.where(fb == 1, CRC_POLY, 0)
    return pack_bits(reg, CRC_BITS)


def _budget(thresholds: np.ndarray, k: int, j: int, q: int) -> float:
    # 1 - j/2^q is exact (dyadic), so b_q is one correctly rounded division
    return float(thresholds[k]) / (1.0 - j / float(1 << q))


def header_gamma(allocator, p_tot: float, k: int, j: int, scale_bits: int) -> float:
    """``gamma_q`` of header fields ``(k, j)``: the value both ends plan with.

    Raises :class:`HeaderError` when ``k`` is not a state of ``allocator``'s trajectory, ``j``
    not a ``scale_bits`` value, or the quantised budget does not fall back into state ``k``
    (a state no budget reaches, or a scale beyond the state's interval).
    """
    n = int(allocator.n_states)
    if not 0 <= k < n:
        raise HeaderError(f"plan header names state {k}, the allocator has {n} (0..{n - 1})")
    if not 0 <= j < (1 << scale_bits):
        raise HeaderError(f"plan header power scale {j} out of range for {scale_bits} bits")
    bq = _budget(allocator.thresholds, k, j, scale_bits)
    g = bq / p_tot
    if p_tot * g < bq:
        g = math.nextafter(g, math.inf)
    if not (0.0 < g < math.inf) or allocator.state_index(p_tot, g) != k:
        raise HeaderError(f"plan header (state {k}, scale {j}) describes no plan at P_tot = {p_tot:g}")
    return g


def quantize_budget(allocator, p_tot: float, gamma: float, scale_bits: int) -> tuple[int, int]:
    """The transmitter's header fields ``(k, j)`` for channel ``gamma``: the state of the budget
    ``P_tot * gamma`` and its surplus share rounded down (stepped down further in the rare case
    where rounding would carry ``gamma_q`` across to the next state)."""
    b = p_tot * gamma
    k = int(allocator.state_index(p_tot, gamma))
    thr = float(allocator.thresholds[k])
    q = int(scale_bits)
    j = 0
    if b > thr and q:
        j = min(int(math.floor((1.0 - thr / b) * (1 << q))), (1 << q) - 1)
    while True:
        try:
            header_gamma(allocator, p_tot, k, j, q)
            return k, j
        except HeaderError:
            if j == 0:
                raise
            j -= 1


def encode_headers(allocator, p_tot: float, gammas: np.ndarray, layout: HeaderLayout
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Headers of a batch of tiles: ``gammas [b]`` float64 (each tile's true ``|h|^2/sigma^2``) ->
    (bits ``[b, layout.n_bits]`` uint8, ``gamma_q [b]`` float64 to plan with)."""
    g = np.asarray(gammas, np.float64).reshape(-1)
    ks = np.empty(g.size, np.int64)
    js = np.empty(g.size, np.int64)
    gq = np.empty(g.size, np.float64)
    for i, gi in enumerate(g.tolist()):
        ks[i], js[i] = quantize_budget(allocator, p_tot, gi, layout.scale_bits)
        gq[i] = header_gamma(allocator, p_tot, int(ks[i]), int(js[i]), layout.scale_bits)
    payload = np.concatenate([pack_bits(ks, layout.state_bits), pack_bits(js, layout.scale_bits)], axis=1)
    bits = np.concatenate([payload, crc8(payload)], axis=1)
    pad = layout.n_bits - bits.shape[1]
    return np.concatenate([bits, np.zeros((g.size, pad), np.uint8)], axis=1), gq


def decode_headers(allocator, p_tot: float, bits: np.ndarray, layout: HeaderLayout
                   ) -> tuple[np.ndarray, np.ndarray, list]:
    """Receiver side of :func:`encode_headers`: ``bits [b, layout.n_bits]`` -> (``gamma_q [b]``
    float64, NaN where the header failed; ``ok [b]`` bool; the reason of each failure, one line
    per failed tile as ``(row, reason)``)."""
    bits = np.asarray(bits, np.uint8)
    if bits.ndim != 2 or bits.shape[1] != layout.n_bits:
        raise ValueError(f"bits: expected [b, {layout.n_bits}], got shape {bits.shape}")
    P = layout.payload_bits
    payload = bits[:, :P]
    crc_ok = (crc8(payload) == bits[:, P:P + CRC_BITS]).all(axis=1) & (bits[:, P + CRC_BITS:] == 0).all(axis=1)
    ks = unpack_bits(payload[:, :layout.state_bits])
    js = unpack_bits(payload[:, layout.state_bits:])
    gq = np.full(bits.shape[0], np.nan)
    ok = np.zeros(bits.shape[0], bool)
    why = []
    for i in range(bits.shape[0]):
        if not crc_ok[i]:
            why.append((i, "plan header CRC-8 mismatch"))
            continue
        try:
            gq[i] = header_gamma(allocator, p_tot, int(ks[i]), int(js[i]), layout.scale_bits)
            ok[i] = True
        except HeaderError as e:
            why.append((i, str(e)))
    return gq, ok, why
