"""Precomputed allocator: the greedy trajectory once, then microsecond look-ups.

NOTES.md: every decision of Algorithms 2/3 depends on ``(P_tot, gamma)`` only through
``b = P_tot * gamma`` (see :mod:`escmvq.core.alloc.walkers`). :class:`Allocator` walks
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
from .plan import Plan, finish_powers
from .validate import ORDERS, check_budget
from .walkers import JcampExactWalker, JcampPaperWalker, JcapWalker, Tables, make_walker, paper_grouping

__all__ = ["Allocator"]

FORMAT = "escmvq-allocator"
VERSION = 1


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
    """

    def __init__(self, distortion, mu, rate=4, method="jcamp", variant="exact", m_max=8, *, iter_max=DEFAULT_ITER_MAX, ber_model=None):
        tab, method, variant, iter_max = build_tables(distortion, mu, rate, m_max, method, variant, iter_max, ber_model)
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
            mbars, ords = [], []
            for k in range(K1):
                v = a["codebooks"][k].astype(np.int64)
                orders = self._orders_of(k, a)
                bo = tab.sorted_bits(v)
                mus = tab.mu_state(v)[bo]
                starts = np.concatenate(([0], np.cumsum(orders)[:-1]))
                mbars.append(np.minimum(np.add.reduceat(mus, starts) / orders, 0.5))
                ords.append(orders)
            base = _batched_group_powers(tab.model, mbars, ords)
            a["base"] = np.asarray(base, np.float64)
            a["base_sum"] = np.array([math.fsum(r.tolist()) for r in base])
            if variant == "exact":
                costs = a["base_sum"].tolist()
        a["costs"] = np.asarray(costs, np.float64)
        a["thresholds"] = np.maximum.accumulate(a["costs"])
        a["dist"] = np.array([float(tab.D[c.astype(np.int64), tab.ar_n].sum()) for c in a["codebooks"]])
        self._a = a
        self._init_runtime()

    # ------------------------------------------------------------------ helpers
    def _orders_of(self, k, a=None) -> np.ndarray:
        a = self._a if a is None else a
        tab = self._tab
        if "counts" in a:
            return np.repeat(np.asarray(tab.orders, np.int64), a["counts"][k])
        return np.full(tab.T, tab.R, np.int64)

    def _init_runtime(self):
        tab = self._tab
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._key = tab.rank_key
        self._r2f = tab.rank_to_flat.astype(np.int64)
        self._ib = tab.i_of_bit
        self._arnb = tab.ar_nb
        self._const_orders = None if "counts" in self._a else np.full(tab.T, tab.R, np.int64)
        self._ords = np.asarray(tab.orders, np.int64)
        a = self._a
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
        """Index of the last greedy state whose cost fits ``p_tot * gamma`` (0 below the cheapest)."""
        p_tot, gamma = check_budget(p_tot, gamma)
        return self._state_at(p_tot * gamma)

    def _state_at(self, budget: float) -> int:
        return max(int(self._thr.searchsorted(budget, side="right")) - 1, 0)

    # ------------------------------------------------------------------ the product
    def plan(self, p_tot, gamma) -> Plan:
        """Plan for budget ``p_tot`` (float > 0) and channel SNR ``gamma`` (float > 0)."""
        # plain positive finite floats skip the validation (the hot path)
        if not (type(p_tot) is float and type(gamma) is float
                and 0.0 < p_tot < math.inf and 0.0 < gamma < math.inf):
            p_tot, gamma = check_budget(p_tot, gamma)  # converts, or raises with the reason
        b = p_tot * gamma
        k = self._state_at(b)
        v = self._cbs[k]
        if self._paper_jcamp:
            orders, bo, base, s, warn = self._paper_layout(k, v)  # cached: hand out copies
            return assemble(self._tab, self.method, self.variant, k, v.copy(), orders.copy(), bo.copy(), base, s, p_tot, gamma, warn)
        bo = self._r2f[np.sort(self._key3[self._arn, v].ravel())]
        orders = self._const_orders.copy() if self._const_orders is not None else self._ords.repeat(self._counts[k])
        s = self._bsum[k]
        if s <= b:  # surplus: eq. (47) spreads it evenly (all >= 0)
            powers = self._base[k] / gamma
            powers += (p_tot - s / gamma) / powers.size
            warnings = ()
        else:
            powers, warnings = finish_powers(self._base[k], s, p_tot, gamma, self.variant)
            warnings = tuple(warnings)
        return Plan(v.copy(), orders, powers, bo, self.method, self.variant, p_tot, gamma, self._T, k, self._dist[k], warnings)

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
            "version": np.array(VERSION, np.int64),
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
        if fmt != FORMAT or ver != VERSION:
            raise ValueError(f"state: expected {FORMAT} version {VERSION}, got {fmt} version {ver}")
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
        tab.rank_to_flat = np.asarray(state["rank_to_flat"], np.int32)
        self._tab = tab
        keys = state.files if hasattr(state, "files") else list(state.keys())
        self._a = {k[5:]: np.asarray(state[k]) for k in keys if k.startswith("traj_")}
        for need in ("codebooks", "costs", "thresholds", "dist"):
            if need not in self._a:
                raise ValueError(f"state: missing 'traj_{need}'")
        self._init_runtime()
        return self
