"""Gray-coded square QAM (m in {2, 4, 6, 8} bits per symbol), unit mean energy.

Conventions (shared by transmitter and receiver; change only together):

- The bit labelling is 3GPP TS 38.211 sec. 5.1 (QPSK, 16-, 64-, 256-QAM), so escmvq's
  samples are those of a 5G NR modulation mapper (and of Sionna's ``"qam"``
  constellation). A symbol of order ``m`` carries bits ``b[0..m-1]``; the even bits
  ``b[0], b[2], ...`` select the in-phase (I) amplitude, the odd bits ``b[1], b[3], ...``
  the quadrature (Q) amplitude. Per axis, with ``c_0 .. c_{k-1}`` that axis's
  ``k = m/2`` bits in order, the amplitude is

      A(c) = (1 - 2 c_0) * M_k(c_1 .. c_{k-1}),
      M_1 = 1,  M_j(c_1 .. c_{j-1}) = 2^(j-1) - (1 - 2 c_1) * M_{j-1}(c_2 .. c_{j-1}),

  e.g. 16-QAM ``d = [(1-2b0)(2-(1-2b2)) + j(1-2b1)(2-(1-2b3))] / sqrt(10)``. So ``b[0]`` /
  ``b[1]`` are the sign bits of I / Q (bit 0 -> positive amplitude): the most reliable
  positions, and frames put the lowest-mu bit of a symbol first. The next bit of an axis
  is 0 on the inner half of the magnitudes (``M_j < 2^(j-1)``), 1 on the outer half, and so
  on recursively: per axis a reflected Gray code, each position as reliable as the same
  position of any other Gray PAM label (``escmvq.core.ber`` depends on positions only).
- Odd orders (cross / rectangular QAM) are not supported: TS 38.211 defines no labelling
  for them, and no allocator, BER model or frame here produces one; every function
  rejects an odd ``m`` with ``ValueError``.
- PAM levels are ``+-1, +-3, ...`` scaled by ``1/sqrt(2*(M-1)/3)`` (``M = 2**m``) so that
  ``E|s|^2 = 1`` over equiprobable bits; neighbouring constellation points (one
  level apart on one axis) differ in exactly one bit.
- LLRs are ``log P(b=0|y) - log P(b=1|y)`` (positive = bit 0 more likely; Sionna's logits
  have the opposite sign) for ``y = s + n``, ``n ~ CN(0, noise_var)`` and equiprobable
  points: exact (a log-sum-exp over the points) or max-log (the largest term of each sum),
  :func:`demap_llr`'s ``mode``. Both are computed per axis: the I and Q noises are
  independent and every bit lives on one axis, so the other axis's factor cancels between
  numerator and denominator.

The tables are pure functions of ``m`` (:func:`constellation`, :func:`pam_labels`);
frame helpers (:func:`map_frame`, :func:`demap_frame`, :func:`demap_frame_llr`)
apply a plan's mixed orders and bit permutation.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "ORDERS",
    "pam_labels",
    "pam_levels",
    "constellation",
    "map_bits",
    "demap_hard",
    "demap_llr",
    "LLR_MODES",
    "frame_slices",
    "map_frame",
    "demap_frame",
    "demap_frame_llr",
]

ORDERS = (2, 4, 6, 8)
LLR_MODES = ("exact", "maxlog")


def _check_order(m) -> int:
    try:
        mi = int(m)
    except (TypeError, ValueError):
        raise ValueError(f"m: expected one of {ORDERS}, got {m!r}") from None
    if mi != m or mi not in ORDERS:
        raise ValueError(f"m: expected one of {ORDERS}, got {m!r}")
    return mi


def _axis_amplitude(c: np.ndarray) -> np.ndarray:
    """TS 38.211 per-axis amplitude (in units of the level spacing / 2) of labels
    ``c [n, k]`` (0/1, the axis's bits in order): ``(1-2c_0) M_k(c_1..)``, see the module
    docstring. Returns ``[n]`` int64 in ``{+-1, +-3, ..., +-(2^k - 1)}``."""
    k = c.shape[1]
    mag = np.ones(c.shape[0], np.int64)  # M_1
    for j in range(2, k + 1):  # M_j from M_{j-1} of the last j-1 bits
        mag = (1 << (j - 1)) - (1 - 2 * c[:, k - j + 1].astype(np.int64)) * mag
    return (1 - 2 * c[:, 0].astype(np.int64)) * mag


@lru_cache(maxsize=None)
def _pam(m: int) -> tuple[np.ndarray, np.ndarray, float]:
    k = m // 2
    n_lev = 1 << k
    # every k-bit label (MSB first), placed at its TS 38.211 amplitude; rows sorted by level
    all_labels = ((np.arange(n_lev)[:, None] >> (k - 1 - np.arange(k))[None, :]) & 1).astype(np.uint8)
    amp = _axis_amplitude(all_labels)
    labels = np.ascontiguousarray(all_labels[np.argsort(amp)])
    scale = 1.0 / np.sqrt(2.0 * (n_lev * n_lev - 1) / 3.0)
    levels = (2.0 * np.arange(n_lev) - (n_lev - 1)) * scale
    labels.setflags(write=False)
    levels.setflags(write=False)
    return labels, levels, scale


def pam_labels(m: int) -> np.ndarray:
    """Gray labels of the ``2**(m/2)`` PAM levels of one axis.

    Returns ``[2**(m/2), m/2]`` uint8; row ``p`` labels level ``pam_levels(m)[p]``
    (levels ascending), MSB first. Read-only.
    """
    return _pam(_check_order(m))[0]


def pam_levels(m: int) -> np.ndarray:
    """Ascending PAM amplitudes of one axis, ``[2**(m/2)]`` float64, scaled for unit
    mean symbol energy of the square QAM built from two such axes. Read-only."""
    return _pam(_check_order(m))[1]


@lru_cache(maxsize=None)
def _constellation(m: int) -> np.ndarray:
    labels, levels, _ = _pam(m)
    k = m // 2
    n_lev = 1 << k
    # integer label -> level index per axis
    lab_int = (labels.astype(np.int64) << (k - 1 - np.arange(k))).sum(axis=1)
    idx_of_label = np.empty(n_lev, np.int64)
    idx_of_label[lab_int] = np.arange(n_lev)
    pts = np.empty(1 << m, np.complex128)
    for s in range(1 << m):
        bits = [(s >> (m - 1 - j)) & 1 for j in range(m)]
        li = sum(b << (k - 1 - t) for t, b in enumerate(bits[0::2]))
        lq = sum(b << (k - 1 - t) for t, b in enumerate(bits[1::2]))
        pts[s] = levels[idx_of_label[li]] + 1j * levels[idx_of_label[lq]]
    pts = pts.astype(np.complex64)
    pts.setflags(write=False)
    return pts


def constellation(m: int) -> np.ndarray:
    """All ``2**m`` points: ``[2**m]`` complex64, entry ``s`` is the symbol of the
    ``m``-bit label ``s`` (MSB = ``b[0]``). Read-only; pure function of ``m``."""
    return _constellation(_check_order(m))


def _check_bits(bits: np.ndarray, name: str = "bits") -> np.ndarray:
    bits = np.asarray(bits)
    if bits.dtype.kind not in "biu":
        raise ValueError(f"{name}: expected an integer/bool array of 0/1, got dtype {bits.dtype}")
    if bits.size and (bits.min() < 0 or bits.max() > 1):
        raise ValueError(f"{name}: expected values in {{0, 1}}")
    return bits


def map_bits(bits: np.ndarray, m: int) -> np.ndarray:
    """Bits to symbols.

    bits : [..., m] uint8 (0/1), ``b[0]`` first.
    m : int in {2, 4, 6, 8}.
    Returns ``[...]`` complex64.
    """
    m = _check_order(m)
    bits = _check_bits(bits)
    if bits.ndim < 1 or bits.shape[-1] != m:
        raise ValueError(f"bits: expected shape [..., {m}], got {bits.shape}")
    weights = (1 << (m - 1 - np.arange(m))).astype(np.int64)
    idx = (bits.astype(np.int64) * weights).sum(axis=-1)
    return _constellation(m)[idx]


def _axis_index(x: np.ndarray, m: int) -> np.ndarray:
    _, _, scale = _pam(m)
    n_lev = 1 << (m // 2)
    pos = np.rint((x / scale + (n_lev - 1)) / 2.0)
    return np.clip(pos, 0, n_lev - 1).astype(np.int64)


def demap_hard(y: np.ndarray, m: int) -> np.ndarray:
    """Nearest-point (per-axis slicing) hard decisions.

    y : [...] complex (equalised: ``y = s + noise``).
    m : int in {2, 4, 6, 8}.
    Returns ``[..., m]`` uint8.
    """
    m = _check_order(m)
    y = np.asarray(y)
    labels, _, _ = _pam(m)
    li = labels[_axis_index(y.real, m)]
    lq = labels[_axis_index(y.imag, m)]
    out = np.empty(y.shape + (m,), np.uint8)
    out[..., 0::2] = li
    out[..., 1::2] = lq
    return out


def _axis_llr(x: np.ndarray, m: int) -> np.ndarray:
    """Max-log LLR numerators of one axis: ``[..., m/2]`` = min_{b=1} d^2 - min_{b=0} d^2."""
    labels, levels, _ = _pam(m)
    d2 = (x[..., None] - levels) ** 2  # [..., n_lev]
    k = m // 2
    out = np.empty(x.shape + (k,), np.float64)
    for t in range(k):
        one = labels[:, t] == 1
        out[..., t] = d2[..., one].min(axis=-1) - d2[..., ~one].min(axis=-1)
    return out


@lru_cache(maxsize=None)
def _bit_masks(m: int) -> np.ndarray:
    """``[2**(m/2), m]`` float64: column ``t`` marks the PAM levels whose axis bit ``t`` is 0,
    column ``m/2 + t`` those whose bit ``t`` is 1. Read-only."""
    labels = _pam(m)[0].astype(np.float64)
    out = np.ascontiguousarray(np.concatenate([1.0 - labels, labels], axis=1))
    out.setflags(write=False)
    return out


@lru_cache(maxsize=None)
def _bit_sets(m: int) -> np.ndarray:
    """``[m, 2**(m/2) / 2]`` int64: row ``t`` the PAM levels whose axis bit ``t`` is 0, row
    ``m/2 + t`` those whose bit ``t`` is 1 (the columns of :func:`_bit_masks` as indices)."""
    masks = _bit_masks(m)
    return np.stack([np.flatnonzero(masks[:, c]) for c in range(m)])


def _log_subset_sums(a: np.ndarray, m: int) -> np.ndarray:
    """``log sum_{l in S_c} exp(a_l)`` for the :func:`_bit_sets` ``S_c``, each subset relative
    to its own largest term: exact whatever the spread. ``a [n, n_lev]`` -> ``[n, m]``."""
    g = a[:, _bit_sets(m)]  # [n, m, n_lev / 2]
    mx = g.max(axis=-1)
    return mx + np.log(np.exp(g - mx[..., None]).sum(axis=-1))


def _axis_llr_exact(x: np.ndarray, m: int, nv: np.ndarray) -> np.ndarray:
    """Exact LLRs of one axis: ``x [...]`` real, ``nv [...]`` complex noise variance (> 0;
    ``inf`` gives 0) -> ``[..., m/2]`` float64 = LSE_{b=0}(-d^2/nv) - LSE_{b=1}(-d^2/nv).

    Fast path: every term relative to the largest one (the nearest level's), clamped at
    ``exp(-700)`` (no overflow, no subnormals), summed per subset by one small matrix
    product. A subset whose sum falls below ``exp(-600)`` of the largest term (an LLR beyond
    ~600, where the clamp could matter) is recomputed relative to its own largest term.
    """
    _, levels, _ = _pam(m)
    a = x[..., None] - levels  # [..., n_lev]
    a *= a
    near = x - levels[_axis_index(x, m)]  # the largest term is the nearest level's
    np.subtract((near * near)[..., None], a, out=a)
    a /= nv[..., None]  # -(d^2 - d_min^2) / nv <= 0
    e = np.maximum(a, -700.0)
    np.exp(e, out=e)
    s = np.log(e @ _bit_masks(m))  # [..., m]: log-sums over the b_t = 0 levels, then the b_t = 1 levels
    if (s < -600.0).any():
        far = (s < -600.0).any(axis=-1)
        s[far] = _log_subset_sums(a[far], m)
    k = m // 2
    return s[..., :k] - s[..., k:]


def demap_llr(y: np.ndarray, m: int, noise_var, mode: str = "maxlog") -> np.ndarray:
    """Per-bit LLRs (positive = bit 0 more likely).

    y : [...] complex (equalised ``y = s + n``, ``n ~ CN(0, noise_var)``).
    m : int in {2, 4, 6, 8}.
    noise_var : float > 0 or array broadcastable to ``y.shape`` (e.g. ``1/(gamma*p_t)``);
        ``inf`` (a symbol sent with zero power) gives LLR 0.
    mode : "maxlog" (default: the nearest point of each bit value) or "exact" (log-sum-exp
        over all points of each bit value; equal to max-log for m = 2).
    Returns ``[..., m]`` float32.
    """
    m = _check_order(m)
    if mode not in LLR_MODES:
        raise ValueError(f"mode: expected one of {', '.join(LLR_MODES)}, got {mode!r}")
    y = np.asarray(y)
    nv = np.asarray(noise_var, dtype=np.float64)
    if not (nv > 0).all():  # NaN compares False too
        raise ValueError("noise_var: expected values > 0 (inf allowed), got NaN or <= 0")
    if nv.shape != y.shape:
        try:
            nv = np.broadcast_to(nv, y.shape)
        except ValueError:
            raise ValueError(f"noise_var: shape {nv.shape} does not broadcast to y's shape {y.shape}") from None
    yr = y.real.astype(np.float64)
    yi = y.imag.astype(np.float64)
    out = np.empty(y.shape + (m,), np.float32)
    if mode == "maxlog" or m == 2:  # one level per bit value: exact == max-log
        out[..., 0::2] = _axis_llr(yr, m) / nv[..., None]
        out[..., 1::2] = _axis_llr(yi, m) / nv[..., None]
        return out
    # both axes in one pass: [..., 2 (I, Q), m/2] -> bits b_{2t + axis}; nv = inf: every term -0, LLR 0
    llr = _axis_llr_exact(np.stack([yr, yi], axis=-1), m, np.broadcast_to(nv[..., None], y.shape + (2,)))
    out[...] = np.swapaxes(llr, -1, -2).reshape(out.shape)
    return out


# ---------------------------------------------------------------------------------
# Frames with mixed orders
# ---------------------------------------------------------------------------------

def _check_frame(orders, bit_order, L: int | None = None):
    orders = np.asarray(orders)
    bit_order = np.asarray(bit_order)
    if orders.ndim != 1 or orders.dtype.kind not in "iu":
        raise ValueError(f"orders: expected a 1-D integer array, got shape {orders.shape} dtype {orders.dtype}")
    bad = ~np.isin(orders, ORDERS)
    if bad.any():
        raise ValueError(f"orders: values must be in {ORDERS}, got {np.unique(orders[bad]).tolist()}")
    if bit_order.ndim != 1 or bit_order.dtype.kind not in "iu":
        raise ValueError(f"bit_order: expected a 1-D integer array, got shape {bit_order.shape}")
    n = int(orders.sum())
    if bit_order.size != n:
        raise ValueError(f"bit_order: has {bit_order.size} entries but sum(orders) = {n}")
    if L is not None and n != L:
        raise ValueError(f"bits: frame has {L} bits but sum(orders) = {n}")
    if n and not np.array_equal(np.sort(bit_order), np.arange(n)):
        raise ValueError("bit_order: expected a permutation of 0..L-1")
    return orders.astype(np.int64), bit_order.astype(np.int64)


def frame_slices(orders: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Group a plan's symbols by order.

    orders : [T] int. Returns a list of ``(m, t_idx [n_m], pos [n_m, m])``: the symbols of
    order ``m`` and, for each, the positions (in ``bit_order`` order) of its bits.
    """
    orders = np.asarray(orders, np.int64)
    start = np.concatenate([[0], np.cumsum(orders)[:-1]]) if orders.size else np.zeros(0, np.int64)
    out = []
    for m in ORDERS:
        t_idx = np.flatnonzero(orders == m)
        if t_idx.size:
            out.append((m, t_idx, start[t_idx, None] + np.arange(m)[None, :]))
    return out


def map_frame(bits: np.ndarray, orders: np.ndarray, bit_order: np.ndarray) -> np.ndarray:
    """Map a frame of bits with a plan's mixed orders.

    bits : [batch, L] uint8, flat bit ``i*B + j`` of the product-VQ label.
    orders : [T] int in {2,4,6,8}, ``sum(orders) == L``.
    bit_order : [L] int, permutation; symbol ``t`` carries the next ``orders[t]`` entries
        of ``bits[:, bit_order]`` (first entry -> ``b[0]``).
    Returns ``[batch, T]`` complex64.
    """
    bits = _check_bits(bits)
    if bits.ndim != 2:
        raise ValueError(f"bits: expected [batch, L], got shape {bits.shape}")
    orders, bit_order = _check_frame(orders, bit_order, bits.shape[1])
    perm = bits[:, bit_order]
    out = np.empty((bits.shape[0], orders.size), np.complex64)
    for m, t_idx, pos in frame_slices(orders):
        out[:, t_idx] = map_bits(perm[:, pos], m)
    return out


def _check_received(y, orders, bit_order):
    """Validate a received frame ``y : [batch, T]`` against a plan's orders and bit order."""
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y: expected [batch, T], got shape {y.shape}")
    orders, bit_order = _check_frame(orders, bit_order)
    if y.shape[1] != orders.size:
        raise ValueError(f"y: has {y.shape[1]} symbols but orders has {orders.size}")
    return y, orders, bit_order


def demap_frame(y: np.ndarray, orders: np.ndarray, bit_order: np.ndarray) -> np.ndarray:
    """Hard-demap a frame; inverse of :func:`map_frame` on noiseless input.

    y : [batch, T] complex (equalised).
    orders : [T] int; bit_order : [L] int (as in :func:`map_frame`).
    Returns ``[batch, L]`` uint8 in flat label-bit order.
    """
    y, orders, bit_order = _check_received(y, orders, bit_order)
    perm = np.empty((y.shape[0], bit_order.size), np.uint8)
    for m, t_idx, pos in frame_slices(orders):
        perm[:, pos] = demap_hard(y[:, t_idx], m)
    out = np.empty_like(perm)
    out[:, bit_order] = perm
    return out


def demap_frame_llr(y: np.ndarray, orders: np.ndarray, bit_order: np.ndarray, noise_var,
                    mode: str = "maxlog") -> np.ndarray:
    """LLRs of a frame (max-log by default; ``mode="exact"``: see :func:`demap_llr`).

    y : [batch, T] complex (equalised); noise_var : float or [batch, T] / [T] effective noise
    variance per symbol after equalisation (``1/(gamma*p_t)``).
    Returns ``[batch, L]`` float32 in flat label-bit order.
    """
    y, orders, bit_order = _check_received(y, orders, bit_order)
    nv = np.broadcast_to(np.asarray(noise_var, np.float64), y.shape)
    perm = np.empty((y.shape[0], bit_order.size), np.float32)
    for m, t_idx, pos in frame_slices(orders):
        perm[:, pos] = demap_llr(y[:, t_idx], m, nv[:, t_idx], mode)
    out = np.empty_like(perm)
    out[:, bit_order] = perm
    return out
