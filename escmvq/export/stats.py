"""Training-set statistics a bundle carries for the receiver and the erasure-aware allocator.

From encoder latents of training images (numpy; the encoder is the exported ONNX graph, so
no torch is needed and an older bundle can be given the tables too):

- ``label_prior [V, N, K]`` float32: how often each codeword of codebook v is the nearest
  one at sub-vector position i (the soft receiver's prior), with ``alpha`` pseudo-counts
  spread by the codebook's (add-one smoothed) usage over all positions, so rows sum to 1
  and no label has probability 0;
- ``latent_mean [N, D]`` float32: the mean latent per position, the receiver's substitute
  for a sub-vector that is not sent (the MMSE estimate without information);
- ``erasure_distortion [N]`` float64: ``E||z_i - latent_mean_i||^2``, the distortion of a
  sub-vector that is not sent: the "not sent" column of the distortion table (31).
"""
from __future__ import annotations

import numpy as np

from escmvq.core import pvq

__all__ = ["LatentStats", "latent_statistics", "encode_latents"]


class LatentStats(dict):
    """``{"label_prior", "latent_mean", "erasure_distortion"}`` plus ``n_images``."""


def encode_latents(session, tiles: np.ndarray, batch: int = 512, progress=None) -> np.ndarray:
    """``tiles [n, 3, H, W]`` float32 in [0, 1] through an ONNX encoder session ->
    sub-vectors ``[n, N, D]`` float32. ``progress(done)`` is called after each batch."""
    out = []
    for s in range(0, len(tiles), batch):
        z = session.run(None, {"x01": np.ascontiguousarray(tiles[s:s + batch], np.float32)})[0]
        out.append(pvq.to_subvectors(z))
        if progress is not None:
            progress(min(s + batch, len(tiles)))
    return np.concatenate(out)


def latent_statistics(zs: np.ndarray, codebooks: np.ndarray, alpha: float = 8.0) -> LatentStats:
    """zs : [n, N, D] float32 training latents; codebooks : [V, K, D] float32 -> the tables."""
    zs = np.asarray(zs, np.float32)
    n, N, D = zs.shape
    V, K, _ = codebooks.shape
    if n < 1:
        raise ValueError("latent_statistics: no latents")
    counts = np.zeros((V, N, K), np.float64)
    pos = np.broadcast_to(np.arange(N), (n, N)).ravel()
    for v in range(V):
        lab = pvq.nearest_codeword(zs, codebooks[v]).ravel()
        np.add.at(counts[v], (pos, lab), 1.0)
    usage = (counts.sum(1, keepdims=True) + 1.0) / (n * N + K)  # [V, 1, K] codebook-wide usage, add-one
    prior = (counts + alpha * usage) / (n + alpha)
    mean = zs.astype(np.float64).mean(0)  # [N, D]
    de = ((zs - mean) ** 2).sum(-1).mean(0)
    out = LatentStats(label_prior=prior.astype(np.float32), latent_mean=mean.astype(np.float32),
                      erasure_distortion=de.astype(np.float64))
    out["n_images"] = int(n)
    return out
