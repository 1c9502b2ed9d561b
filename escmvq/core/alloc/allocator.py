"""Precomputed allocator: the greedy trajectory once, then microsecond look-ups.

Every decision of Algorithms 2/3 compares powers that all scale with ``1/gamma``, so it
depends on ``(P_tot, gamma)`` only through ``b = P_tot * gamma`` (see :mod:`escmvq.core.alloc.walkers`). :class:`Allocator` walks
the whole trajectory at construction (budget = +inf), records for every state ``k``
its codebook vector, its modulation (order counts or per-bit orders), its cost and the
per-unit-gamma symbol powers, and keeps ``thresholds = running max of the costs``.
``plan(p_tot, gamma)`` then does one ``searchsorted`` on ``b`` and assembles the plan
from the cached arrays (bits sorted by a precomputed global rank, powers from the
cached row). The same walker code drives the iterative ``jcap``/``jcamp``, so the
answers agree (tests/test_core_alloc.py checks codebooks, orders, bit order, powers).

``state()`` returns plain numpy arrays (no pickle) for a bundle ``.npz``;
``from_state`` rebuilds without recomputing anything, so a transmitter and a receiver
loading the same arrays derive byte-identical plans (``Plan.to_bytes``).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import ber as _ber
from .common import DEFAULT_ITER_MAX, assemble, build_tables
from . import erasures
from .plan import Plan, finish_powers
from .validate import ORDERS, check_budget
from .walkers import JcampExactWalker, JcampPaperWalker, JcapWalker, Tables, make_walker, paper_grouping

__all__ = ["Allocator"]

FORMAT = "escmvq-allocator"
VERSION = 1  # states without erasures (unchanged since the first release)
VERSION_ERASURES = 2  # adds the erasure prefix (escmvq.core.alloc.erasures)


def _batched_group_powers(model, mbar_rows: list[np.ndarray], order_rows: list[np.ndarray]) -> list[np.ndarray]:
    """``model.power`` for many states at once, each distinct (mu_bar, m) solved once.

    The inverse is elementwise (each element's iteration stops on its own criterion), so
    the values equal those of per-state calls.
    """
    if not mbar_rows:
        return []
    mb = np.concatenate(mbar_rows)
    od = np.concatenate(order_rows)
    out = np.empty(mb.size)
    for m in ORDERS:
        sel = od == m
        if not sel.any():
            continue
        u, inv = np.unique(mb[sel], return_inverse=True)
        out[sel] = np.asarray(model.power(u, np.full(u.size, m, np.int64)), np.float64)[inv]
    rows, s = [], 0
    for r in mbar_rows:
        rows.append(out[s : s + r.size])
        s += r.size
    return rows


def _batched_position_powers(mus_rows: list[np.ndarray], order_rows: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`escmvq.core.ber.power_positions` for many states at once: every symbol's bits
    (frame order) per state, each distinct (mu, m, position) inverted once. The inverse is
    elementwise, so the values equal those of per-state calls."""
    starts = [np.concatenate(([0], np.cumsum(o)[:-1])).astype(np.int64) for o in order_rows]
    out = [np.empty(o.size) for o in order_rows]
    for m in ORDERS:
        sel = [np.flatnonzero(o == m) for o in order_rows]
        parts = [mus[st[t, None] + np.arange(m)] for mus, st, t in zip(mus_rows, starts, sel) if t.size]
        if not parts:
            continue
        allm = np.concatenate(parts)  # [n_m, m]
        q = np.zeros(allm.shape[0])
        for j in range(m):  # symbol bit b[j]: per-axis position j//2 + 1
            u, inv = np.unique(allm[:, j], return_inverse=True)
            q = np.maximum(q, _ber.position_power(u, m, j)[inv])
        s = 0
        for r, t in enumerate(sel):
            if t.size:
                out[r][t] = q[s:s + t.size]
                s += t.size
    return out


class Allocator:
    """JCAP / JCAMP with the channel-independent work done once.

    distortion : [V, N] float, table (31); mu : [V, N, B] float in (0, 0.5] (codebook 0 =
    lowest mu); rate : even int; method : "jcap" | "jcamp"; variant : "exact" | "paper";
    m_max : int (JCAMP's highest order); iter_max : (P2) iterations per step;
    ber_model : None (eq. (33)), "gray-exact", or a BerModel (then pass it to
    :meth:`from_state` too).

    ``plan(p_tot, gamma)`` gives the same plan as ``jcap``/``jcamp`` with the same
    arguments. The paper variant of JCAMP does its post-processing at plan time
    (cached per state), so it is slower than the others.

    erasure_distortion : None, or [N] float (exact variant only): adds the "not sent" state
    per sub-vector (:mod:`escmvq.core.alloc.erasures`): below the cheapest state the plan
    erases sub-vectors instead of scaling every power; ``plan.codebooks[i] == V`` marks a
    sub-vector that is not sent, ``orders`` may hold 0 (an unused channel use, power 0),
    and only the first ``sum(orders)`` entries of ``bit_order`` are sent. Above the
    cheapest state the plans are those of the allocator without erasures.
    flip_cost : None, or [V, N, B] float: the cost of flipping each label bit (e.g.
    ``E||c_k - c_(k xor e_j)||^2``, :func:`escmvq.core.pvq.flip_cost`); bits whose mu agree to
    3 significant digits are then laid out costliest first, so the costly bits of a symbol sit
    on its most reliable Gray positions (the I/Q sign bits).
    positions : True: a symbol's power is the least at which every bit meets its own target
    on its own Gray position (exact per-position BER, :func:`escmvq.core.ber.power_positions`)
    instead of the average target (46) (exact variant only).
    erasure_floor : float >= 0 (power per unit gamma): from this budget ``P_tot*gamma``
    up, the scaled all-sent state is kept instead of an erasure state (default: the
    cheapest state's cost, i.e. always erase below it; see
    :func:`~escmvq.core.alloc.erasures.choose_erasure_floor`).
    """

    def __init__(self, distortion, mu, rate=4, method="jcamp", variant="exact", m_max=8, *, iter_max=DEFAULT_ITER_MAX,
                 ber_model=None, erasure_distortion=None, erasure_floor=None, flip_cost=None, positions=False):
        tab, method, variant, iter_max = build_tables(distortion, mu, rate, m_max, method, variant, iter_max, ber_model,
                                                      flip_cost, positions)
        if erasure_distortion is not None and variant != "exact":
            raise ValueError("erasure_distortion: erasures need variant='exact' (the paper variant has no 'not sent' state)")
        self._tab = tab
        self.method, self.variant, self.iter_max = method, variant, iter_max
        self._model_name = getattr(tab.model, "name", "custom")
        w = make_walker(tab, method, variant, iter_max)
        cbs, counts, mos, costs = [], [], [], []
        while True:
            cbs.append(w.v.copy())
            if isinstance(w, JcampExactWalker):
                counts.append(w.c.copy())
            if isinstance(w, JcampPaperWalker):
                mos.append(w.mo.copy())
                costs.append(w.cost())
            if isinstance(w, JcapWalker) and variant == "paper":
                costs.append(w.cost())
            if not w.step():
                break
        K1 = len(cbs)
        a = {}
        a["codebooks"] = np.asarray(cbs, np.int16)
        if counts:
            a["counts"] = np.asarray(counts, np.int32)
        if mos:
            a["mo"] = np.asarray(mos, np.int8)
        if not (method == "jcamp" and variant == "paper"):
            # per-state symbol powers per unit gamma, batched
            mus_rows, ords = [], []  # per state: the bits' targets in frame order, the orders
            for k in range(K1):
                v = a["codebooks"][k].astype(np.int64)
                mus_rows.append(tab.mu_state(v)[tab.sorted_bits(v)])
                ords.append(self._orders_of(k, a))
            if tab.positions:  # per-position powers, each distinct (mu, m, position) solved once
                base = _batched_position_powers(mus_rows, ords)
            else:  # (46): the mean target of each symbol's bits
                mbars = [np.minimum(np.add.reduceat(mus, np.concatenate(([0], np.cumsum(o)[:-1]))) / o, 0.5)
                         for mus, o in zip(mus_rows, ords)]
                base = _batched_group_powers(tab.model, mbars, ords)
            a["base"] = np.asarray(base, np.float64)
            a["base_sum"] = np.array([math.fsum(r.tolist()) for r in base])
            if variant == "exact":
                costs = a["base_sum"].tolist()
        a["costs"] = np.asarray(costs, np.float64)
        a["thresholds"] = np.maximum.accumulate(a["costs"])
        a["dist"] = np.array([float(tab.D[c.astype(np.int64), tab.ar_n].sum()) for c in a["codebooks"]])
        if erasure_distortion is not None:
            a = self._with_prefix(a, np.asarray(erasure_distortion, np.float64), iter_max, erasure_floor)
        self._a = a
        self._init_runtime()

    def _with_prefix(self, a: dict, de: np.ndarray, iter_max: int, floor) -> dict:
        """Prepend the erasure states to the trajectory ``a`` (module :mod:`.erasures`)."""
        tab = self._tab
        cbs, counts, orders_ext = erasures.prefix_states(tab, de, iter_max)
        n_old = a["codebooks"].shape[0]
        old_counts = np.zeros((n_old, len(orders_ext)), np.int64)
        if "counts" in a:
            old_counts[:, 1:] = a["counts"]
        else:
            old_counts[:, 1 + tab.ri] = tab.T
        base, dist = [], []
        for v, c in zip(cbs, counts):
            orders = np.repeat(np.asarray(orders_ext, np.int64), c)
            base.append(erasures.group_powers_ext(tab, v, orders, erasures.sorted_bits_ext(tab, v))[0])
            sent = v < tab.V
            dist.append(math.fsum(tab.D[tab.V - 1, sent].tolist()) + math.fsum(de[~sent].tolist()))
        base = np.concatenate([np.asarray(base, np.float64).reshape(-1, tab.T), a["base"]])
        out = {"codebooks": np.concatenate([cbs, a["codebooks"]]).astype(np.int16),
               "counts": np.concatenate([counts, old_counts]).astype(np.int32), "base": base}
        out["base_sum"] = np.array([math.fsum(r.tolist()) for r in base])
        out["costs"] = out["base_sum"].copy()
        out["thresholds"] = np.maximum.accumulate(out["costs"])
        out["dist"] = np.concatenate([np.asarray(dist), a["dist"]])
        out["erasure_distortion"] = de
        out["n_prefix"] = np.array(len(cbs), np.int64)
        out["erasure_floor"] = np.array(out["costs"][len(cbs)] if floor is None else float(floor), np.float64)
        if not out["erasure_floor"] >= 0:
            raise ValueError(f"erasure_floor: expected a budget >= 0, got {floor!r}")
        return out

    # ------------------------------------------------------------------ helpers
    def _orders_of(self, k, a=None) -> np.ndarray:
        a = self._a if a is None else a
        tab = self._tab
        if "n_prefix" in a:
            return np.repeat(np.asarray((0,) + tab.orders, np.int64), a["counts"][k])
        if "counts" in a:
            return np.repeat(np.asarray(tab.orders, np.int64), a["counts"][k])
        return np.full(tab.T, tab.R, np.int64)

    def _init_runtime(self):
        tab = self._tab
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._key = tab.rank_key
        self._r2f = tab.rank_to_flat.astype(np.int64)
        self._const_orders = None if "counts" in self._a else np.full(tab.T, tab.R, np.int64)
        a = self._a
        self._erasures = "n_prefix" in a
        self._ords = np.asarray(((0,) if self._erasures else ()) + tab.orders, np.int64)
        self._thr = np.ascontiguousarray(a["thresholds"], np.float64)
        self._cbs = np.ascontiguousarray(a["codebooks"], np.int64)
        self._counts = a.get("counts")
        self._base = a.get("base")
        self._bsum = a["base_sum"].tolist() if "base_sum" in a else None
        self._dist = a["dist"].tolist()
        self._T = tab.T
        self._arn = tab.ar_n
        # key3[i, v, j] = global sort rank of bit (i, j) on codebook v
        self._key3 = np.ascontiguousarray(self._key.reshape(tab.V, tab.N, tab.B).transpose(1, 0, 2))
        self._paper_jcamp = self.method == "jcamp" and self.variant == "paper"
        self._n_prefix = int(a["n_prefix"]) if self._erasures else 0
        self._floor = float(a["erasure_floor"]) if self._erasures else math.inf
        if self._erasures:
            # a not-sent sub-vector is "codebook" V: its bits rank after every sent bit, by flat index
            erased = (tab.V * tab.NB + tab.ar_nb).reshape(tab.N, 1, tab.B).astype(self._key3.dtype)
            self._key3 = np.ascontiguousarray(np.concatenate([self._key3, erased], axis=1))
            self._r2f = np.concatenate([self._r2f, tab.ar_nb])

    @property
    def erasures(self) -> bool:
        """True when the trajectory has the erasure prefix ("not sent" states)."""
        return self._erasures

    @property
    def n_erasure_states(self) -> int:
        """How many states at the start of the trajectory leave sub-vectors unsent (0 without
        erasures): state ``n_erasure_states`` is the cheapest that sends every sub-vector."""
        return self._n_prefix

    @property
    def erasure_floor(self) -> float:
        """Budget ``P_tot*gamma`` from which the scaled all-sent state is kept (inf without erasures)."""
        return self._floor

    def prefix_cost_range(self) -> tuple[float, float]:
        """Costs (per unit gamma) of the first erasure state and of the all-sent cheapest state."""
        if not self._erasures:
            raise ValueError("this allocator has no erasure states")
        c = self._a["costs"]
        return float(c[0]), float(c[self._n_prefix])

    @property
    def n_states(self) -> int:
        """Number of states on the greedy trajectory (K+1)."""
        return int(self._a["costs"].size)

    @property
    def thresholds(self) -> np.ndarray:
        """[K+1] running max of the state costs (power per unit gamma); read-only view."""
        t = self._a["thresholds"].view()
        t.setflags(write=False)
        return t

    def state_index(self, p_tot, gamma) -> int:
        """Index of the last greedy state whose cost fits ``p_tot * gamma`` (0 below the cheapest;
        with erasures, counted from the first erasure state, unlike ``Plan.state_index``)."""
        p_tot, gamma = check_budget(p_tot, gamma)
        return self._state_at(p_tot * gamma)

    def _state_at(self, budget: float) -> int:
        return max(int(self._thr.searchsorted(budget, side="right")) - 1, 0)

    # ------------------------------------------------------------------ the product
    def plan(self, p_tot, gamma, *, erasure_floor: float | None = None) -> Plan:
        """Plan for budget ``p_tot`` (float > 0) and channel SNR ``gamma`` (float > 0).

        erasure_floor : overrides the allocator's own (``inf``: always erase below the
        cheapest state; 0: never, i.e. scale as without erasures)."""
        # plain positive finite floats skip the validation (the hot path)
        if not (type(p_tot) is float and type(gamma) is float
                and 0.0 < p_tot < math.inf and 0.0 < gamma < math.inf):
            p_tot, gamma = check_budget(p_tot, gamma)  # converts, or raises with the reason
        b = p_tot * gamma
        k = self._state_at(b)
        if k < self._n_prefix and b >= (self._floor if erasure_floor is None else erasure_floor):
            k = self._n_prefix  # keep every sub-vector, scaled (module erasures: the floor)
        v = self._cbs[k]
        if self._paper_jcamp:
            orders, bo, base, s, warn = self._paper_layout(k, v)  # cached: hand out copies
            return assemble(self._tab, self.method, self.variant, k, v.copy(), orders.copy(), bo.copy(), base, s, p_tot, gamma, warn)
        bo = self._r2f[np.sort(self._key3[self._arn, v].ravel())]
        orders = self._const_orders.copy() if self._const_orders is not None else self._ords.repeat(self._counts[k])
        s = self._bsum[k]
        if s <= b:  # surplus: eq. (47) spreads it evenly (all >= 0) over the used symbols
            powers = self._base[k] / gamma
            if self._erasures and orders[0] == 0:
                used = orders > 0
                powers[used] += (p_tot - s / gamma) / np.count_nonzero(used)
            else:
                powers += (p_tot - s / gamma) / powers.size
            warnings = ()
        else:
            powers, warnings = finish_powers(self._base[k], s, p_tot, gamma, self.variant)
            warnings = tuple(warnings)
        sent = int(orders.sum()) if k < self._n_prefix else None
        # state index counted from the all-sent cheapest state (erasure states are negative),
        # so plans above it are byte-identical to those of the allocator without erasures
        return Plan(v.copy(), orders, powers, bo, self.method, self.variant, p_tot, gamma, self._T, k - self._n_prefix,
                    self._dist[k], warnings, sent)

    def _paper_layout(self, k, v):
        hit = self._cache.get(k)
        if hit is None:
            tab = self._tab
            mhat = self._ords[self._a["mo"][k].astype(np.int64)].reshape(tab.N, tab.B)
            orders, bo, warn = paper_grouping(tab, v, mhat)
            base, s = tab.group_powers(v, orders, bo)
            hit = (orders, bo, base, s, warn)
            self._cache[k] = hit
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return hit

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        """Everything :meth:`from_state` needs, as numpy arrays (``np.savez``-able, no pickle)."""
        tab = self._tab
        out = {
            "format": np.array(FORMAT),
            "version": np.array(VERSION_ERASURES if self._erasures else VERSION, np.int64),
            "method": np.array(self.method),
            "variant": np.array(self.variant),
            "ber_model": np.array(self._model_name),
            "rate": np.array(tab.R, np.int64),
            "m_max": np.array(tab.m_max, np.int64),
            "iter_max": np.array(self.iter_max, np.int64),
            "distortion": tab.D,
            "mu": tab.mu,
            "rank_key": tab.rank_key,
            "rank_to_flat": tab.rank_to_flat,
        }
        if tab.positions:
            out["positions"] = np.array(True)
        for k, v in self._a.items():
            out["traj_" + k] = v
        return {k: np.asarray(v) for k, v in out.items()}

    @classmethod
    def from_state(cls, state, ber_model=None) -> "Allocator":
        """Rebuild from :meth:`state` (a dict or an ``np.load`` result) without recomputing.

        ber_model : needed only for a custom model with the paper JCAMP variant (its
        post-processing runs at plan time); built-in models are found by name.
        """
        try:
            fmt = str(state["format"])
            ver = int(state["version"])
        except (KeyError, TypeError):
            raise ValueError("state: not an Allocator state (missing 'format'/'version')") from None
        if fmt != FORMAT or ver not in (VERSION, VERSION_ERASURES):
            raise ValueError(f"state: expected {FORMAT} version {VERSION} or {VERSION_ERASURES}, got {fmt} version {ver}")
        self = cls.__new__(cls)
        self.method = str(state["method"])
        self.variant = str(state["variant"])
        self.iter_max = int(state["iter_max"])
        self._model_name = str(state["ber_model"])
        if ber_model is not None:
            model = _ber.get_model(ber_model)
        elif self._model_name in ("eq33", "gray-exact"):
            model = _ber.get_model(self._model_name)
        else:
            model = None  # only needed by the paper JCAMP variant
            if self.method == "jcamp" and self.variant == "paper":
                raise ValueError(f"ber_model: state uses custom model {self._model_name!r}; pass it to from_state")
        tab = Tables.__new__(Tables)
        d = np.asarray(state["distortion"], np.float64)
        mu = np.asarray(state["mu"], np.float64)
        rate, m_max = int(state["rate"]), int(state["m_max"])
        tab.D, tab.mu = d, mu
        tab.V, tab.N, tab.B = mu.shape
        tab.NB = tab.N * tab.B
        tab.R, tab.T, tab.m_max, tab.model = rate, tab.NB // rate, m_max, model
        tab.orders = tuple(m for m in ORDERS if m <= m_max)
        tab.n_ord = len(tab.orders)
        tab.ri = tab.orders.index(rate)
        tab.ar_n = np.arange(tab.N)
        tab.ar_nb = np.arange(tab.NB)
        tab.i_of_bit = np.repeat(tab.ar_n, tab.B)
        tab.j_of_bit = np.tile(np.arange(tab.B), tab.N)
        tab.rank_key = np.asarray(state["rank_key"], np.int32)
        tab.positions = bool(state["positions"]) if "positions" in (state.files if hasattr(state, "files") else state) else False
        tab.rank_to_flat = np.asarray(state["rank_to_flat"], np.int32)
        self._tab = tab
        keys = state.files if hasattr(state, "files") else list(state.keys())
        self._a = {k[5:]: np.asarray(state[k]) for k in keys if k.startswith("traj_")}
        for need in ("codebooks", "costs", "thresholds", "dist"):
            if need not in self._a:
                raise ValueError(f"state: missing 'traj_{need}'")
        self._init_runtime()
        return self
