"""Max-log bit LLRs of Sionna's Gray QAM, computed per axis (a square QAM is two Gray PAMs;
identical to the 2-D max-log, and far cheaper than Sionna's demapper on large constellations)."""
from __future__ import annotations

import math

__all__ = ["qam_llr"]


def _pam_llr(x, m2: int, no):
    """Max-log LLRs (Sionna's logit sign: log p(1)/p(0)) of ``m2`` Gray-PAM bits per real
    sample ``x [g, S]`` with per-row real noise variance ``no / 2`` -> ``[g, S, m2]``."""
    import torch
    from sionna.phy.mapping import Constellation

    pts = Constellation("pam", m2).points.real.to(torch.float32)  # unit energy, label = index
    labels = torch.tensor([[(i >> (m2 - 1 - j)) & 1 for j in range(m2)] for i in range(2 ** m2)], dtype=torch.bool)
    d = -(x[..., None] - pts) ** 2 / no[:, None, None]  # [g, S, M]
    neg = torch.tensor(-1e30)
    one = torch.where(labels.T[None, None], d[:, :, None, :], neg).amax(-1)  # [g, S, m2]
    zero = torch.where(~labels.T[None, None], d[:, :, None, :], neg).amax(-1)
    return one - zero


def qam_llr(y, m: int, no):
    """Max-log LLRs of Sionna's Gray ``2^m``-QAM: ``y [g, S]`` complex (equalised, unit-energy
    constellation), ``no [g]`` complex noise variance per row -> ``[g, S * m]`` float32
    (even bits from I, odd bits from Q, as Sionna's ``qam``)."""
    import torch

    m2 = m // 2
    s2 = math.sqrt(2.0)
    li = _pam_llr(y.real * s2, m2, no * 2.0)  # PAM on sqrt(2) Re y: complex noise var no -> real var no
    lq = _pam_llr(y.imag * s2, m2, no * 2.0)
    out = torch.stack([li, lq], -1).reshape(y.shape[0], y.shape[1], m)
    return out.reshape(y.shape[0], -1)
