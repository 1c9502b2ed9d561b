"""Product vector quantization (Sec. II-B): sub-vector layout, the binary mapper (9)
and its inverse (11), nearest-codeword search (7), the BSC transition model (24)
and the distortion table (31).

Conventions (shared by training, export and runtime; do not change one side alone):

- A latent ``z : [batch, D, h, w]`` (channels first, as a conv net emits it) holds
  ``N = h*w`` sub-vectors of dimension ``D``. Sub-vector ``i = r*w + c`` is the
  D-vector ``z[:, :, r, c]`` (raster order). :func:`to_subvectors` /
  :func:`from_subvectors` convert.
- Codeword index ``k`` in ``[0, 2**B)`` maps to ``B`` bits, most significant bit
  first: ``bit j = (k >> (B-1-j)) & 1``. Bit ``j`` of sub-vector ``i`` is flat bit
  ``i*B + j`` of the frame (``L = N*B`` bits).
- ``mu : [N, B]`` (one codebook) or ``[V, N, B]`` holds bit-flip probabilities in
  ``(0, 0.5]``; ``mu[i, j]`` is the flip probability of bit ``j`` of sub-vector ``i``.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "to_subvectors",
    "from_subvectors",
    "codebook_map",
    "bit_table",
    "index_to_bits",
    "bits_to_index",
    "nearest_codeword",
    "transition_logprob",
    "expected_distortion",
    "distortion_table",
    "posterior_means",
    "bsc",
    "flip_cost",
]


def to_subvectors(z: np.ndarray) -> np.ndarray:
    """``z : [batch, D, h, w]`` -> ``[batch, N=h*w, D]`` (raster order of positions)."""
    if z.ndim != 4:
        raise ValueError(f"z: expected [batch, D, h, w], got shape {z.shape}")
    b, d, h, w = z.shape
    return np.ascontiguousarray(z.transpose(0, 2, 3, 1).reshape(b, h * w, d))


def from_subvectors(zs: np.ndarray, h: int, w: int) -> np.ndarray:
    """``zs : [batch, N, D]`` with ``N == h*w`` -> ``[batch, D, h, w]``; inverse of :func:`to_subvectors`."""
    if zs.ndim != 3 or zs.shape[1] != h * w:
        raise ValueError(f"zs: expected [batch, {h * w}, D], got shape {zs.shape}")
    b, _, d = zs.shape
    return np.ascontiguousarray(zs.reshape(b, h, w, d).transpose(0, 3, 1, 2))


def codebook_map(codebooks: np.ndarray, V: int, h: int, w: int) -> np.ndarray:
    """The reliability-aware decoder's second input: ``codebooks : [batch, N] int`` (the
    codebook of each sub-vector, ``V`` = not sent) -> one-hot ``[batch, V+1, h, w]`` float32,
    laid out like the latent (:func:`from_subvectors`)."""
    c = np.asarray(codebooks)
    if c.ndim != 2 or c.shape[1] != h * w:
        raise ValueError(f"codebooks: expected [batch, {h * w}], got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() > V):
        raise ValueError(f"codebooks: indices must lie in 0..{V} (V = not sent)")
    onehot = (c[..., None] == np.arange(V + 1)).astype(np.float32)  # [b, N, V+1]
    return from_subvectors(onehot, h, w)


def bit_table(B: int) -> np.ndarray:
    """All ``2**B`` labels as bits: ``[2**B, B]`` uint8, row ``k`` = bits of ``k``, MSB first."""
    if not 1 <= B <= 24:
        raise ValueError(f"B: expected 1..24 bits, got {B}")
    return index_to_bits(np.arange(2**B), B)


def index_to_bits(idx: np.ndarray, B: int) -> np.ndarray:
    """Binary mapper (9). ``idx : [...]`` ints in ``[0, 2**B)`` -> ``[..., B]`` uint8, MSB first."""
    idx = np.asarray(idx)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"idx: expected integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2**B):
        raise ValueError(f"idx: values must lie in [0, {2**B}), got [{idx.min()}, {idx.max()}]")
    shifts = np.arange(B - 1, -1, -1, dtype=np.int64)
    return ((idx.astype(np.int64)[..., None] >> shifts) & 1).astype(np.uint8)


def bits_to_index(bits: np.ndarray) -> np.ndarray:
    """Inverse binary mapper (11). ``bits : [..., B]`` of 0/1 -> ``[...]`` int64."""
    bits = np.asarray(bits)
    B = bits.shape[-1]
    weights = (1 << np.arange(B - 1, -1, -1, dtype=np.int64))
    return bits.astype(np.int64) @ weights


def nearest_codeword(zs: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Quantizer (7). ``zs : [..., D]`` float, ``codebook : [K, D]`` -> indices ``[...]`` int64.

    Uses ``||z||^2 - 2 z.c + ||c||^2`` (the same expression the exported ONNX graph
    uses); ties go to the lowest index, as ``argmin`` does.
    """
    zs = np.asarray(zs, dtype=np.float32)
    codebook = np.asarray(codebook, dtype=np.float32)
    if zs.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"zs and codebook disagree on D: {zs.shape[-1]} vs {codebook.shape[-1]}")
    flat = zs.reshape(-1, zs.shape[-1])
    d = (flat * flat).sum(1, keepdims=True) - 2.0 * flat @ codebook.T + (codebook * codebook).sum(1)[None, :]
    return d.argmin(1).reshape(zs.shape[:-1]).astype(np.int64)


def transition_logprob(sent: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Log of the BSC transition (24): ``log p(k | sent)`` for every label ``k``.

    ``sent : [batch, N]`` int labels, ``mu : [N, B]`` -> ``[batch, N, 2**B]`` float64.

    ``log p(k|q) = sum_j log(1-mu_j) + sum_j (b_j(k) xor b_j(q)) * logit(mu_j)``;
    with ``xor = b(k) + b(q) - 2 b(k) b(q)`` this is one small matrix product.
    """
    mu = np.asarray(mu, dtype=np.float64)
    N, B = mu.shape
    sent = np.asarray(sent)
    if sent.ndim != 2 or sent.shape[1] != N:
        raise ValueError(f"sent: expected [batch, {N}], got shape {sent.shape}")
    logit = np.log(mu) - np.log1p(-mu)  # [N, B]
    base = np.log1p(-mu).sum(1)  # [N]
    bq = index_to_bits(sent, B).astype(np.float64)  # [batch, N, B]
    w = logit[None] * (1.0 - 2.0 * bq)  # [batch, N, B]
    const = base[None] + (bq * logit[None]).sum(-1)  # [batch, N]
    table = bit_table(B).astype(np.float64)  # [K, B]
    return w @ table.T + const[..., None]


def expected_distortion(zs: np.ndarray, codebook: np.ndarray, mu: np.ndarray,
                        recon: np.ndarray | None = None) -> np.ndarray:
    """Per-sample distortion (30): ``E ||z_hat - z||^2`` under the BSC of ``mu``.

    ``zs : [batch, N, D]``, ``codebook : [K, D]``, ``mu : [N, B]`` -> ``[batch, N]`` float64.
    ``recon``: what the receiver makes of each received label at each position, ``[N, K, D]``
    (e.g. :func:`posterior_means`); None: the codeword itself (hard decoding, the paper's (30)).
    """
    zs = np.asarray(zs, dtype=np.float64)
    cb = np.asarray(codebook, dtype=np.float64)
    q = nearest_codeword(zs, cb)
    p = np.exp(transition_logprob(q, mu))  # [batch, N, K]
    if recon is None:
        # sum_k p_k ||c_k - z||^2 = p.||c||^2 - 2 (p C).z + ||z||^2
        return p @ (cb * cb).sum(1) - 2.0 * ((p @ cb) * zs).sum(-1) + (zs * zs).sum(-1)
    r = np.asarray(recon, dtype=np.float64)
    pr = np.einsum("bnk,nkd->bnd", p, r)
    return np.einsum("bnk,nk->bn", p, (r * r).sum(-1)) - 2.0 * (pr * zs).sum(-1) + (zs * zs).sum(-1)


def posterior_means(codebook: np.ndarray, mu: np.ndarray, label_prior: np.ndarray | None = None) -> np.ndarray:
    """The soft receiver's MMSE estimate of every received label at every position, when the
    label's bits are decided hard and known to flip with ``mu``: ``E[c_k | r] = sum_k p(k | r) C[k]``
    with ``p(k | r) ~ prior(k) p(r | k)``, ``p(r | k)`` the channel (24).

    ``codebook : [K, D]``, ``mu : [N, B]``, ``label_prior : [N, K]`` or None (uniform)
    -> ``[N, K (received label), D]`` float64.
    """
    cb = np.asarray(codebook, dtype=np.float64)
    K = cb.shape[0]
    N = np.shape(mu)[0]
    lp = transition_logprob(np.broadcast_to(np.arange(K)[:, None], (K, N)), mu)  # [r, N, k]: log p(r|k)
    if label_prior is not None:
        lp = lp + np.log(np.maximum(np.asarray(label_prior, np.float64), 1e-30))[None]
    lp -= lp.max(-1, keepdims=True)
    w = np.exp(lp)
    w /= w.sum(-1, keepdims=True)
    return np.einsum("rnk,kd->nrd", w, cb)


def distortion_table(
    batches: Iterable[np.ndarray], codebooks: np.ndarray, mu: np.ndarray, label_prior: np.ndarray | None = None,
    receiver: str = "hard",
) -> np.ndarray:
    """Distortion table (31): the training-set mean of (30) per codebook and sub-vector.

    ``batches`` yields ``zs : [batch, N, D]`` encoder outputs; ``codebooks : [V, K, D]``,
    ``mu : [V, N, B]`` -> ``[V, N]`` float64. ``receiver``: "hard" (the paper's (31): the
    received label's codeword) or "soft" (its posterior mean under ``label_prior [V, N, K]``,
    :func:`posterior_means`).
    """
    codebooks = np.asarray(codebooks)
    mu = np.asarray(mu)
    V = codebooks.shape[0]
    if mu.shape[0] != V:
        raise ValueError(f"codebooks and mu disagree on V: {V} vs {mu.shape[0]}")
    if receiver not in ("hard", "soft"):
        raise ValueError(f"receiver: expected hard or soft, got {receiver!r}")
    recon = [None] * V
    if receiver == "soft":
        recon = [posterior_means(codebooks[v], mu[v], None if label_prior is None else label_prior[v]) for v in range(V)]
    total = None
    count = 0
    for zs in batches:
        part = np.stack([expected_distortion(zs, codebooks[v], mu[v], recon[v]).sum(0) for v in range(V)])
        total = part if total is None else total + part
        count += zs.shape[0]
    if count == 0:
        raise ValueError("batches: no latents given")
    return total / count


def bsc(bits: np.ndarray, mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Parallel binary symmetric channels (15): flip each bit with its own probability.

    ``bits : [batch, N, B]`` 0/1, ``mu`` broadcastable to it -> flipped bits, uint8.
    """
    flips = rng.random(np.shape(bits)) < mu
    return (np.asarray(bits, dtype=np.uint8) ^ flips.astype(np.uint8))


def flip_cost(codebooks: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """What flipping each label bit costs: ``F[v, i, j] = sum_k P(k) ||c_k - c_(k xor e_j)||^2``.

    codebooks : [V, K=2**B, D]; prior : None (uniform) or [V, N, K] label probabilities per
    sub-vector position. Returns [V, N, B] float64 (N = 1 when ``prior`` is None); bit ``j``
    is the label's bit j, MSB first (``e_j = 1 << (B-1-j)``).
    """
    cb = np.asarray(codebooks, np.float64)
    V, K, _ = cb.shape
    B = int(K).bit_length() - 1
    if K != 1 << B:
        raise ValueError(f"codebooks: K = {K} is not a power of 2")
    k = np.arange(K)
    sq = np.stack([((cb - cb[:, k ^ (1 << (B - 1 - j))]) ** 2).sum(-1) for j in range(B)], axis=-1)  # [V, K, B]
    if prior is None:
        return sq.mean(1)[:, None, :]
    return np.einsum("vnk,vkb->vnb", np.asarray(prior, np.float64), sq)
