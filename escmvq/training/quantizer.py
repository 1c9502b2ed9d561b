"""Multi-codebook product VQ with the BSC channel model, in torch (Sec. II-B, III).

Same conventions as :mod:`escmvq.core.pvq` (raster sub-vectors, MSB-first labels); the
bit table comes from there so training and runtime agree on the binary mapper (9).

- :func:`nearest` — quantizer (7)/(23), ``||z||^2 - 2 z.c + ||c||^2`` like the runtime.
- :func:`transition_logprob` — log of the BSC transition (24) for every label, as the
  small matrix product over the B bits (NOTES): ``sum_j log(1-mu_j) + sum_j xor_j logit(mu_j)``.
- :func:`gumbel_softmax` — the relaxed sample (25)-(26).
- :func:`mu_from_raw` / :func:`raw_from_mu` — sigmoid reparametrisation keeping
  ``mu in [mu_min, 0.5]``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from escmvq.core import pvq

__all__ = [
    "to_subvectors",
    "from_subvectors",
    "codebook_map",
    "bit_table",
    "nearest",
    "transition_logprob",
    "gumbel_softmax",
    "mu_from_raw",
    "raw_from_mu",
    "perplexity",
    "tau_at",
]


def to_subvectors(z: torch.Tensor) -> torch.Tensor:
    """``[b, D, h, w]`` -> ``[b, N, D]`` (raster), as :func:`escmvq.core.pvq.to_subvectors`."""
    b, d, h, w = z.shape
    return z.permute(0, 2, 3, 1).reshape(b, h * w, d)


def from_subvectors(zs: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, d = zs.shape
    return zs.reshape(b, h, w, d).permute(0, 3, 1, 2)


def codebook_map(cb_idx: torch.Tensor, V: int, h: int, w: int) -> torch.Tensor:
    """``cb_idx [b, N]`` long (``V`` = not sent) -> one-hot ``[b, V+1, h, w]``, as
    :func:`escmvq.core.pvq.codebook_map`."""
    return from_subvectors(torch.nn.functional.one_hot(cb_idx, V + 1).float(), h, w)


def bit_table(B: int, dtype=torch.float32) -> torch.Tensor:
    """``[2**B, B]`` bits of every label (MSB first), from the numpy mapper."""
    return torch.from_numpy(pvq.bit_table(B).astype(np.float32)).to(dtype)


def nearest(zs: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``zs [..., D]``, ``codebook [K, D]`` -> argmin indices ``[...]`` (ties to lowest index)."""
    flat = zs.reshape(-1, zs.shape[-1])
    d = (flat * flat).sum(1, keepdim=True) - 2.0 * flat @ codebook.t() + (codebook * codebook).sum(1)[None]
    return d.argmin(1).reshape(zs.shape[:-1])


def transition_logprob(sent: torch.Tensor, mu: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Log of (24): ``sent [b, N]`` labels, ``mu [N, B]`` (or per sample ``[b, N, B]``),
    ``table [K, B]`` -> ``[b, N, K]``.

    Differentiable in ``mu``. ``log p(k|q) = sum_j log(1-mu_j) + sum_j (b_j(k) xor b_j(q)) logit(mu_j)``
    and ``xor = b(k) + b(q) - 2 b(k) b(q)``.
    """
    if mu.dim() == 2:
        mu = mu[None]
    logit = torch.log(mu) - torch.log1p(-mu)  # [1 or b, N, B]
    base = torch.log1p(-mu).sum(-1)  # [1 or b, N]
    bq = table[sent]  # [b, N, B]
    w = logit * (1.0 - 2.0 * bq)  # [b, N, B]
    const = base + (bq * logit).sum(-1)  # [b, N]
    return w @ table.t() + const[..., None]


def flip_labels(idx: torch.Tensor, mu: torch.Tensor, table: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The received labels of a bit-flip channel: ``idx [b, N]`` sent labels, ``mu`` flip
    probability per bit (``[N, B]`` or ``[b, N, B]``), ``table [K, B]`` (:func:`bit_table`)
    -> ``[b, N]`` long, each bit flipped independently with its probability."""
    sent = table[idx]  # [b, N, B]
    flips = (torch.rand(sent.shape, generator=generator, device=sent.device) < mu.expand_as(sent)).to(sent.dtype)
    recv = (sent + flips) % 2
    B = table.shape[1]
    return (recv * 2.0 ** torch.arange(B - 1, -1, -1, dtype=recv.dtype, device=recv.device)).sum(-1).long()


def posterior_mean(recv: torch.Tensor, mu: torch.Tensor, log_prior: torch.Tensor, codebook: torch.Tensor,
                   table: torch.Tensor) -> torch.Tensor:
    """Posterior-mean codeword of received labels: ``recv [b, N]``, flip probabilities ``mu``
    (``[N, B]`` or ``[b, N, B]``), ``log_prior [N, K]`` (up to a per-row constant),
    ``codebook [K, D]`` -> ``[b, N, D]``, ``sum_k p(k | r) C[k]`` with ``p(k | r) ~ prior(k) p(r | k)``
    and ``p(r | k)`` the channel (24) (symmetric in ``r`` and ``k``). The soft receiver's MMSE
    estimate (:mod:`escmvq.runtime.soft`) for hard-decided bits with LLRs ``+-log((1-mu)/mu)``."""
    logp = transition_logprob(recv, mu, table) + log_prior[None]
    return torch.softmax(logp, -1) @ codebook


def gumbel_softmax(logp: torch.Tensor, tau: float, generator: torch.Generator | None) -> torch.Tensor:
    """Relaxed one-hot sample (25)-(26): ``softmax((log p + g) / tau)``, ``g ~ Gumbel(0, 1)``."""
    u = torch.rand(logp.shape, generator=generator, dtype=logp.dtype, device=logp.device)
    g = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
    return F.softmax((logp + g) / tau, dim=-1)


def mu_from_raw(raw: torch.Tensor, mu_min: torch.Tensor) -> torch.Tensor:
    """``mu = mu_min + (0.5 - mu_min) * sigmoid(raw)`` (``mu_min`` broadcast from the left)."""
    mm = mu_min.reshape(mu_min.shape + (1,) * (raw.dim() - mu_min.dim()))
    return mm + (0.5 - mm) * torch.sigmoid(raw)


def raw_from_mu(mu: torch.Tensor | float, mu_min: float) -> torch.Tensor:
    """Inverse of :func:`mu_from_raw` for one codebook; ``mu`` is clipped into the open range."""
    mu = torch.as_tensor(mu, dtype=torch.float32)
    s = ((mu - mu_min) / (0.5 - mu_min)).clamp(1e-4, 1 - 1e-4)
    return torch.log(s) - torch.log1p(-s)


def perplexity(counts: torch.Tensor) -> float:
    """``exp(entropy)`` of a usage histogram (``K`` when uniform, 1 when one codeword)."""
    p = counts.double() / counts.sum().clamp_min(1)
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


def tau_at(step: int, tau0: float, decay: float, every: int) -> float:
    """Temperature after ``step`` iterations: ``tau0 * exp(-decay)`` once every ``every`` steps."""
    return tau0 * math.exp(-decay * (step // max(every, 1)))
