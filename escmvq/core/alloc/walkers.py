"""The greedy trajectories of Algorithms 2 (JCAMP) and 3 (JCAP), one state at a time.

Why a "trajectory": every decision of both algorithms -- the argmax of (41)/(51), the
swap test ``p+ < p-`` of (P2) -- compares powers that all scale with ``1/gamma``, so we
work in power per unit gamma (``q = p * gamma``, from the BER model's inverse). The
sequence of states the greedy loop visits is then the same for every channel and
budget; only where the loop stops depends on ``b = P_tot * gamma``:

    k = 0
    while cost(state_k) <= b:            # the loop condition of Alg. 2/3
        if no move is left: stop at k
        state_{k+1} = step(state_k)
    undo the last step -> state_{k-1}   (the algorithms' undo lines run after the loop)

so the result is ``state[max(k_first_over - 1, 0)]`` with ``k_first_over`` the first
state whose cost exceeds ``b`` (or the last state if none does). The iterative
functions (``jcap``/``jcamp``) and the precomputed :class:`Allocator` both drive the
walkers below, so they agree by construction and by test.

A walker holds one state and exposes ``cost()``, ``step() -> bool``, ``snapshot()``,
``restore(snap)`` and ``layout() -> (orders, bit_order, base, base_sum)``.

Deterministic tie-breaking everywhere: argmax/argmin take the lowest index; bits are
sorted by ``(mu, flat bit index i*B+j)``; costs are ``math.fsum`` (exactly rounded,
independent of summation order).

Variants
--------
``paper`` -- Algorithms 2 and 3 as written: the temporary power of bit (i, j) is the
symbol power ``eps^-1(mu_ij; m_ij)`` and the loop compares the sum over all N*B bits
with P_tot; (P2) swaps +2/-2 on single bits under the bit-averaged rate (37d); the
post-processing groups bits as Algorithm 2 does (leftovers at m_max) and (47) spreads
the gap. Their flaws (more or fewer than T symbols, negative powers) are kept and
reported on the plan, plus one more:
the sum over bits counts each symbol's power once per bit it carries (about R times),
so the paper loop stops while most of P_tot is still unused (spread by (47)).

``exact`` -- the repair (default):

* Rate. (37d) averages per-bit orders, but a symbol of order m holds m bits, so the
  symbol count is ``sum 1/m_ij >= T`` (Jensen) and grows with every +2/-2 swap. The
  exact variant keeps the modulation as *symbol counts* ``c_m`` (``sum c_m = T``,
  ``sum m c_m = N*B``) and lays the symbols out along the bits sorted by mu: the
  ``c_2`` QPSK symbols take the lowest-mu bits, then 16-QAM, ... (the extra power a
  higher order costs grows as mu falls, so reliable bits go to low orders). (P2) moves
  are the count-preserving pair moves ``(a -> a-2, b -> b+2)`` on two symbols (the
  symbol-level analogue of the paper's swap), taken while they lower the per-bit
  power proxy. So every state sends exactly T symbols and sum(orders) = N*B.
* Budget. The loop condition uses the *actual* cost of a state,
  ``sum_t eps^-1(mu_bar_t; m_t)`` over the T symbols it forms (not the per-bit sum,
  which counts a symbol's power once per bit). The state kept therefore fits P_tot and
  (47) only adds (powers >= 0). When even the cheapest state does not fit, powers are
  scaled by one common factor (:func:`escmvq.core.alloc.plan.finish_powers`).
* (P1) for JCAMP ranks moves by the order-R ratio (51), so JCAMP-exact walks JCAP's
  codebook path and (P2) lowers each state's power, so it gets at least as far as
  JCAP-exact (checked in tests; (P2) compares each bit's share ``eps^-1(mu_ij; m_ij)/m_ij``
  of its symbol's power, within 0.2% of the actual cost on trained-like tables, so this
  is measured, not proved). Ranking by the current per-bit orders as (41) reads made
  the codebook path noisier and lost to JCAP at some SNRs.
* (P2) also runs on the initial state (the paper starts the loop with m = R).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ber as _ber
from .validate import ORDERS


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """``x`` (> 0) rounded to ``digits`` significant digits (a deterministic sort key)."""
    e = np.floor(np.log10(x))
    return np.round(x / 10.0**e, digits - 1) * 10.0**e

__all__ = ["Tables", "JcapWalker", "JcampPaperWalker", "JcampExactWalker", "make_walker", "stop_index", "paper_grouping"]


class Tables:
    """Everything the walkers read: the tables and per-unit-gamma powers for each order.

    distortion : [V, N] float64; mu : [V, N, B] float64; rate, m_max : int; model: BerModel.
    """

    def __init__(self, distortion: np.ndarray, mu: np.ndarray, rate: int, m_max: int, model, flip_cost=None,
                 positions: bool = False):
        self.positions = bool(positions)
        self.D = distortion
        self.mu = mu
        self.V, self.N, self.B = mu.shape
        self.NB = self.N * self.B
        self.R = rate
        self.T = self.NB // rate
        self.m_max = m_max
        self.model = model
        self.orders = tuple(m for m in ORDERS if m <= m_max)
        self.n_ord = len(self.orders)
        # P4[o, v, i, j]: power per unit gamma for bit (i, j) on codebook v at order orders[o]
        self.P4 = np.stack([np.asarray(model.power(mu, m), np.float64) for m in self.orders])
        self.ri = self.orders.index(rate)
        self.rowP = self.P4[self.ri].sum(axis=2)  # [V, N], per-sub-vector cost at order R
        self.ar_n = np.arange(self.N)
        self.ar_nb = np.arange(self.NB)
        self.i_of_bit = np.repeat(self.ar_n, self.B)
        self.j_of_bit = np.tile(np.arange(self.B), self.N)
        # global sort key of (v, flat bit) by (mu, flat bit): one counting-free sort per state
        mu_flat = mu.reshape(self.V, self.NB)
        flat = np.broadcast_to(self.ar_nb, (self.V, self.NB))
        if flip_cost is None:
            order = np.lexsort((flat.ravel(), mu_flat.ravel()))
        else:
            # position-aware: among bits whose mu agree to 3 significant digits (trained mu sit
            # on their floors up to ~1e-4 relative noise), the costliest flip first, so that
            # within a symbol it lands on the most reliable position (the I/Q sign bits)
            fc = np.asarray(flip_cost, np.float64).reshape(self.V, self.NB)
            order = np.lexsort((flat.ravel(), -fc.ravel(), _round_sig(mu_flat.ravel(), 3)))
        rank = np.empty(self.V * self.NB, np.int32)
        rank[order] = np.arange(order.size, dtype=np.int32)
        self.rank_key = rank.reshape(self.V, self.NB)
        self.rank_to_flat = (order % self.NB).astype(np.int32)

    # -- state helpers ---------------------------------------------------------
    def sorted_bits(self, v: np.ndarray) -> np.ndarray:
        """Flat bit indices of state ``v`` sorted by (mu, flat index): [N*B] int64."""
        r = self.rank_key[v[self.i_of_bit], self.ar_nb]
        return self.rank_to_flat[np.sort(r)].astype(np.int64)

    def mu_state(self, v: np.ndarray) -> np.ndarray:
        """[N*B] float64, mu of every flat bit under assignment v."""
        return self.mu[v[self.i_of_bit], self.i_of_bit, self.j_of_bit]

    def group_powers(self, v: np.ndarray, orders: np.ndarray, bit_order: np.ndarray):
        """Actual per-unit-gamma symbol powers and their fsum (see :meth:`symbol_powers`)."""
        base = self.symbol_powers(self.mu_state(v)[bit_order], orders)
        return base, math.fsum(base.tolist())

    def symbol_powers(self, mus: np.ndarray, orders: np.ndarray) -> np.ndarray:
        """mus : [sum(orders)] float64, the targets of the bits in frame order; orders : [T'] > 0.
        Returns [T'] float64: ``eps^-1(mu_bar_t; m_t)`` (46), or with ``positions`` the least
        power at which every bit meets its own target on its own Gray position."""
        starts = np.concatenate(([0], np.cumsum(orders)[:-1])).astype(np.int64)
        if not self.positions:
            mbar = np.add.reduceat(mus, starts) / orders
            return np.asarray(self.model.power(np.minimum(mbar, 0.5), orders), np.float64)
        base = np.empty(orders.size)
        for m in self.orders:
            t = np.flatnonzero(orders == m)
            if t.size:
                base[t] = _ber.power_positions(mus[starts[t, None] + np.arange(m)], m)
        return base

    def score(self, gain: np.ndarray, dp: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Ratio of (41)/(51): distortion drop per unit of extra power. A move that costs no
        power (dp <= 0) ranks first (+inf); sub-vectors already on codebook 0 are out (-inf)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(dp > 0, gain / np.where(dp > 0, dp, 1.0), np.inf)
        return np.where(eligible, s, -np.inf)


def stop_index(thresholds: np.ndarray, b: float) -> int:
    """Where the greedy loop stops for budget ``b = P_tot*gamma``.

    thresholds : [K+1] running maximum of the state costs. Returns the state index.
    """
    k_over = int(np.searchsorted(thresholds, b, side="right"))
    return max(k_over - 1, 0)


# ---------------------------------------------------------------------------------
# JCAP (Algorithm 3): fixed order R
# ---------------------------------------------------------------------------------
class JcapWalker:
    def __init__(self, tab: Tables, variant: str):
        self.tab = tab
        self.variant = variant
        V, N = tab.V, tab.N
        # static score table: S[v, i] = ratio (51) of moving sub-vector i from v to v-1
        S = np.full((V, N), -np.inf)
        if V > 1:
            gain = tab.D[1:] - tab.D[:-1]
            dp = tab.rowP[:-1] - tab.rowP[1:]
            S[1:] = tab.score(gain, dp, np.ones_like(gain, bool))
        self.S = S
        self.v = np.full(N, V - 1, np.int64)
        self.cur = S[V - 1].copy()
        self.orders = np.full(tab.T, tab.R, np.int64)

    def cost(self) -> float:
        if self.variant == "paper":
            return math.fsum(self.tab.rowP[self.v, self.tab.ar_n].tolist())
        bo = self.tab.sorted_bits(self.v)
        return self.tab.group_powers(self.v, self.orders, bo)[1]

    def step(self) -> bool:
        i = int(np.argmax(self.cur))
        if self.cur[i] == -np.inf:
            return False
        self.v[i] -= 1
        self.cur[i] = self.S[self.v[i], i]
        return True

    def snapshot(self):
        return self.v.copy()

    def restore(self, snap):
        self.v = snap.copy()
        self.cur = self.S[self.v, self.tab.ar_n]

    def layout(self):
        bo = self.tab.sorted_bits(self.v)
        base, s = self.tab.group_powers(self.v, self.orders, bo)
        return self.orders, bo, base, s, []


# ---------------------------------------------------------------------------------
# JCAMP, paper variant (Algorithm 2 as written)
# ---------------------------------------------------------------------------------
def paper_grouping(tab: Tables, v: np.ndarray, mhat: np.ndarray):
    """Algorithm 2's post-processing: returns (orders [T'], bit_order [N*B], warnings)."""
    bo_sorted = tab.sorted_bits(v)
    m_sorted = mhat.ravel()[bo_sorted]
    queues = {m: np.flatnonzero(m_sorted == m) for m in tab.orders}
    ptr = {m: 0 for m in tab.orders}
    orders, chunks = [], []
    for _t in range(tab.T):
        heads = [(queues[m][ptr[m]], m) for m in tab.orders if ptr[m] < queues[m].size]
        if not heads:
            break
        _, m = min(heads)
        if queues[m].size - ptr[m] < m:
            break
        chunks.append(queues[m][ptr[m] : ptr[m] + m])
        orders.append(m)
        ptr[m] += m
    rest = np.sort(np.concatenate([queues[m][ptr[m] :] for m in tab.orders]))
    warnings = []
    n_formed = len(orders)
    if rest.size:
        mm = tab.m_max
        for s in range(0, rest.size, mm):
            chunk = rest[s : s + mm]
            chunks.append(chunk)
            orders.append(int(chunk.size))  # the last chunk may be short: its size (even) is its order
        warnings.append(
            f"post-processing formed {n_formed} symbols and grouped the {rest.size} remaining bits at m_max={mm}"
        )
    ranks = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    orders = np.asarray(orders, np.int64)
    if orders.size != tab.T:
        warnings.append(f"forms {orders.size} symbols where the rate needs T = {tab.T}")
    return orders, bo_sorted[ranks], warnings


class JcampPaperWalker:
    def __init__(self, tab: Tables, iter_max: int):
        self.tab = tab
        self.iter_max = iter_max
        self.v = np.full(tab.N, tab.V - 1, np.int64)
        self.mo = np.full(tab.NB, tab.ri, np.int64)  # per-bit order index into tab.orders
        self._derive()

    def _pw(self, o, vb, idx=None):
        """P4 gathered at order index o [n] and codebook vb [n] for flat bits idx [n] (all if None)."""
        t = self.tab
        if idx is None:
            return t.P4[o, vb, t.i_of_bit, t.j_of_bit]
        return t.P4[o, vb, t.i_of_bit[idx], t.j_of_bit[idx]]

    def _derive(self):
        t = self.tab
        vb = self.v[t.i_of_bit]
        self.curp = self._pw(self.mo, vb)
        self._updown(np.arange(t.NB))

    def _updown(self, idx):
        t = self.tab
        if not hasattr(self, "up"):
            self.up = np.empty(t.NB)
            self.down = np.empty(t.NB)
        vb = self.v[t.i_of_bit[idx]]
        o = self.mo[idx]
        cur = self.curp[idx]
        hi = o + 1 < t.n_ord
        lo = o - 1 >= 0
        self.up[idx] = np.where(hi, t.P4[np.minimum(o + 1, t.n_ord - 1), vb, t.i_of_bit[idx], t.j_of_bit[idx]] - cur, np.inf)
        self.down[idx] = np.where(lo, cur - t.P4[np.maximum(o - 1, 0), vb, t.i_of_bit[idx], t.j_of_bit[idx]], -np.inf)

    def cost(self) -> float:
        return math.fsum(self.curp.tolist())

    def _p1(self) -> bool:
        t = self.tab
        v = self.v
        elig = v > 0
        vm = np.maximum(v - 1, 0)
        o = self.mo.reshape(t.N, t.B)
        ii = t.ar_n[:, None]
        jj = np.arange(t.B)[None, :]
        dp = (t.P4[o, vm[:, None], ii, jj] - t.P4[o, v[:, None], ii, jj]).sum(axis=1)
        gain = t.D[v, t.ar_n] - t.D[vm, t.ar_n]
        s = t.score(gain, dp, elig)
        i = int(np.argmax(s))
        if s[i] == -np.inf:
            return False
        v[i] -= 1
        idx = np.arange(i * t.B, (i + 1) * t.B)
        self.curp[idx] = self._pw(self.mo[idx], np.full(t.B, v[i]), idx)
        self._updown(idx)
        return True

    def _p2(self):
        t = self.tab
        for _ in range(self.iter_max):
            a = int(np.argmin(self.up))  # (43)
            b = int(np.argmax(self.down))  # (44)
            if a == b or not (self.up[a] < self.down[b]):
                break
            self.mo[a] += 1
            self.mo[b] -= 1
            idx = np.array([a, b])
            self.curp[idx] = self._pw(self.mo[idx], self.v[t.i_of_bit[idx]], idx)
            self._updown(idx)

    def step(self) -> bool:
        if not self._p1():
            return False
        self._p2()
        return True

    def snapshot(self):
        return self.v.copy(), self.mo.copy()

    def restore(self, snap):
        self.v, self.mo = snap[0].copy(), snap[1].copy()
        self._derive()

    def mhat(self) -> np.ndarray:
        return np.asarray(self.tab.orders, np.int64)[self.mo].reshape(self.tab.N, self.tab.B)

    def layout(self):
        orders, bo, warn = paper_grouping(self.tab, self.v, self.mhat())
        base, s = self.tab.group_powers(self.v, orders, bo)
        return orders, bo, base, s, warn


# ---------------------------------------------------------------------------------
# JCAMP, exact variant (T symbols always; see the module docstring)
# ---------------------------------------------------------------------------------
class JcampExactWalker:
    def __init__(self, tab: Tables, iter_max: int):
        self.tab = tab
        self.iter_max = iter_max
        self.v = np.full(tab.N, tab.V - 1, np.int64)
        self.c = np.zeros(tab.n_ord, np.int64)
        self.c[tab.ri] = tab.T
        self.om = np.asarray(tab.orders, np.float64)
        self.S = JcapWalker(tab, "exact").S
        self.cur = self.S[tab.V - 1].copy()
        # count-preserving pair moves: one symbol a -> a-2, one symbol b -> b+2 (indices into orders)
        self.moves = [(a, b) for a in range(1, tab.n_ord) for b in range(tab.n_ord - 1) if b != a - 1]
        self._sort()
        self._p2()

    # per-state derived data: sorted bits, per-order prefix sums of the per-bit share
    def _sort(self):
        t = self.tab
        self.bo = t.sorted_bits(self.v)
        vb = self.v[t.i_of_bit[self.bo]]
        share = t.P4[:, vb, t.i_of_bit[self.bo], t.j_of_bit[self.bo]] / self.om[:, None]  # [n_ord, NB]
        self.Q = np.zeros((t.n_ord, t.NB + 1))
        np.cumsum(share, axis=1, out=self.Q[:, 1:])

    def _proxy(self, c) -> float:
        ends = np.cumsum(c * np.asarray(self.tab.orders))
        starts = ends - c * np.asarray(self.tab.orders)
        return float(self.Q[np.arange(self.tab.n_ord), ends].sum() - self.Q[np.arange(self.tab.n_ord), starts].sum())

    def _p2(self):
        cur = self._proxy(self.c)
        for _ in range(self.iter_max):
            best, best_c = cur, None
            for a, b in self.moves:
                need_a = 2 if a == b else 1
                if self.c[a] < need_a or self.c[b] < 1:
                    continue
                c2 = self.c.copy()
                c2[a] -= 1
                c2[a - 1] += 1
                c2[b] -= 1
                c2[b + 1] += 1
                p = self._proxy(c2)
                if p < best:
                    best, best_c = p, c2
            if best_c is None:
                break
            self.c, cur = best_c, best

    def orders_of(self, c) -> np.ndarray:
        return np.repeat(np.asarray(self.tab.orders, np.int64), c)

    def cost(self) -> float:
        return self.tab.group_powers(self.v, self.orders_of(self.c), self.bo)[1]

    def step(self) -> bool:
        # (P1) ranks moves by the order-R ratio (51), i.e. JCAP's trajectory of v; (P2)
        # then lowers the power of every state. Measured on trained-like tables, ranking
        # by the current per-bit orders (41) made the codebook path noisier (the orders of
        # a sub-vector's bits change as its bits move in the sort) and lost to JCAP at some
        # SNRs; with the shared path JCAMP-exact reaches at least JCAP-exact's state.
        i = int(np.argmax(self.cur))
        if self.cur[i] == -np.inf:
            return False
        self.v[i] -= 1
        self.cur[i] = self.S[self.v[i], i]
        self._sort()
        self._p2()
        return True

    def snapshot(self):
        return self.v.copy(), self.c.copy()

    def restore(self, snap):
        self.v, self.c = snap[0].copy(), snap[1].copy()
        self.cur = self.S[self.v, self.tab.ar_n]
        self._sort()

    def layout(self):
        orders = self.orders_of(self.c)
        base, s = self.tab.group_powers(self.v, orders, self.bo)
        return orders, self.bo, base, s, []


def make_walker(tab: Tables, method: str, variant: str, iter_max: int):
    if method == "jcap":
        return JcapWalker(tab, variant)
    if variant == "paper":
        return JcampPaperWalker(tab, iter_max)
    return JcampExactWalker(tab, iter_max)


def run(walker, budget: float):
    """Drive a walker as the algorithms' while-loop does; returns the final state index."""
    k = 0
    prev = None
    while True:
        if walker.cost() > budget:
            if prev is not None:
                walker.restore(prev)
                k -= 1
            return k
        prev = walker.snapshot()
        if not walker.step():
            return k
        k += 1
