"""What the allocator test files share: trained-like tables drawn from a given sampler, and a custom BER model."""
from __future__ import annotations

import numpy as np

from escmvq.core import ber

MU_MIN = np.array([0.0005, 0.001, 0.0045, 0.02, 0.05])


def trained_like_tables(draw, V: int = 5, N: int = 64, B: int = 9, ties: bool = False):
    """``(D [V, N], mu [V, N, B])``: codebook v's mu >= mu_min^(v), spread per bit; distortion
    falls as the codebook index falls (lower mu -> better). ``draw(k, shape, lo, hi)`` gives the
    k-th uniform array (k = 0, 1, 2 in this order). ``ties``: quantised values and the second
    half of the sub-vectors a copy of the first (many exactly equal ratios and mu)."""
    mm = np.geomspace(MU_MIN[0], MU_MIN[-1], V) if V != 5 else MU_MIN
    mu = np.minimum(mm[:, None, None] * np.exp(draw(0, (V, N, B), 0.0, 2.5)), 0.5)
    base = draw(1, (N,), 0.2, 1.0)
    D = base[None, :] * (1 + np.cumsum(draw(2, (V, N), 0.05, 0.6), axis=0))
    if ties:
        mu = np.round(mu, 3).clip(1e-3, 0.5)
        D = np.round(D, 1)
        half = N // 2
        mu[:, half:] = mu[:, : N - half]
        D[:, half:] = D[:, : N - half]
    return D, mu


class Scaled:
    """A custom BER model: (33) needing twice the power."""

    name = "scaled"

    def ber(self, q, m):
        return ber.EQ33.ber(np.asarray(q) / 2, m)

    def power(self, mu, m):
        return 2 * ber.EQ33.power(mu, m)
