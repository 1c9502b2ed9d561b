"""Measurement of the modulation thresholds of the JPEG + LDPC link
(:data:`~escmvq.eval.jpeg_ldpc.link.DEFAULT_THRESHOLDS_DB`)."""
from __future__ import annotations

import zlib

import numpy as np

from escmvq.eval.jpeg_ldpc.ldpc import LdpcCode
from escmvq.eval.jpeg_ldpc.link import ORDERS

__all__ = ["calibrate_thresholds"]


def calibrate_thresholds(n_symbols: int = 1152, target_bler: float = 0.1, blocks: int = 48, seed: int = 0,
                         rate: float = 0.75, orders=ORDERS, lo_db: float = -2.0, hi_db: float = 40.0,
                         step_db: float = 0.5, stages=(20,)) -> dict[int, float]:
    """Per order, the lowest per-symbol SNR (dB, on a ``step_db`` grid) at which random payloads
    over AWGN have block error rate <= ``target_bler`` (``blocks`` frames, CRC-checked).
    Bisection over the grid (blocks=200: 8 min for the five orders on 2 cores). Returns ``{m: dB}``."""
    from escmvq.core import channels

    rng = np.random.default_rng(seed)
    out = {}
    for m in orders:
        code = LdpcCode(m, n_symbols, rate, stages)
        pay = rng.integers(0, 256, (blocks, code.capacity), dtype=np.uint8)
        for row in pay:
            row[-4:] = np.frombuffer(zlib.crc32(row[:-4].tobytes()).to_bytes(4, "big"), np.uint8)
        s = code.encode(pay)
        noise = np.asarray(channels.apply(np.zeros_like(s), np.ones(blocks, np.complex64), np.ones(s.shape[1]),
                                          rng, noise_var=1.0), np.complex64)

        def bler(db):
            a = 10 ** (db / 20)
            y = s + noise / np.float32(a)
            _, ok, _ = code.decode(y, np.full(blocks, 1.0 / a ** 2))
            return 1.0 - ok.mean()

        lo, hi = int(round(lo_db / step_db)), int(round(hi_db / step_db))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if bler(mid * step_db) <= target_bler:
                hi = mid
            else:
                lo = mid
        out[m] = hi * step_db
    return out
