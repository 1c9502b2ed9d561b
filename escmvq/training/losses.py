"""Loss terms of Sec. III and V.

- d0 (task loss): mean squared error between the normalised image and its reconstruction.
- d1 (communication/quantization loss, [19]): ``||sg(z) - z~||^2 + beta ||z - sg(z~)||^2`` on
  the Gumbel-Softmax *sample* z~ (25), not on the straight-through decoder input (14),
  which carries no gradient to the codebooks or mu (NOTES).
- R (22): ``mean(mu log mu)``, minimised at mu = 1/e; larger lambda pushes mu up.
- (27): ``sum_u eta^u L^(u) / sum_u eta^u`` with ``L^(u) = d0 + d1 + lambda^(u) R`` (28)-(29).

All terms are means over elements (pixels, latent elements, bits), as in the reference
VQ-VAE implementation; the paper writes squared norms without fixing the scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["d0_per_codebook", "d1", "regulariser", "multi_codebook_loss", "stage_weights"]


def d0_per_codebook(xh: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``xh [v, b, C, H, W]`` reconstructions of ``x [b, C, H, W]`` -> MSE per codebook ``[v]``."""
    return ((xh - x[None]) ** 2).flatten(1).mean(1)


def d1(z: torch.Tensor, z_sample: torch.Tensor, beta: float, commit_to: torch.Tensor | None = None) -> torch.Tensor:
    """Codebook term (gradient to codebooks and mu) + beta * commitment (gradient to the encoder).

    ``commit_to``: the commitment's target (e.g. the clean nearest codeword, preset
    ``commit_clean``) instead of the sample; ``None`` keeps the paper's ``sg(z~)``."""
    target = z_sample if commit_to is None else commit_to
    return F.mse_loss(z_sample, z.detach()) + beta * F.mse_loss(z, target.detach())


def regulariser(mu: torch.Tensor, kind: str = "xlogx") -> torch.Tensor:
    """(22): ``(1/NB) sum_ij mu_ij log mu_ij`` (``"xlogx"``, ESC-MVQ), or BlindSC's
    ``(mean(mu) - 0.5)^2`` (``"mse-half"``, Sec. V), which also pushes mu up."""
    if kind == "mse-half":
        return (mu.mean() - 0.5) ** 2
    if kind != "xlogx":
        raise ValueError(f"unknown regulariser {kind!r}")
    return (mu * torch.log(mu)).mean()


def stage_weights(stage: int, eta: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised weights ``eta^u / sum_k eta^k`` of (27), u = 1..stage."""
    w = torch.tensor([eta ** (u + 1) for u in range(stage)], dtype=dtype, device=device)
    return w / w.sum()


def multi_codebook_loss(d0s: torch.Tensor, d1s: torch.Tensor, Rs: torch.Tensor, lambdas, eta: float) -> torch.Tensor:
    """(27) from per-codebook terms ``[v]``."""
    v = d0s.shape[0]
    lam = torch.tensor(list(lambdas)[:v], dtype=d0s.dtype, device=d0s.device)
    return (stage_weights(v, eta, d0s.dtype, d0s.device) * (d0s + d1s + lam * Rs)).sum()
