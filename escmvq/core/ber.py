"""BER of uncoded Gray square QAM and its inverse: a small, swappable model.

Notation: ``q = p * gamma`` is the symbol SNR (``p`` the symbol power, unit-energy
symbols, ``gamma = |h|^2 / noise_var``). Every model works in ``q`` so that an
allocator's powers are "power per unit gamma" and scale with ``1/gamma``.

Models (all satisfy :class:`BerModel`):

- :class:`Eq33` (default): the paper's approximation (33) with ``erfc`` (the paper
  writes ``erf``, but only the complementary function gives a BER that falls with power), ``eps(q; m) = a erfc(x) + b erfc(3x)``,
  ``x = sqrt(3 q / (2 (2^m - 1)))``, ``a = (sqrt(M)-1)/(sqrt(M) log2 sqrt(M))``,
  ``b = (sqrt(M)-2)/(sqrt(M) log2 sqrt(M))``.
- :class:`GrayQamExact`: exact BER of Gray square QAM in AWGN, per bit position
  (Cho & Yoon 2002) and averaged over the ``m`` positions.

Both are sums ``f(x) = sum_k c_k erfc(d_k x)`` that decrease in ``x``; the inverse
(:meth:`BerModel.power`, eq. (38)) is a vectorised, safeguarded Newton iteration on
``log f(x) - log mu`` (``erfcx`` keeps it finite down to mu ~ 1e-300), started at an
``erfcinv`` upper bracket; each element stops on its own criterion, so its result does
not depend on the other elements of the batch (needed for reproducible plans).

"No power needed": (33) at ``q = 0`` is ``a + b`` -- 0.5 for QPSK but 0.625 for
16-QAM, 0.542 for 64-QAM and 0.453 for 256-QAM. We define the inverse as the
*least* power meeting the target, ``power(mu, m) = min{q >= 0 : eps(q; m) <= mu}``.
So every ``mu >= eps(0; m)`` maps to 0 (for 256-QAM that includes mu in
(0.453, 0.5]: sending nothing is a coin flip, BER 0.5, which meets any target <= 0.5
in reality even though (33) cannot express it). ``mu <= 0`` is unreachable at any
power and raises ``ValueError``; every ``mu`` in ``(0, 0.5]`` is reachable (up to
``mu ~ 1e-300``, below which float64 underflows; such targets raise ValueError).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import special

__all__ = [
    "BerModel",
    "Eq33",
    "GrayQamExact",
    "EQ33",
    "get_model",
    "ber_qam",
    "power_for_ber",
    "ber_at_zero",
    "cho_yoon_coeffs",
    "power_positions",
    "position_power",
]

_ORDERS = (2, 4, 6, 8)
_SQRT_PI = np.sqrt(np.pi)
_MU_FLOOR = 1e-300


@runtime_checkable
class BerModel(Protocol):
    """What an allocator needs from a BER model (swap in your own)."""

    name: str

    def ber(self, q: np.ndarray, m) -> np.ndarray:
        """q : [...] float64 symbol SNR ``p*gamma >= 0``; m : int or [...] int. -> [...] float64."""

    def power(self, mu: np.ndarray, m) -> np.ndarray:
        """mu : [...] float64 in (0, 0.5]; m : int or [...] int -> [...] float64 least ``q``
        with ``ber(q, m) <= mu`` (0 where no power is needed)."""


def _orders_array(m, shape) -> np.ndarray:
    m_arr = np.asarray(m)
    if m_arr.dtype.kind not in "iuf" or np.any(~np.isin(m_arr, _ORDERS)):
        raise ValueError(f"m: expected values in {_ORDERS}, got {np.unique(m_arr).tolist()[:8]}")
    try:
        return np.broadcast_to(m_arr.astype(np.int64), shape)
    except ValueError:
        raise ValueError(f"m: shape {m_arr.shape} does not broadcast to {shape}") from None


class _ErfcSum:
    """Model ``f(x; m) = sum_k c[m][k] erfc(d[m][k] x)``, ``x = sqrt(3 q / (2 (2^m - 1)))``."""

    name = "erfc-sum"
    _f0_exact: float | None = None

    def _coeffs(self, m: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- tables over the orders, padded to a common number of terms -------------
    @property
    def _table(self):
        tab = getattr(self, "_tab_cache", None)
        if tab is None:
            n = max(len(self._coeffs(m)[0]) for m in _ORDERS)
            c = np.zeros((9, n))
            d = np.ones((9, n))
            for m in _ORDERS:
                cm, dm = self._coeffs(m)
                c[m, : len(cm)] = cm
                d[m, : len(dm)] = dm
            f0 = c.sum(axis=1)
            if self._f0_exact is not None:  # remove rounding noise of the coefficient sum
                f0 = np.where(np.abs(f0 - self._f0_exact) < 1e-12, self._f0_exact, f0)
            cpos = np.where(c > 0, c, 0).sum(axis=1)
            tab = (c, d, f0, cpos)
            self._tab_cache = tab
        return tab

    @staticmethod
    def _x_of_q(q, m):
        return np.sqrt(1.5 * q / (np.exp2(m) - 1.0))

    @staticmethod
    def _q_of_x(x, m):
        return x * x * (np.exp2(m) - 1.0) / 1.5

    def ber(self, q, m) -> np.ndarray:
        """BER at symbol SNR ``q``.

        q : [...] float64 >= 0 (``p * gamma``); m : int or [...] int in {2,4,6,8}.
        Returns ``[...]`` float64.
        """
        q = np.asarray(q, np.float64)
        if np.any(np.isnan(q)) or np.any(q < 0):
            raise ValueError("q: expected values >= 0 (p*gamma), got NaN or negative")
        m = _orders_array(m, q.shape)
        c, d, _, _ = self._table
        x = self._x_of_q(q, m)[..., None]
        return (c[m] * special.erfc(d[m] * x)).sum(axis=-1)

    def at_zero(self, m) -> np.ndarray:
        """BER at zero power, ``f(0; m) = sum_k c_k``."""
        return self._table[2][_orders_array(m, np.shape(m))]

    def _logf_and_slope(self, x, cm, dm):
        # f = e^{-x^2} * g,  g = sum c erfcx(d x) e^{-(d^2-1) x^2}
        xx = x[..., None]
        e = np.exp(-(dm * dm - 1.0) * xx * xx)
        g = (cm * special.erfcx(dm * xx) * e).sum(axis=-1)
        fp = -(2.0 / _SQRT_PI) * (cm * dm * e).sum(axis=-1)  # f' / e^{-x^2}
        return -x * x + np.log(g), fp / g

    def power(self, mu, m) -> np.ndarray:
        """Inverse (38): least symbol SNR ``q = p*gamma`` with ``ber(q, m) <= mu``.

        mu : [...] float64 in (0, 0.5]; m : int or [...] int in {2,4,6,8}.
        Returns ``[...]`` float64 (0 where ``mu >= ber(0, m)``: no power needed).
        Relative accuracy of ``ber(power(mu))`` vs ``mu``: ~1e-13.
        """
        mu = np.asarray(mu, np.float64)
        if np.any(np.isnan(mu)):
            raise ValueError("mu: contains NaN")
        if np.any(mu <= 0) or np.any(mu > 0.5):
            raise ValueError("mu: expected values in (0, 0.5]; mu <= 0 is unreachable at any power")
        if np.any(mu < _MU_FLOOR):
            raise ValueError(f"mu: values below {_MU_FLOOR:g} are beyond float64 reach")
        m = _orders_array(m, mu.shape)
        c, d, f0, cpos = self._table
        out = np.zeros(mu.shape, np.float64)
        need = mu < f0[m]
        if not np.any(need):
            return out
        mu_n = mu[need]
        m_n = m[need]
        cm, dm = c[m_n], d[m_n]
        logmu = np.log(mu_n)
        # upper bracket: f(x) <= cpos * erfc(x)  =>  root <= erfcinv(mu / cpos)
        hi = special.erfcinv(np.minimum(mu_n / cpos[m_n], 1.0))
        lo = np.zeros_like(hi)
        # start at the root of the dominant term c0 erfc(x) (exact for QPSK, within a few
        # 1e-3 elsewhere), clipped into the bracket
        c0 = cm[:, 0]
        x = special.erfcinv(np.minimum(mu_n / c0, 1.999))
        x = np.where((x > lo) & (x < hi), x, 0.5 * (lo + hi))
        idx = np.arange(x.size)
        for _ in range(100):
            xa = x[idx]
            lf, slope = self._logf_and_slope(xa, cm[idx], dm[idx])
            h = lf - logmu[idx]
            conv = np.abs(h) < 1e-14
            lo_i = np.where(h > 0, xa, lo[idx])
            hi_i = np.where(h <= 0, xa, hi[idx])
            xn = xa - h / slope
            bad = ~np.isfinite(xn) | (xn <= lo_i) | (xn >= hi_i)
            xn = np.where(bad, 0.5 * (lo_i + hi_i), xn)
            stall = (np.abs(xn - xa) <= 2e-16 * np.abs(xa)) | (hi_i - lo_i <= 4e-16 * hi_i)
            lo[idx], hi[idx] = lo_i, hi_i
            x[idx] = np.where(conv, xa, xn)
            keep = ~(conv | stall)
            idx = idx[keep]
            if idx.size == 0:
                break
        out[need] = self._q_of_x(x, m_n)
        return out


class Eq33(_ErfcSum):
    """The paper's BER approximation (33) (with erfc: the paper's ``erf`` is a typo). Default model."""

    name = "eq33"

    def _coeffs(self, m):
        s = 2.0 ** (m / 2)
        den = s * np.log2(s)
        return np.array([(s - 1) / den, (s - 2) / den]), np.array([1.0, 3.0])


@lru_cache(maxsize=None)
def cho_yoon_coeffs(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-position BER of Gray ``2^m``-QAM (Cho & Yoon 2002) as erfc sums.

    Returns ``(w, d)``: ``w : [m/2, n]`` float64 and ``d : [n]`` with
    ``P_k(q) = sum_i w[k-1, i] * erfc(d[i] * x)``, ``x = sqrt(3 q / (2 (2^m - 1)))``,
    for per-axis bit position ``k = 1..m/2`` (1 = the sign bit). In this package's
    QAM layout (``escmvq.core.qam``) symbol bit ``b[j]`` sits at axis position ``j//2 + 1``.
    """
    sm = 1 << (m // 2)
    kmax = m // 2
    n = sm - 1
    w = np.zeros((kmax, n))
    for k in range(1, kmax + 1):
        for i in range(int((1 - 2.0**-k) * sm)):
            f = (i * 2 ** (k - 1)) // sm
            w[k - 1, i] = (-1) ** f * (2 ** (k - 1) - np.floor(i * 2 ** (k - 1) / sm + 0.5)) / sm
    d = 2.0 * np.arange(n) + 1.0
    w.setflags(write=False)
    d.setflags(write=False)
    return w, d


class GrayQamExact(_ErfcSum):
    """Exact Gray square-QAM BER in AWGN (Cho & Yoon 2002).

    :meth:`ber` / :meth:`power` use the average over the ``m`` bit positions (so
    ``ber(0, m) = 0.5`` for every order); :meth:`ber_positions` gives each position.
    """

    name = "gray-exact"
    _f0_exact = 0.5

    def _coeffs(self, m):
        w, d = cho_yoon_coeffs(m)
        return w.mean(axis=0), d

    def ber_positions(self, q, m: int) -> np.ndarray:
        """q : [...] float64 >= 0; m : int. Returns ``[..., m]`` float64, entry ``j`` the BER
        of symbol bit ``b[j]`` in ``escmvq.core.qam``'s layout."""
        if m not in _ORDERS:
            raise ValueError(f"m: expected one of {_ORDERS}, got {m!r}")
        q = np.asarray(q, np.float64)
        if np.any(np.isnan(q)) or np.any(q < 0):
            raise ValueError("q: expected values >= 0 (p*gamma), got NaN or negative")
        w, d = cho_yoon_coeffs(m)
        x = self._x_of_q(q, m)[..., None]
        per_axis = special.erfc(d * x) @ w.T  # [..., m/2]
        return np.repeat(per_axis, 2, axis=-1)


class _GrayPosition(_ErfcSum):
    """Exact BER of one per-axis bit position ``k`` (1 = sign bit) of Gray square QAM."""

    _f0_exact = 0.5

    def __init__(self, k: int):
        self.k = int(k)
        self.name = f"gray-position-{k}"

    def _coeffs(self, m):
        w, d = cho_yoon_coeffs(m)
        return w[min(self.k, m // 2) - 1], d


@lru_cache(maxsize=None)
def _position_models() -> tuple:
    return tuple(_GrayPosition(k) for k in range(1, 5))


def power_positions(mu: np.ndarray, m: int) -> np.ndarray:
    """Least symbol SNR ``q`` at which EVERY bit meets its own target on its own position.

    mu : [n, m] float64 in (0, 0.5], column ``j`` the target of symbol bit ``b[j]`` (per-axis
    position ``j//2 + 1`` in ``escmvq.core.qam``'s layout); m : int in {2,4,6,8}.
    Returns ``[n]`` float64 ``max_j q_j`` with ``q_j`` the exact per-position inverse
    (Cho & Yoon 2002): no averaging over positions as in (33)/(46).
    """
    mu = np.asarray(mu, np.float64)
    if m not in _ORDERS or mu.ndim != 2 or mu.shape[1] != m:
        raise ValueError(f"mu: expected [n, {m}] for m in {_ORDERS}, got shape {mu.shape}")
    q = np.stack([position_power(mu[:, j], m, j) for j in range(m)], axis=1)
    return q.max(axis=1) if q.size else np.zeros(mu.shape[0])


def position_power(mu: np.ndarray, m: int, j: int) -> np.ndarray:
    """Least symbol SNR ``q`` at which symbol bit ``b[j]`` of ``2^m``-QAM has exact Gray BER
    <= ``mu`` (per-axis position ``j//2 + 1``). mu : [...] float64 in (0, 0.5]. Returns [...]."""
    return _position_models()[j // 2].power(mu, m)


EQ33 = Eq33()
_MODELS = {"eq33": Eq33, "gray-exact": GrayQamExact}


def get_model(name_or_model=None) -> BerModel:
    """``None``/"eq33" -> :class:`Eq33`; "gray-exact" -> :class:`GrayQamExact`; a model passes through."""
    if name_or_model is None:
        return EQ33
    if isinstance(name_or_model, str):
        try:
            return _MODELS[name_or_model]()
        except KeyError:
            raise ValueError(f"ber_model: unknown model {name_or_model!r}; known: {sorted(_MODELS)}") from None
    if not (hasattr(name_or_model, "ber") and hasattr(name_or_model, "power")):
        raise ValueError("ber_model: expected a name or an object with ber(q, m) and power(mu, m)")
    return name_or_model


def ber_qam(p, gamma, m) -> np.ndarray:
    """Eq. (33): BER of ``2^m``-QAM at symbol power ``p`` and channel SNR ``gamma``.

    p : [...] float >= 0; gamma : float or [...] > 0; m : int or [...] int in {2,4,6,8}.
    Returns ``[...]`` float64.
    """
    p = np.asarray(p, np.float64)
    g = np.asarray(gamma, np.float64)
    if np.any(np.isnan(g)) or np.any(g <= 0):
        raise ValueError("gamma: expected values > 0")
    return EQ33.ber(p * g, m)


def power_for_ber(mu, m) -> np.ndarray:
    """Inverse of (33), eq. (38): least power per unit gamma (``p*gamma``) with BER <= mu.

    mu : [...] float in (0, 0.5]; m : int or [...] int. Returns ``[...]`` float64, 0 where
    ``mu >= ber_at_zero(m)`` (no power needed). Divide by gamma for the power.
    """
    return EQ33.power(mu, m)


def ber_at_zero(m) -> np.ndarray:
    """(33) at p = 0: 0.5, 0.625, 0.5417, 0.4531 for m = 2, 4, 6, 8."""
    return EQ33.at_zero(m)
