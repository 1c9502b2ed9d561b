"""The allocators' input checks (escmvq.core.alloc.validate), each with its exact message:
what a caller of jcap / jcamp / Allocator sees for a bad table, rate, budget or iteration count."""
import re

import numpy as np
import pytest

from escmvq.core.alloc import Allocator, jcamp, jcap
from escmvq.core.alloc.validate import check_budget, check_iter_max, check_rate, check_tables

D = np.ones((2, 3))
MU = np.full((2, 3, 4), 0.01)


def exact(msg):
    return "^" + re.escape(msg) + "$"


@pytest.mark.parametrize("dist, mu, msg", [
    ([["a", "b", "c"]], MU, "distortion: expected a numeric [V, N] array"),
    (D, [[["a"]]], "mu: expected a numeric [V, N, B] array"),
    (np.ones((0, 3)), MU, "distortion: expected shape [V, N] with V, N >= 1, got (0, 3)"),
    (np.ones((2, 0)), MU, "distortion: expected shape [V, N] with V, N >= 1, got (2, 0)"),
    (np.ones(3), MU, "distortion: expected shape [V, N] with V, N >= 1, got (3,)"),
    (D, np.full((2, 3), 0.01), "mu: expected shape [V, N, B] with B >= 1, got (2, 3)"),
    (D, np.full((2, 3, 0), 0.01), "mu: expected shape [V, N, B] with B >= 1, got (2, 3, 0)"),
    (D, np.full((2, 4, 4), 0.01), "mu: shape (2, 4, 4) disagrees with distortion (2, 3) (expected [2, 3, B])"),
    (np.where(np.eye(2, 3) > 0, np.nan, 1.0), MU, "distortion: contains NaN"),
    (np.where(np.eye(2, 3) > 0, np.inf, 1.0), MU, "distortion: contains inf"),
    (D, np.where(np.arange(4) == 1, np.nan, MU), "mu: contains NaN"),
])
def test_bad_tables(dist, mu, msg):
    with pytest.raises(ValueError, match=exact(msg)):
        check_tables(dist, mu)
    with pytest.raises(ValueError, match=exact(msg)):
        jcap(dist, mu, 10.0, 1.0)


def test_tables_of_one_codebook_one_sub_vector_one_bit_are_fine_and_become_float64():
    d, m = check_tables([[3]], [[[0.25]]])
    assert d.dtype == m.dtype == np.float64 and d.shape == (1, 1) and m.shape == (1, 1, 1)
    d, m = check_tables(np.ones((2, 3), np.int64), MU.astype(np.float32))
    assert d.dtype == m.dtype == np.float64
    assert jcap(np.ones((1, 2)), np.full((1, 2, 2), 0.1), 10.0, 1.0, rate=2).n_target == 2


@pytest.mark.parametrize("rate, m_max, msg", [
    ("x", 8, "rate: expected an even integer in 2..8, got 'x'"),
    (4.5, 8, "rate: 4.5 bits per channel use cannot be reached with orders (2, 4, 6, 8) (expected an even integer in 2..8)"),
    (float("inf"), 8, "rate: inf bits per channel use cannot be reached with orders (2, 4, 6, 8) (expected an even integer in 2..8)"),
    (3, 8, "rate: 3 bits per channel use cannot be reached with orders (2, 4, 6, 8) (expected an even integer in 2..8)"),
    (8, 6, "rate: 8 bits per channel use cannot be reached with orders (2, 4, 6) (expected an even integer in 2..6)"),
    (4, 5, "m_max: expected one of (2, 4, 6, 8), got 5"),
    (6, 8, "rate: N*B = 16 bits is not a multiple of rate 6, so T = N*B/rate is not an integer"),
])
def test_bad_rates(rate, m_max, msg):
    with pytest.raises(ValueError, match=exact(msg)):
        check_rate(rate, m_max, 16)


def test_rate_at_the_highest_order_gives_an_integer_symbol_count():
    r, m, T = check_rate(6, 6, 24)
    assert (r, m, T) == (6, 6, 4) and type(T) is int and type(r) is int
    assert check_rate(8.0, 8, 16) == (8, 8, 2)
    assert jcamp(np.ones((1, 4)), np.full((1, 4, 4), 0.1), 100.0, 1.0, rate=8, m_max=8).orders.tolist() == [8, 8]


@pytest.mark.parametrize("p_tot, gamma, msg", [
    (np.ones(2), 1.0, "p_tot: expected a scalar, got shape (2,)"),
    (1.0, np.ones((1, 1)), "gamma: expected a scalar, got shape (1, 1)"),
    ("x", 1.0, "p_tot: expected a number, got 'x'"),
    (float("nan"), 1.0, "p_tot: is NaN"),
    (1.0, 0.0, "gamma: expected a finite value > 0, got 0.0"),
    (-2, 1.0, "p_tot: expected a finite value > 0, got -2.0"),
    (1.0, float("inf"), "gamma: expected a finite value > 0, got inf"),
])
def test_bad_budgets(p_tot, gamma, msg):
    with pytest.raises(ValueError, match=exact(msg)):
        check_budget(p_tot, gamma)
    with pytest.raises(ValueError, match=exact(msg)):
        Allocator(D, MU, method="jcap").plan(p_tot, gamma)
    assert check_budget(np.float32(2), 3) == (2.0, 3.0)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_iteration_counts(bad):
    with pytest.raises(ValueError, match=exact(f"iter_max: expected a positive int, got {bad!r}")):
        check_iter_max(bad)
    with pytest.raises(ValueError, match="^iter_max: "):
        jcamp(D, MU, 10.0, 1.0, iter_max=bad)
    assert check_iter_max(3.0) == 3 and type(check_iter_max(3.0)) is int


@pytest.mark.parametrize("kw, msg", [
    ({"method": "nope"}, "method: expected one of ('jcamp', 'jcap'), got 'nope'"),
    ({"variant": "nope"}, "variant: expected one of ('exact', 'paper'), got 'nope'"),
    ({"flip_cost": np.ones((2, 3))}, "flip_cost: expected finite values of mu's shape (2, 3, 4), got (2, 3)"),
    ({"flip_cost": np.where(np.arange(4) == 2, np.inf, np.ones((2, 3, 4)))},
     "flip_cost: expected finite values of mu's shape (2, 3, 4), got (2, 3, 4)"),
    ({"variant": "paper", "positions": True}, "positions: the per-position power model needs variant='exact'"),
])
def test_bad_allocator_settings(kw, msg):
    with pytest.raises(ValueError, match=exact(msg)):
        Allocator(D, MU, **kw)


def test_plans_carry_their_budget():
    for plan in (jcap(D, MU, 10.0, 2.5), jcamp(D, MU, 10.0, 2.5), Allocator(D, MU).plan(10.0, 2.5)):
        assert (plan.p_tot, plan.gamma) == (10.0, 2.5)
