"""Soft-decision decoding of product-VQ labels (numpy; no torch).

For sub-vector ``i`` sent on codebook ``v`` with ``B`` label bits whose LLRs are
``l_j = log P(b_j=0|y) - log P(b_j=1|y)`` (the bits are independent given ``y``: each lives
on one QAM axis of one symbol), the log-posterior of label ``k`` is, up to a per-row constant,

    log p(k | y) = log prior[v, i, k] + sum_j (1 - 2 b_j(k)) l_j / 2,

one ``[n, B] @ [B, K]`` matrix product for all the sub-vectors of a batch (``K = 2**B``;
bits as :func:`escmvq.core.pvq.bit_table`, MSB first): :func:`label_log_posterior`, the
reference the faster paths below are tested against. The decoder gets either the posterior-mean codeword
``sum_k p(k|y) C_v[k]`` (MMSE, the minimiser of the expected squared latent error) or the
codeword of the most likely label (MAP).

Speed (no loop over sub-vectors, nor over codebooks): the likelihood of a label is a
product over its bits, so with the bits split into a high and a low half it is a rank-1
(Kronecker) weight ``w_hi[a] w_lo[b]`` (:func:`half_log_weights`). With a uniform prior the
MMSE codeword is ``sum_a w_hi[a] sum_b w_lo[b] C[a, b]`` (:func:`mmse_uniform`: one
``[n, 2^hi] @ [2^hi, V 2^lo D]`` product for every codebook at once and a batched
``[1, 2^lo] @ [2^lo, D]``), never forming the ``[n, K]`` posterior. With a prior the
per-position tensor ``prior[v, i, a, b] [C_v[a, b], 1]`` takes the place of ``C``
(:func:`mmse_prior_batched`, batched over positions, float64), or, for a few rows (batch 1),
the ``[n, K]`` log-posteriors are formed directly (:func:`mmse_prior_rows`).

Labels reported: for ``estimate="map"`` the MAP labels; for ``"mmse"`` the per-bit sign
decisions of the LLRs (the MAP labels under a uniform prior; not the prior-weighted MAP,
which would cost an ``[n, K]`` pass), the same for every batch size.

A sub-vector that is not sent (codebook index ``V`` in a plan with erasures) gets a fixed
substitute (:func:`substitutes`), on the hard and the soft path alike.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from escmvq.core import pvq
from escmvq.runtime.quantize import dequantize

__all__ = ["SOFT_ESTIMATES", "label_signs", "log_prior_table", "label_log_posterior", "split_codebooks",
           "half_log_weights", "mmse_uniform", "mmse_prior_rows", "mmse_prior_batched", "prior_tensor",
           "codebooks_with_ones", "map_labels_uniform", "substitutes", "SoftTables", "decode_soft", "decode_hard"]

SOFT_ESTIMATES = ("mmse", "map")
PRIOR_FLOOR = 1e-30  # a label never seen in training keeps log-prior ~ -69, not -inf
_CLAMP = 80.0  # relative log-weights below -80 are clamped there: e^-80 ~ 2e-35, no float32 subnormals
_CLAMP_HALF = 40.0  # the same per half of the bits, so that products of two halves stay >= e^-80
_CLAMP64 = 300.0  # the same for the float64 half weights of the prior path (e^-600 * 1e-30 stays normal)
_BATCHED_ROWS = 512  # from this many sub-vectors on, the prior path is batched over positions


@lru_cache(maxsize=None)
def label_signs(B: int) -> np.ndarray:
    """``[B, 2**B]`` float32: entry ``(j, k) = (1 - 2 b_j(k)) / 2``. Read-only."""
    s = np.ascontiguousarray(0.5 - pvq.bit_table(B).T.astype(np.float32))
    s.setflags(write=False)
    return s


def log_prior_table(label_prior: np.ndarray | None) -> np.ndarray | None:
    """``label_prior [V, N, K]`` (rows sum to 1; renormalised here) -> ``[V, N, K]`` float32
    log-probabilities, floored at ``log(1e-30)``; None stays None (uniform prior)."""
    if label_prior is None:
        return None
    p = np.maximum(np.asarray(label_prior, np.float64), 0.0)
    tot = p.sum(-1, keepdims=True)
    if np.any(tot <= 0):
        raise ValueError("label_prior: a row sums to 0")
    return np.log(np.maximum(p / tot, PRIOR_FLOOR)).astype(np.float32)


def label_log_posterior(llr: np.ndarray, log_prior: np.ndarray | None = None) -> np.ndarray:
    """Unnormalised label log-posteriors.

    llr : [n, B] float32 bit LLRs (positive = bit 0); log_prior : [n, K] float32 or None
    (uniform). Returns ``[n, K]`` float32 (a new array; each row is off by a constant).
    """
    llr = np.asarray(llr, np.float32)
    out = llr @ label_signs(llr.shape[-1])
    if log_prior is not None:
        out += log_prior
    return out


def split_codebooks(codebooks: np.ndarray) -> np.ndarray:
    """``codebooks [V, K, D]`` -> ``[2**hi, V, 2**lo * D]`` float32 (``K = 2**B``, ``hi = ceil(B/2)``,
    ``lo = B - hi``): entry ``[a, v]`` holds ``C_v[a * 2**lo : (a+1) * 2**lo]`` flattened
    (for :func:`mmse_uniform`)."""
    V, K, D = codebooks.shape
    B = int(K).bit_length() - 1
    hi = (B + 1) // 2
    c = np.asarray(codebooks, np.float32).reshape(V, 1 << hi, (K >> hi) * D).transpose(1, 0, 2)
    return np.ascontiguousarray(c)


@lru_cache(maxsize=None)
def _half_table(nb: int) -> np.ndarray:
    """``[2 nb, 2**nb]`` float32: ``nb`` rows of ones over the ``-b_j(a)`` rows (for
    :func:`half_log_weights`). Read-only."""
    bits = pvq.bit_table(nb).T.astype(np.float32)  # [nb, 2**nb]
    t = np.ascontiguousarray(np.concatenate([np.ones_like(bits), -bits]))
    t.setflags(write=False)
    return t


def half_log_weights(llr: np.ndarray) -> np.ndarray:
    """Log-likelihood of every label of a group of bits, relative to the best one.

    llr : [n, nb] float32. Returns ``[n, 2**nb]`` float32 ``sum_j log q_j(b_j(a))`` (labels
    MSB first) with ``q_j = 1`` for the bit value the LLR favours and ``exp(-|l_j|)`` for the
    other, i.e. ``sum_j min(l_j, 0) - b_j(a) l_j``: max 0 per row. One matrix product.
    """
    n, nb = llr.shape
    u = np.empty((n, 2 * nb), np.float32)
    np.minimum(llr, 0.0, out=u[:, :nb])
    u[:, nb:] = llr
    return u @ _half_table(nb)


def _weights(llr: np.ndarray) -> np.ndarray:
    w = half_log_weights(llr)
    np.maximum(w, -_CLAMP_HALF, out=w)  # negligible next to the best label's 1; no subnormal products
    return np.exp(w, out=w)


def mmse_uniform(llr: np.ndarray, cb: np.ndarray, split: np.ndarray) -> np.ndarray:
    """Posterior-mean codewords under a uniform label prior, without forming ``[n, K]``.

    llr : [n, B] float32; cb : [n] int codebook of each row (``0 <= cb < V``);
    split : :func:`split_codebooks` ``[2**hi, V, 2**lo * D]`` float32.
    Returns ``[n, D]`` float32 equal to ``softmax(label_log_posterior(llr)) @ C_cb`` (up to the
    e^-40 clamp per half of the labels' relative weights: below 1e-14 of the result).
    """
    llr = np.asarray(llr, np.float32)
    n, B = llr.shape
    hi = (B + 1) // 2
    w_hi = _weights(np.ascontiguousarray(llr[:, :hi]))  # [n, 2**hi]
    w_lo = _weights(np.ascontiguousarray(llr[:, hi:]))  # [n, 2**lo]
    n_hi, V, lo_d = split.shape
    g = (w_hi @ split.reshape(n_hi, V * lo_d)).reshape(n, V, w_lo.shape[1], -1)  # sum_a w_hi[a] C_v[a, b]
    z = np.matmul(w_lo[:, None, :], g[np.arange(n), cb])[:, 0]  # [n, D]
    z /= (w_hi.sum(1) * w_lo.sum(1))[:, None]
    return z


def map_labels_uniform(llr: np.ndarray) -> np.ndarray:
    """MAP labels under a uniform prior: the bitwise sign decisions. ``llr [n, B]`` -> ``[n]`` int64."""
    return pvq.bits_to_index(np.asarray(llr) < 0)


def mmse_prior_rows(llr: np.ndarray, cb: np.ndarray, pos: np.ndarray, log_prior: np.ndarray,
                    codebooks1: np.ndarray) -> np.ndarray:
    """Posterior-mean codewords under the label prior, from full ``[n, K]`` log-posteriors (for
    a few rows: the final product serves every codebook at once).

    llr : [n, B] float32; cb : [n] int codebook (< V); pos : [n] int sub-vector position;
    log_prior : [V, N, K] float32; codebooks1 : [K, V * (D+1)] float32, codebook ``v``'s
    ``[C_v, 1]`` in columns ``v*(D+1) ..`` (:func:`codebooks_with_ones`). Returns ``[n, D]`` float32.
    """
    lp = label_log_posterior(llr, log_prior[cb, pos])  # [n, K]
    lp -= lp.max(1, keepdims=True)
    np.maximum(lp, -_CLAMP, out=lp)
    w = np.exp(lp, out=lp)  # softmax numerator, max 1 per row
    V = log_prior.shape[0]
    nd = (w @ codebooks1).reshape(len(w), V, -1)[np.arange(len(w)), cb]  # [n, D+1]: numerator, normaliser
    return (nd[:, :-1] / nd[:, -1:]).astype(np.float32, copy=False)


def codebooks_with_ones(codebooks: np.ndarray) -> np.ndarray:
    """``codebooks [V, K, D]`` -> ``[K, V * (D+1)]`` float32: ``[C_0, 1, C_1, 1, ...]``."""
    V, K, D = codebooks.shape
    c1 = np.concatenate([np.asarray(codebooks, np.float32), np.ones((V, K, 1), np.float32)], 2)
    return np.ascontiguousarray(c1.transpose(1, 0, 2).reshape(K, V * (D + 1)))


def prior_tensor(log_prior: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """``[V, N, 2**hi, 2**lo * (D+1)]`` float64: entry ``[v, i, a, (b, d)]`` is
    ``prior[v, i, k] [C_v[k], 1]_d`` with ``k = a * 2**lo + b`` (for :func:`mmse_prior_batched`).

    log_prior : [V, N, K] float32 (:func:`log_prior_table`); codebooks : [V, K, D].
    """
    V, N, K = log_prior.shape
    D = codebooks.shape[-1]
    hi = int(K).bit_length() // 2  # ceil(B / 2), B = log2(K)
    p = np.exp(np.asarray(log_prior, np.float64))
    p /= p.sum(-1, keepdims=True)
    c1 = np.concatenate([np.asarray(codebooks, np.float64), np.ones((V, K, 1))], 2)  # [V, K, D+1]
    return np.ascontiguousarray((p[..., None] * c1[:, None]).reshape(V, N, 1 << hi, (K >> hi) * (D + 1)))


def _weights64(llr: np.ndarray) -> np.ndarray:
    w = half_log_weights(llr).astype(np.float64)
    np.maximum(w, -_CLAMP64, out=w)
    return np.exp(w, out=w)


def mmse_prior_batched(llr: np.ndarray, cb: np.ndarray, tensor: np.ndarray) -> np.ndarray:
    """Posterior-mean codewords under the label prior without forming ``[n, K]``:
    ``sum_a w_hi[a] sum_b w_lo[b] T_i[a, v, b]`` for the sub-vector at position ``i`` on
    codebook ``v``. Per codebook (a loop over the at most V codebooks, none over sub-vectors)
    the rows are packed position by position into ``[N, c_max, 2**hi]`` (zero-padded to the
    largest count ``c_max`` of one position) for one product batched over the N positions.

    llr : [b, N, B] float32; cb : [b, N] int codebook (< V); tensor : :func:`prior_tensor`
    ``[V, N, 2**hi, 2**lo * (D+1)]`` float64. Returns ``[b, N, D]`` float32.
    """
    b, N, B = llr.shape
    hi = (B + 1) // 2
    n_hi, width = tensor.shape[2:]
    w_hi = _weights64(np.ascontiguousarray(llr[..., :hi].reshape(b * N, hi))).reshape(b, N, n_hi)
    w_lo = _weights64(np.ascontiguousarray(llr[..., hi:].reshape(b * N, B - hi))).reshape(b, N, -1)
    n_lo = w_lo.shape[2]
    nd = np.empty((b, N, width // n_lo))  # numerator [D] and normaliser [1] per sub-vector
    for v in np.unique(cb):
        mask = cb == v
        slot = np.cumsum(mask, 0) - 1  # [b, N]: rank of row r among position i's rows on v
        r, i = np.nonzero(mask)
        s = slot[r, i]
        x = np.zeros((N, int(slot[-1].max()) + 1, n_hi))
        x[i, s] = w_hi[r, i]
        g = np.matmul(x, tensor[v])  # [N, c_max, 2**lo * (D+1)]: sum_a w_hi[a] T_i[a, v]
        nd[r, i] = np.matmul(w_lo[r, i][:, None, :], g[i, s].reshape(len(r), n_lo, -1))[:, 0]
    return (nd[..., :-1] / nd[..., -1:]).astype(np.float32)


def substitutes(codebooks: np.ndarray, log_prior: np.ndarray | None, latent_mean: np.ndarray | None,
                N: int) -> np.ndarray:
    """What the decoder gets for a sub-vector that is not sent: ``[N, D]`` float32.

    ``latent_mean [N, D]`` (the training-set mean) when the bundle has it; else the
    posterior-mean codeword with no evidence under the prior of the last codebook:
    ``sum_k prior[V-1, i, k] C[V-1, k]`` (``log_prior [V, N, K]``), or the mean of
    ``C[V-1]`` when the prior is uniform (None).
    """
    if latent_mean is not None:
        return np.ascontiguousarray(latent_mean, np.float32)
    last = np.asarray(codebooks[-1], np.float64)  # [K, D]
    if log_prior is None:
        return np.repeat(last.mean(0, keepdims=True), N, 0).astype(np.float32)
    p = np.exp(np.asarray(log_prior[-1], np.float64))
    return ((p / p.sum(-1, keepdims=True)) @ last).astype(np.float32)


class SoftTables:
    """Per-bundle precomputation of the soft receiver (built once).

    codebooks : [V, K, D] float32; label_prior : [V, N, K] or None (uniform);
    latent_mean : [N, D] or None. Attributes: ``codebooks``, ``log_prior`` [V, N, K] float32
    or None, ``split`` (:func:`split_codebooks`), ``codebooks1`` (:func:`codebooks_with_ones`),
    ``tensor`` (:func:`prior_tensor`, None without prior), ``subst`` [N, D] float32
    (:func:`substitutes`).
    """

    def __init__(self, codebooks: np.ndarray, label_prior: np.ndarray | None, latent_mean: np.ndarray | None,
                 N: int):
        self.codebooks = np.asarray(codebooks, np.float32)
        V, K, D = self.codebooks.shape
        if K & (K - 1):
            raise ValueError(f"codebooks: K = {K} is not a power of 2")
        self.log_prior = log_prior_table(label_prior)
        self.split = split_codebooks(self.codebooks)
        self.codebooks1 = codebooks_with_ones(self.codebooks)
        self.tensor = None if self.log_prior is None else prior_tensor(self.log_prior, self.codebooks)
        self.subst = substitutes(self.codebooks, self.log_prior, latent_mean, N)


def _with_prior(llr: np.ndarray, cb: np.ndarray, tables: SoftTables, estimate: str) -> tuple[np.ndarray, np.ndarray]:
    """Estimates under the label prior: ``llr [b, N, B]``, ``cb [b, N]`` (< V) -> (``[b, N, D]``,
    labels ``[b, N]``)."""
    b, N, B = llr.shape
    pos = np.broadcast_to(np.arange(N), (b, N))
    if estimate == "map":
        labels = label_log_posterior(llr.reshape(b * N, B), tables.log_prior[cb, pos].reshape(b * N, -1)).argmax(1)
        labels = labels.reshape(b, N)
        return tables.codebooks[cb, labels], labels
    labels = map_labels_uniform(llr.reshape(b * N, B)).reshape(b, N)
    if b * N >= _BATCHED_ROWS:
        return mmse_prior_batched(llr, cb, tables.tensor), labels
    z = mmse_prior_rows(llr.reshape(b * N, B), cb.ravel(), pos.ravel(), tables.log_prior, tables.codebooks1)
    return z.reshape(b, N, -1), labels


def decode_soft(llr: np.ndarray, cbs: np.ndarray, tables: SoftTables, estimate: str = "mmse"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Sub-vector estimates of a batch from bit LLRs (no loop over sub-vectors or codebooks).

    llr : [b, N, B] float32; cbs : [b, N] int, codebook of each sub-vector (``V`` = not sent);
    tables : :class:`SoftTables` of the bundle; estimate : "mmse" | "map".
    Returns (``[b, N, D]`` float32 sub-vectors for the decoder, ``[b, N]`` int64 labels (see
    the module notes), -1 where not sent).
    """
    if estimate not in SOFT_ESTIMATES:
        raise ValueError(f"estimate: expected one of {', '.join(SOFT_ESTIMATES)}, got {estimate!r}")
    b, N, B = llr.shape
    V, _, D = tables.codebooks.shape
    gone = cbs == V
    cb = np.where(gone, V - 1, cbs)  # placeholder codebook for the not-sent rows (overwritten below)
    if tables.log_prior is not None:
        zs, labels = _with_prior(llr, cb, tables, estimate)
    else:
        flat = llr.reshape(b * N, B)
        labels = map_labels_uniform(flat).reshape(b, N)
        if estimate == "map":
            zs = tables.codebooks[cb, labels]
        else:
            zs = mmse_uniform(flat, cb.ravel(), tables.split).reshape(b, N, D)
    if gone.any():
        zs, labels = _substitute(zs, labels, gone, tables.subst)
    return zs, labels


def decode_hard(labels: np.ndarray, cbs: np.ndarray, codebooks: np.ndarray, subst: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse mapper (11) with erasures: ``labels [b, N]`` int, ``cbs [b, N]`` (``V`` = not
    sent), ``codebooks [V, K, D]``, ``subst [N, D]`` -> (``[b, N, D]`` float32 codewords,
    labels with -1 where not sent)."""
    V = codebooks.shape[0]
    gone = cbs == V
    if not gone.any():
        return dequantize(labels, codebooks, cbs), labels
    return _substitute(dequantize(labels, codebooks, np.where(gone, 0, cbs)), labels, gone, subst)


def _substitute(zs: np.ndarray, labels: np.ndarray, gone: np.ndarray, subst: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``zs [b, N, D]`` with ``subst[i]`` where ``gone [b, N]`` (not sent), labels -1 there."""
    rows, idx = np.nonzero(gone)
    zs[rows, idx] = subst[idx]
    return zs, np.where(gone, -1, labels)
