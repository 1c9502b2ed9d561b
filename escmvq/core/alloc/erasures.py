"""Erasure-aware allocation: the states below the cheapest state of JCAP / JCAMP.

Without erasures every sub-vector is sent, so the cheapest state is "all on the most
robust codebook V-1". When ``P_tot*gamma`` is below its cost, the exact variant can only
scale every power by one factor: every bit then misses its BER target (a deep fade sends
the whole frame at BER 0.2-0.4). Erasure-aware allocation adds a "not sent" state per
sub-vector:

* its distortion is that of the receiver's substitute, the training-set mean of the
  sub-vector (``erasure_distortion[i] = E||z_i - mean_i||^2``, the extra column of (31));
* it costs no power, and its B bits are not sent, so the sent bits need fewer channel
  uses: they move to lower orders, and channel uses nobody needs become order 0 (power 0,
  the symbol is sent as 0). Every plan still has exactly T symbols, powers >= 0 summing
  to P_tot.

The *prefix* of the greedy trajectory. State ``j = 1 .. J-1`` (``J = N/g``) sends ``j*g``
sub-vectors on codebook V-1 and erases the rest; ``g = 2`` when B is odd (so the sent bit
count is even and fills whole symbols), else 1. Sub-vectors enter in the order of the
ratio (51) of their distortion drop ``erasure_distortion[i] - D[V-1, i]`` to their order-R
power (ties: lowest index), i.e. the same ratio the greedy loop uses for every other
move. Each state's symbol counts ``c_m`` (order 0 included) start from the most even
layout and are improved by the same count-preserving pair moves as (P2) of the exact
JCAMP; its cost is the actual ``sum_t eps^-1(mu_bar_t; m_t)`` over the used symbols.
State J is the old trajectory's state 0, which continues unchanged, so above the old
cheapest state every plan is byte-identical to the allocator without erasures.

What happens below the old cheapest state (the region that used to scale all powers):
the plan is the last prefix state that fits ``b = P_tot*gamma`` (its surplus spread over
its used symbols by (47)), except that for ``b >= erasure_floor`` the old behaviour is
kept (all sub-vectors sent, powers scaled). Just below the cheapest state the scaled
state misses its BER targets by a fraction of a dB and erasing two sub-vectors would cost
more, so the floor is where the two plans' expected distortions cross. It is chosen at
export (:func:`choose_erasure_floor`) from the paper's distortion objective evaluated with
the BER each plan actually delivers (exact per-position Gray-QAM BER of its powers) on
training latents: on its grid the kept plan is never worse than the scaled one.
Below the first prefix state (two sub-vectors) the powers of that state are scaled.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ber as _ber
from .. import pvq

__all__ = ["prefix_states", "fit_counts", "plan_distortion", "choose_erasure_floor"]


def _shares(tab, mus_sorted: np.ndarray, orders_ext: tuple[int, ...]) -> np.ndarray:
    """Per-bit share ``eps^-1(mu; m)/m`` of its symbol's power, ``[n_ord_ext, L'+1]`` prefix sums."""
    Q = np.zeros((len(orders_ext), mus_sorted.size + 1))
    for o, m in enumerate(orders_ext):
        if m:
            np.cumsum(np.asarray(tab.model.power(mus_sorted, m), np.float64) / m, out=Q[o, 1:])
    return Q


def fit_counts(tab, mus_sorted: np.ndarray, T: int, orders_ext: tuple[int, ...], iter_max: int) -> np.ndarray:
    """Symbol counts for ``L'`` bits (sorted by mu) on ``T`` symbols.

    mus_sorted : [L'] float64, L' even, L' <= max(orders_ext)*T; orders_ext : ascending, starts with 0.
    Returns ``c [len(orders_ext)]`` int64 with ``sum c = T``, ``sum m c = L'``: the most
    even layout, then best-improvement pair moves (one symbol a -> a-2, another b -> b+2)
    on the per-bit power proxy while it drops (ties: the first move in a fixed order).
    """
    Lp = int(mus_sorted.size)
    om = np.asarray(orders_ext, np.int64)
    n = om.size
    c = np.zeros(n, np.int64)
    lo = max(int(o) for o in om if o * T <= Lp)
    li = int(np.flatnonzero(om == lo)[0])
    extra = (Lp - lo * T) // 2  # symbols lifted lo -> lo+2
    c[li] = T - extra
    if extra:
        c[li + 1] = extra
    Q = _shares(tab, mus_sorted, orders_ext)
    ar = np.arange(n)

    def proxy(cc):
        ends = np.cumsum(cc * om)
        return float(Q[ar, ends].sum() - Q[ar, ends - cc * om].sum())

    moves = [(a, b) for a in range(1, n) for b in range(n - 1) if b != a - 1]
    cur = proxy(c)
    for _ in range(iter_max):
        best, best_c = cur, None
        for a, b in moves:
            if c[a] < (2 if a == b else 1) or c[b] < 1:
                continue
            c2 = c.copy()
            c2[a] -= 1
            c2[a - 1] += 1
            c2[b] -= 1
            c2[b + 1] += 1
            p = proxy(c2)
            if p < best:
                best, best_c = p, c2
        if best_c is None:
            break
        c, cur = best_c, best
    return c


def prefix_states(tab, erasure_distortion: np.ndarray, iter_max: int):
    """The erasure prefix of the trajectory (states 1 .. J-1, see the module docstring).

    erasure_distortion : [N] float64. Returns ``(codebooks [J-1, N] int64 with V = not sent,
    counts [J-1, n_ord+1] int64 over orders (0,) + tab.orders, orders_ext)``.
    """
    V, N, B = tab.V, tab.N, tab.B
    g = 2 if B % 2 else 1
    if N % g:
        raise ValueError(f"erasures: N = {N} sub-vectors of B = {B} bits cannot be sent in whole symbols in pairs")
    de = np.asarray(erasure_distortion, np.float64)
    if de.shape != (N,) or not np.all(np.isfinite(de)):
        raise ValueError(f"erasure_distortion: expected [N={N}] finite values, got shape {de.shape}")
    gain = de - tab.D[V - 1]
    score = tab.score(gain, tab.rowP[V - 1], np.ones(N, bool))
    entry = np.lexsort((np.arange(N), -score))  # best ratio first, ties to the lowest index
    orders_ext = (0,) + tuple(tab.orders)
    cbs, counts = [], []
    for j in range(1, N // g):
        v = np.full(N, V, np.int64)
        v[entry[: j * g]] = V - 1
        mus = tab.mu_state(np.minimum(v, V - 1))[sorted_bits_ext(tab, v)[: j * g * B]]
        cbs.append(v)
        counts.append(fit_counts(tab, mus, tab.T, orders_ext, iter_max))
    return np.asarray(cbs, np.int64).reshape(-1, N), np.asarray(counts, np.int64).reshape(-1, len(orders_ext)), orders_ext


def sorted_bits_ext(tab, v: np.ndarray) -> np.ndarray:
    """Flat bits of state ``v`` (V = not sent): the sent ones sorted by (mu, flat index),
    then the not-sent ones by flat index. [N*B] int64."""
    sent = v[tab.i_of_bit] < tab.V
    r = np.where(sent, tab.rank_key[np.minimum(v, tab.V - 1)[tab.i_of_bit], tab.ar_nb], tab.V * tab.NB + tab.ar_nb)
    rank_to_flat = np.concatenate([tab.rank_to_flat.astype(np.int64), tab.ar_nb])
    return rank_to_flat[np.sort(r)]


def group_powers_ext(tab, v: np.ndarray, orders: np.ndarray, bit_order: np.ndarray):
    """Per-unit-gamma symbol powers (46) of a state with erasures; order-0 symbols cost 0."""
    used = orders > 0
    mus = tab.mu_state(np.minimum(v, tab.V - 1))[bit_order[: int(orders.sum())]]
    base = np.zeros(orders.size)
    base[used] = tab.symbol_powers(mus, orders[used])
    return base, math.fsum(base.tolist())


# ---------------------------------------------------------------------------------
# The floor: where erasing beats scaling, on the paper's distortion objective
# ---------------------------------------------------------------------------------
def plan_distortion(plan, zs: np.ndarray, codebooks: np.ndarray, latent_mean: np.ndarray,
                    label_prior: np.ndarray | None = None) -> float:
    """Mean over images of ``sum_i E||z_i - z_hat_i||^2`` that ``plan`` actually delivers.

    plan : a :class:`~escmvq.core.alloc.plan.Plan` (codebook V = not sent); zs : [n, N, D]
    float32 training latents; codebooks : [V, K, D]; latent_mean : [N, D] (the substitute).
    Each bit flips with the exact Gray-QAM BER of its position at ``q = p_t*gamma`` (no
    averaging as in (46)), and (30) gives the expected distortion under those flips.
    label_prior : [V, N, K] or None. None: the receiver decodes the received label's codeword
    (hard, the paper's (30)); given: the soft receiver's posterior mean of the received label
    under these flips and this prior (:func:`escmvq.core.pvq.posterior_means`; hard-decided
    bits, so a lower bound on what the runtime's LLRs deliver).
    """
    V, K, D = codebooks.shape
    N = zs.shape[1]
    B = plan.bit_order.size // N
    exact = _ber.GrayQamExact()
    flip = np.full(N * B, 0.5)
    start = 0
    for t, m in enumerate(plan.orders.tolist()):
        if m:
            flip[plan.bit_order[start:start + m]] = exact.ber_positions(plan.powers[t] * plan.gamma, m)
            start += m
    flip = np.clip(flip.reshape(N, B), 1e-12, 0.5)
    total = np.zeros(zs.shape[0])
    cb = np.asarray(plan.codebooks)
    for v in np.unique(cb):
        sel = np.flatnonzero(cb == v)
        if v >= V:
            total += ((zs[:, sel] - latent_mean[sel]) ** 2).sum((1, 2))
        else:
            recon = None if label_prior is None else pvq.posterior_means(codebooks[v], flip[sel], label_prior[v][sel])
            total += pvq.expected_distortion(zs[:, sel], codebooks[v], flip[sel], recon).sum(1)
    return float(total.mean())


def choose_erasure_floor(allocator, zs: np.ndarray, codebooks: np.ndarray, latent_mean: np.ndarray,
                         n_grid: int = 24, label_prior: np.ndarray | None = None) -> tuple[float, list[dict]]:
    """The budget ``b = P_tot*gamma`` from which the scaled all-sent state is kept.

    allocator : an :class:`~escmvq.core.alloc.allocator.Allocator` with erasures; the other
    arguments as :func:`plan_distortion`. On ``n_grid`` budgets log-spaced between the first
    prefix state's cost and the old cheapest state's, both plans (erasure state; scaled
    all-sent state) are scored by :func:`plan_distortion`; the floor is the lowest grid
    budget from which the scaled plan is no worse at every grid point above (the old
    cheapest state's cost if it never is). ``label_prior`` given: both plans scored for the
    soft receiver (see :func:`plan_distortion`). Returns ``(floor, rows)``; rows hold
    ``b``, ``erasure`` and ``scaled`` distortions for the docs.
    """
    c_first, c0 = allocator.prefix_cost_range()
    # log-spaced, plus points just below c0 where the scaled state misses its targets least
    grid = np.union1d(np.geomspace(c_first, c0, n_grid + 1)[:-1], c0 * (1.0 - np.array([0.1, 0.05, 0.02, 0.01])))
    rows = []
    for b in grid.tolist():
        pe = allocator.plan(b, 1.0, erasure_floor=math.inf)
        ps = allocator.plan(b, 1.0, erasure_floor=0.0)
        rows.append({"b": b, "erasure": plan_distortion(pe, zs, codebooks, latent_mean, label_prior),
                     "scaled": plan_distortion(ps, zs, codebooks, latent_mean, label_prior),
                     "sent": int((pe.codebooks < codebooks.shape[0]).sum())})
    floor = c0
    for r in reversed(rows):
        if r["scaled"] <= r["erasure"]:
            floor = r["b"]
        else:
            break
    return float(floor), rows
