"""Block-fading channels (Sec. II-A, eq. (4)): generate the gain, then apply it.

``y_t = h * sqrt(p_t) * s_t + n_t``, ``n_t ~ CN(0, noise_var)``, one ``h`` per frame
(block fading), perfect CSI at both ends. AWGN is the case ``h = 1``.
The instantaneous SNR is ``gamma = |h|^2 / noise_var`` and the normalised SNR of
eq. (53) is ``SNR = P_tot * E[gamma] / (N*B)``.

All randomness comes from a passed ``np.random.Generator``.

Besides the array primitives, :func:`draw_h` and :func:`apply_channel` are the link-level
helpers the runtime, the evaluation sweeps and the benchmarks share (one coefficient per
tile, samples that already carry ``sqrt(p_t)``), and :func:`channel_gamma` is the one
definition of ``gamma`` from which both ends of a link derive their plan.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rayleigh", "awgn_gain", "apply", "equalize", "effective_noise_var", "snr_db_to_ptot", "snr_db_to_es_eb",
           "channel_gamma",
           "draw_h", "apply_channel"]


def _check_batch(batch) -> int:
    if int(batch) != batch or batch < 0:
        raise ValueError(f"batch: expected a non-negative int, got {batch!r}")
    return int(batch)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def rayleigh(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Rayleigh block-fading gains, one per frame.

    rng : np.random.Generator; batch : int.
    Returns ``h : [batch]`` complex64, ``h ~ CN(0, 1)`` (``E|h|^2 = 1``).
    """
    rng = _check_rng(rng)
    batch = _check_batch(batch)
    z = rng.standard_normal((batch, 2)) * np.sqrt(0.5)
    return (z[:, 0] + 1j * z[:, 1]).astype(np.complex64)


def awgn_gain(batch: int) -> np.ndarray:
    """AWGN channel gains: ``[batch]`` complex64 ones."""
    return np.ones(_check_batch(batch), np.complex64)


def _powers(powers, shape, name="powers") -> np.ndarray:
    p = np.asarray(powers, np.float64)
    if np.any(np.isnan(p)) or np.any(p < 0):
        raise ValueError(f"{name}: expected values >= 0 without NaN")
    if p.ndim not in (1, 2):
        raise ValueError(f"{name}: expected [T] or [batch, T], got shape {p.shape}")
    try:
        return np.broadcast_to(p, shape)
    except ValueError:
        raise ValueError(f"{name}: shape {p.shape} does not match s/y shape {shape}") from None


def _gains(h, batch) -> np.ndarray:
    h = np.asarray(h)
    if h.ndim == 0:
        h = np.full(batch, h)
    if h.shape != (batch,):
        raise ValueError(f"h: expected shape [{batch}] (one gain per frame), got {h.shape}")
    return h.astype(np.complex128)


def apply(s: np.ndarray, h: np.ndarray, powers: np.ndarray, rng: np.random.Generator, noise_var: float = 1.0) -> np.ndarray:
    """Send symbols through the channel, eq. (4).

    s : [batch, T] complex unit-energy symbols.
    h : [batch] complex gains (from :func:`rayleigh` or :func:`awgn_gain`).
    powers : [T] or [batch, T] float >= 0, the plan's ``p_t``.
    rng : np.random.Generator for the noise; noise_var : float > 0 (``sigma^2``).
    Returns ``y : [batch, T]`` complex64 ``= h*sqrt(p)*s + n``, ``n ~ CN(0, noise_var)``.
    """
    s = np.asarray(s)
    if s.ndim != 2:
        raise ValueError(f"s: expected [batch, T], got shape {s.shape}")
    rng = _check_rng(rng)
    if not np.isfinite(noise_var) or noise_var <= 0:
        raise ValueError(f"noise_var: expected a finite value > 0, got {noise_var!r}")
    p = _powers(powers, s.shape)
    hh = _gains(h, s.shape[0])
    n = rng.standard_normal(s.shape + (2,)) * np.sqrt(noise_var / 2.0)
    y = hh[:, None] * np.sqrt(p) * s + (n[..., 0] + 1j * n[..., 1])
    return y.astype(np.complex64)


def equalize(y: np.ndarray, h: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """Zero-forcing with perfect CSI: ``y / (h * sqrt(p))``.

    y : [batch, T] complex; h : [batch] complex; powers : [T] or [batch, T] float >= 0.
    Returns ``[batch, T]`` complex64. Symbols sent with zero power (or ``h == 0``) carry
    no information; they are returned as 0 (the demapper then guesses).
    """
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y: expected [batch, T], got shape {y.shape}")
    p = _powers(powers, y.shape)
    g = _gains(h, y.shape[0])[:, None] * np.sqrt(p)
    out = np.zeros(y.shape, np.complex128)
    ok = np.abs(g) > 0
    np.divide(y, g, out=out, where=ok)
    return out.astype(np.complex64)


def effective_noise_var(h: np.ndarray, powers: np.ndarray, noise_var: float = 1.0) -> np.ndarray:
    """Noise variance after :func:`equalize`: ``noise_var / (|h|^2 p_t)``.

    h : [batch] complex; powers : [T] or [batch, T]. Returns ``[batch, T]`` float64
    (``inf`` where nothing was sent) -- the ``noise_var`` for max-log LLRs.
    """
    h = np.asarray(h)
    p = np.asarray(powers, np.float64)
    shape = (h.shape[0], p.shape[-1])
    p = _powers(p, shape)
    g = (np.abs(_gains(h, shape[0])) ** 2)[:, None] * p
    with np.errstate(divide="ignore"):
        return np.where(g > 0, noise_var / np.where(g > 0, g, 1.0), np.inf)


def snr_db_to_ptot(snr_db, n_bits: int, noise_var: float = 1.0):
    """Eq. (53) solved for the budget: ``P_tot = N*B * noise_var * 10^(SNR/10)``
    (``E[gamma] = E|h|^2 / noise_var = 1 / noise_var``).

    snr_db : float or [...] float; n_bits : int ``N*B``. Returns float or [...] float64.
    """
    if int(n_bits) != n_bits or n_bits <= 0:
        raise ValueError(f"n_bits: expected a positive int, got {n_bits!r}")
    if not np.isfinite(noise_var) or noise_var <= 0:
        raise ValueError(f"noise_var: expected a finite value > 0, got {noise_var!r}")
    snr = np.asarray(snr_db, np.float64)
    if np.any(np.isnan(snr)):
        raise ValueError("snr_db: contains NaN")
    out = n_bits * noise_var * np.power(10.0, snr / 10.0)
    return float(out) if out.ndim == 0 else out


def snr_db_to_es_eb(snr_db, n_bits: int, n_symbols: int):
    """Eq. (53)'s SNR as the usual ratios: ``(Es/N0, Eb/N0)`` in dB of a tile of ``n_symbols``
    channel uses carrying ``n_bits`` label bits at the average channel gain. (53) divides the
    received energy ``P_tot E[gamma]`` by the ``N*B`` label bits, so Eb/N0 (per label bit) is
    the SNR itself, and Es/N0 (per channel use) is ``SNR + 10 log10(N*B / T)`` (+6.02 dB at
    rate 4). snr_db : float or [...] float. Returns two floats or two [...] float64 arrays."""
    if int(n_bits) != n_bits or n_bits <= 0 or int(n_symbols) != n_symbols or n_symbols <= 0:
        raise ValueError(f"n_bits, n_symbols: expected positive ints, got {n_bits!r}, {n_symbols!r}")
    snr = np.asarray(snr_db, np.float64)
    es = snr + 10.0 * np.log10(n_bits / n_symbols)
    return (float(es), float(snr)) if snr.ndim == 0 else (es, snr.copy())


def channel_gamma(h, noise_var: float = 1.0):
    """Instantaneous SNR ``gamma = |h|^2 / noise_var``: [batch] float64 (float for a scalar h).

    Transmitter and receiver each compute ``gamma`` and then their plan from
    ``(P_tot, gamma)`` alone (footnote 2 of the paper), so the two results must agree to the
    last bit. The frame carries ``h`` as complex64, so ``h`` is first rounded to complex64
    (the value both ends hold), then ``re*re + im*im`` is formed in float64 -- exact for
    complex64 parts -- and divided once by ``noise_var``. ``np.abs(h)**2`` is not used: it
    goes through ``hypot`` and a square root and can differ in the last bit.
    """
    if not np.isfinite(noise_var) or noise_var <= 0:
        raise ValueError(f"noise_var: expected a finite value > 0, got {noise_var!r}")
    h = np.asarray(h, np.complex64).astype(np.complex128)
    g = (h.real * h.real + h.imag * h.imag) / float(noise_var)
    return float(g) if g.ndim == 0 else g


def draw_h(rng: np.random.Generator, n: int, channel: str, per_image: bool = False) -> np.ndarray:
    """Block-fading coefficients of ``n`` tiles: ``[n]`` complex64.

    channel : "awgn" (all ones, no draw) or "rayleigh" (CN(0, 1) per tile, or one draw
    repeated for all tiles when ``per_image``). The draws are those of :func:`rayleigh`,
    so a seeded ``rng`` gives the same ``h`` everywhere it is used.
    """
    if channel == "awgn":
        return np.ones(n, np.complex64)
    if channel != "rayleigh":
        raise ValueError(f"channel: expected awgn or rayleigh, got {channel!r}")
    if per_image:
        return np.repeat(np.asarray(rayleigh(rng, 1), np.complex64), n)
    return np.asarray(rayleigh(rng, n), np.complex64)


def apply_channel(x: np.ndarray, h: np.ndarray, rng: np.random.Generator, noise_var: float) -> np.ndarray:
    """``y = h x + n`` for samples ``x [b, T]`` that already carry ``sqrt(p_t)``.

    :func:`apply` with unit powers; returns ``[b, T]`` complex64. The noise is drawn row by
    row in order, so cutting a frame into batches of rows gives the same ``y``.
    """
    return np.asarray(apply(x, h, np.ones(x.shape[1], np.float64), rng, noise_var=noise_var), np.complex64)
