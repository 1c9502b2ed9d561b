"""The allocator adapter: make_allocator forwards every setting; PlanCache converts, checks,
caches (LRU by the exact float64 bits of (P_tot, gamma)) and evicts the oldest plan."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from alloc_helpers import trained_like_tables
from escmvq.core.alloc import Allocator
from escmvq.runtime.alloc_adapter import PlanCache, make_allocator


def _same_state(a, b):
    sa, sb = a.state(), b.state()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_make_allocator_forwards_every_setting():
    rng = np.random.default_rng(3)
    V, N, B = 3, 6, 4
    D, mu = trained_like_tables(lambda k, shape, lo, hi: rng.uniform(lo, hi, shape), V=V, N=N, B=B)
    extra = dict(erasure_distortion=D[-1] * 2.0, erasure_floor=5.0, flip_cost=rng.uniform(1, 9, (V, N, B)),
                 positions=True)
    _same_state(make_allocator(D, mu, 2, "jcamp", "exact", m_max=6, **extra),
                Allocator(D, mu, rate=2, method="jcamp", variant="exact", m_max=6, **extra))
    _same_state(make_allocator(D, mu, 2, "jcamp", "exact"), Allocator(D, mu, rate=2, method="jcamp", variant="exact"))
    _same_state(make_allocator(D, mu, 2, "jcap", "paper", m_max=6), Allocator(D, mu, rate=2, method="jcap", variant="paper"))


class _Plans:
    """A stand-in allocator: plan k (k = 0, 1, ...) for each new (P_tot, gamma), counted."""

    def __init__(self, **fields):
        self.calls, self.fields = 0, fields

    def plan(self, p_tot, gamma):
        self.calls += 1
        f = dict(codebooks=np.arange(3, dtype=np.int32), orders=np.array([2, 4], np.int32),
                 powers=np.array([0.5, 1.5], np.float32), bit_order=np.array([5, 4, 3, 2, 1, 0], np.int16),
                 sent_bits=None)
        f.update(self.fields)
        return SimpleNamespace(**f)


def test_plan_cache_converts_and_keeps_the_latest_plans():
    alloc = _Plans()
    cache = PlanCache(alloc, size=2, n_symbols=2, n_bits=6)
    p = cache(10.0, 1.0)
    assert [a.dtype for a in (p.codebooks, p.orders, p.powers, p.bit_order)] == [np.int64, np.int64, np.float64, np.int64]
    assert cache(10.0, 1.0) is p and alloc.calls == 1  # a hit
    cache(10.0, 2.0)
    cache(10.0, 1.0)  # now the most recent
    cache(10.0, 3.0)  # evicts (10, 2), the least recent
    assert alloc.calls == 3
    cache(10.0, 1.0)
    assert alloc.calls == 3
    cache(10.0, 2.0)
    assert alloc.calls == 4
    cb, orders, powers, bit_order = cache.batch(10.0, [1.0, 3.0])
    assert cb.shape == (2, 3) and orders.shape == (2, 2) and powers.shape == (2, 2) and bit_order.shape == (2, 6)


def test_plan_cache_checks_each_new_plan():
    msg = (r"^allocator plan for P_tot=10, gamma=0.5 has 2 symbols carrying 6 bits \(min power {}\); the link needs "
           r"exactly T=2 symbols, L=6 bits and finite powers >= 0 \(export with --variant exact\)$")
    assert PlanCache(_Plans(powers=np.array([0.0, 1.0])), n_symbols=2, n_bits=6)(10.0, 0.5).powers[0] == 0.0
    for fields, pmin in (({"powers": np.array([-1.0, 1.0])}, "-1"), ({"powers": np.array([1.0, np.inf])}, "1")):
        with pytest.raises(ValueError, match=msg.format(pmin)):
            PlanCache(_Plans(**fields), n_symbols=2, n_bits=6)(10.0, 0.5)
    for fields, kw in (({}, dict(n_symbols=3)), ({}, dict(n_bits=7)),
                       ({"orders": np.array([2, 2])}, dict(n_bits=6)),
                       ({"bit_order": np.arange(7)}, dict(n_bits=6))):
        with pytest.raises(ValueError, match="^allocator plan for P_tot=10, gamma=0.5"):
            PlanCache(_Plans(**fields), **kw)(10.0, 0.5)
    # a plan with erasures carries only its sent bits, the bit order still has all L entries
    plan = PlanCache(_Plans(orders=np.array([2, 2]), sent_bits=4), n_symbols=2, n_bits=6)(10.0, 0.5)
    assert plan.orders.tolist() == [2, 2]
    with pytest.raises(ValueError, match="^allocator plan"):
        PlanCache(_Plans(sent_bits=4), n_symbols=2, n_bits=6)(10.0, 0.5)
