"""Image quality, eq. (52): ``PSNR = 10 log10(MAX^2 / MSE)``, numpy only.

The one definition for the runtime (one image of any size), the evaluation sweeps (a
batch of images, one value each) and export checks; training computes the same formula
on tensors during its own validation.

- :func:`psnr`: one value for a whole array; ``inf`` for identical inputs. Two uint8
  arrays of one shape are compared in row chunks with an exact integer sum of squared
  differences (no float64 copy of a large image).
- :func:`psnr_batch`: one value per leading index, capped at :data:`PSNR_CAP` dB so that
  means and confidence intervals stay finite (an exact reconstruction has infinite PSNR;
  a lossy scheme never reaches the cap in practice).
"""
from __future__ import annotations

import numpy as np

__all__ = ["PSNR_CAP", "psnr", "psnr_batch"]

PSNR_CAP = 100.0
_CHUNK_BYTES = 1 << 22  # int64 differences of about this many bytes per chunk


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 255.0) -> float:
    """Eq. (52): ``10 log10(MAX^2 / MSE)`` over all elements of ``a`` and ``b`` (inf for
    identical inputs). Two uint8 arrays of one shape are compared in row chunks with an
    exact integer sum (no float64 copies)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.uint8 and b.dtype == np.uint8 and a.shape == b.shape and a.ndim >= 1 and a.size:
        step = max(1, _CHUNK_BYTES // max(1, 8 * a[0].size))
        sse = 0
        for i in range(0, len(a), step):
            d = (a[i:i + step].astype(np.int64) - b[i:i + step]).ravel()
            sse += int(np.dot(d, d))
        mse = sse / a.size
    else:
        mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(max_value**2 / mse)


def psnr_batch(ref: np.ndarray, rec: np.ndarray, max_value: float = 255.0, cap: float = PSNR_CAP) -> np.ndarray:
    """Per-image PSNR in dB.

    ref, rec : ``[n, H, W, 3]`` (or any ``[n, ...]``) arrays of the same shape, any real
        dtype (uint8 images on the 0..255 scale for the default ``max_value``).
    Returns ``[n]`` float64, each at most ``cap``. For uint8 images each value equals
    ``min(psnr(ref[i], rec[i]), cap)`` bit for bit (float64 sums of squared 8-bit
    differences are exact at these sizes).
    """
    a = np.asarray(ref)
    b = np.asarray(rec)
    if a.shape != b.shape:
        raise ValueError(f"psnr_batch: shapes differ: {a.shape} vs {b.shape}")
    if a.ndim < 2:
        raise ValueError(f"psnr_batch: expected [n, ...] arrays, got shape {a.shape}")
    d = a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1).astype(np.float64)
    mse = np.mean(d * d, axis=1)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(max_value ** 2 / mse)
    return np.minimum(out, cap)
