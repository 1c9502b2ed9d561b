"""Statistics for the sweeps: per-image PSNR (eq. 52) and a mean with its confidence interval.

Decisions:

- PSNR is computed per image on the 8-bit reconstruction (``MAX = 255``) and the sweep
  reports the **mean of the per-image PSNRs** (the usual practice of the papers compared).
- An exact reconstruction has infinite PSNR; it is capped at :data:`PSNR_CAP` dB so that
  means and intervals stay finite (a lossy scheme never reaches it in practice).
- The interval is the two-sided Student-t interval of the mean, ``mean +- t_{n-1} s / sqrt(n)``
  with ``s`` the sample standard deviation (ddof = 1): it treats the ``n`` values (one per
  image x realisation) as i.i.d., which holds here since every image has its own fading and
  noise draw.
"""
from __future__ import annotations

import math

import numpy as np

from escmvq.core.metrics import PSNR_CAP, psnr_batch

__all__ = ["PSNR_CAP", "psnr_batch", "mean_ci", "MeanCI"]


class MeanCI(dict):
    """``{"mean", "ci", "level", "std", "n"}``: mean, half-width of the interval at ``level``,
    the level, the sample standard deviation, the count."""


def mean_ci(values, level: float = 0.95) -> MeanCI:
    """Mean and half-width of its two-sided Student-t confidence interval.

    values : ``[n]`` array-like of finite floats (n >= 1; with n = 1 the half-width is inf).
    level : confidence level in (0, 1).
    """
    from scipy import stats

    x = np.asarray(values, np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci: no values")
    if not np.all(np.isfinite(x)):
        raise ValueError("mean_ci: values must be finite")
    if not 0.0 < level < 1.0:
        raise ValueError(f"mean_ci: level must be in (0, 1), got {level}")
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(mean=mean, ci=math.inf, level=level, std=0.0, n=1)
    s = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * s / math.sqrt(n)
    return MeanCI(mean=mean, ci=half, level=level, std=s, n=n)
