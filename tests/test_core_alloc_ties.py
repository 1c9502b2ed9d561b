"""The documented tie rules of the allocators (escmvq.core.alloc.walkers), pinned on
tie-heavy tables: argmax/argmin take the lowest index; bits are sorted by
(mu, flat bit index i*B + j); (P2) swaps only on a strict gain (``p+ < p-``).

The Allocator and the iterative functions share the walkers, so comparing them cannot
catch a changed tie rule; these tests compare against the rule itself."""
import math

import numpy as np
import pytest

from escmvq.core import ber
from escmvq.core.alloc import Allocator, jcamp, jcap, jcap_literal
from escmvq.core.alloc.walkers import JcampPaperWalker, Tables

COMBOS = [("jcap", "exact"), ("jcap", "paper"), ("jcamp", "exact"), ("jcamp", "paper")]


def tie_tables(rng, V=3, N=6, B=4, levels=(0.004, 0.01, 0.03, 0.08)):
    """mu from a handful of values (many exact ties between bits), codebook v's mu >= v-1's."""
    mu = np.sort(rng.choice(levels, (V, N, B)), axis=0)
    D = np.cumsum(np.full((V, N), 0.5), axis=0)
    return D, mu


def expected_bit_order(mu, codebooks):
    """Flat bits i*B + j sorted by (mu of the bit under the assignment, flat index)."""
    V, N, B = mu.shape
    m = mu[np.asarray(codebooks)[:, None], np.arange(N)[:, None], np.arange(B)[None, :]].ravel()
    return np.array(sorted(range(N * B), key=lambda b: (m[b], b)))


@pytest.mark.parametrize("seed", range(4))
def test_bits_sorted_by_mu_then_lowest_flat_index(seed):
    rng = np.random.default_rng(seed)
    D, mu = tie_tables(rng)
    tab = Tables(D, mu, 4, 8, ber.EQ33)
    for _ in range(5):
        v = rng.integers(0, mu.shape[0], mu.shape[1])
        np.testing.assert_array_equal(tab.sorted_bits(v), expected_bit_order(mu, v))
    # every plan of JCAP and JCAMP-exact lays its bits out in that order; JCAMP-paper at
    # its first state (all orders R, before any (P2) swap) too
    for method, variant in COMBOS:
        A = Allocator(D, mu, rate=4, method=method, variant=variant)
        budgets = [(1e-9, 1.0)] if (method, variant) == ("jcamp", "paper") else \
            [(float(t) * f, 1.0) for t in A.thresholds for f in (1.0, 1.5)]
        for p, g in budgets:
            plan = A.plan(p, g)
            np.testing.assert_array_equal(plan.bit_order, expected_bit_order(mu, plan.codebooks), err_msg=f"{method}/{variant}")


def test_all_equal_mu_keeps_the_natural_bit_order():
    D = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    mu = np.full((2, 3, 4), 0.02)
    for method, variant in COMBOS:
        plan = (jcap if method == "jcap" else jcamp)(D, mu, 1e-6, 1.0, rate=4, variant=variant)
        np.testing.assert_array_equal(plan.bit_order, np.arange(12), err_msg=f"{method}/{variant}")
    np.testing.assert_array_equal(jcap_literal(D, mu, 1e-6, 1.0).bit_order, np.arange(12))


def greedy_path(D, mu, rate):
    """Algorithm 3's codebook trajectory written out with the documented rule: the largest
    ratio (51) wins and, among equal ratios, the lowest sub-vector index."""
    V, N, _ = mu.shape
    rowP = ber.EQ33.power(mu, rate).sum(axis=2)
    v = [V - 1] * N
    path = [tuple(v)]
    while True:
        best, best_i = -math.inf, None
        for i in range(N):
            if v[i] == 0:
                continue
            dp = rowP[v[i] - 1, i] - rowP[v[i], i]
            s = math.inf if dp <= 0 else (D[v[i], i] - D[v[i] - 1, i]) / dp
            if s > best:  # strict: an equal later index does not replace an earlier one
                best, best_i = s, i
        if best_i is None:
            return np.array(path)
        v[best_i] -= 1
        path.append(tuple(v))


@pytest.mark.parametrize("method,variant", COMBOS)
def test_identical_subvectors_move_lowest_index_first(method, variant):
    """N identical sub-vectors: every ratio ties, so the trajectory moves sub-vector 0 first,
    then 1, ... (JCAMP's (P1) ranks by the same ratio in the exact variant; in the paper
    variant by (41) at the current orders, which are all R until a swap)."""
    V, N, B = 4, 5, 4
    mu = np.broadcast_to(np.array([0.002, 0.01, 0.04, 0.12])[:, None, None], (V, N, B)).copy()
    D = np.broadcast_to(np.array([1.0, 1.5, 2.5, 4.0])[:, None], (V, N)).copy()
    cbs = Allocator(D, mu, rate=4, method=method, variant=variant).state()["traj_codebooks"]
    want = greedy_path(D, mu, 4)
    if (method, variant) == ("jcamp", "paper"):
        want = want[:2]  # after the first step (P2) changes orders and (41) with it
    np.testing.assert_array_equal(cbs[: len(want)], want)
    np.testing.assert_array_equal(cbs[1], [V - 2] + [V - 1] * (N - 1))


@pytest.mark.parametrize("seed", range(3))
def test_jcap_trajectory_follows_the_rule_on_tie_heavy_tables(seed):
    rng = np.random.default_rng(100 + seed)
    V, N, B = 3, 8, 4
    mu = np.sort(rng.choice([0.004, 0.02, 0.06], (V, N, B)), axis=0)
    mu[:, N // 2:] = mu[:, : N // 2]  # duplicated sub-vectors: exact ties of (51)
    D = np.round(np.cumsum(rng.uniform(0.2, 1.0, (V, N)), axis=0), 1)
    D[:, N // 2:] = D[:, : N // 2]
    want = greedy_path(D, mu, 4)
    for variant in ("exact", "paper"):
        np.testing.assert_array_equal(Allocator(D, mu, rate=4, method="jcap", variant=variant).state()["traj_codebooks"], want)
        np.testing.assert_array_equal(Allocator(D, mu, rate=4, method="jcamp", variant="exact").state()["traj_codebooks"], want)


def _two_bit_walker(iter_max):
    """One sub-vector of two bits with equal mu, at orders 16-QAM and 64-QAM: moving bit 0
    up and bit 1 down just exchanges their orders, so (43)-(44) tie exactly (p+ == p-)."""
    tab = Tables(np.ones((1, 1)), np.full((1, 1, 2), 0.01), 4, 8, ber.EQ33)
    w = JcampPaperWalker(tab, iter_max)
    w.mo[:] = [tab.ri, tab.ri + 1]
    w._derive()
    return w, tab


@pytest.mark.parametrize("iter_max", [1, 2, 3, 1000])
def test_paper_p2_does_not_swap_on_a_tie(iter_max):
    w, tab = _two_bit_walker(iter_max)
    a, b = int(np.argmin(w.up)), int(np.argmax(w.down))
    assert (a, b) == (0, 1) and w.up[a] == w.down[b]  # the tie (not merely close)
    w._p2()
    np.testing.assert_array_equal(w.mo, [tab.ri, tab.ri + 1])


def test_paper_p2_swaps_on_a_strict_gain():
    # bit 1 at 64-QAM with a lower mu than bit 0 at 16-QAM: moving it down saves more than
    # moving bit 0 up costs -> one swap, then the exchanged state ties and stops
    tab = Tables(np.ones((1, 1)), np.array([[[0.05, 0.001]]]), 4, 8, ber.EQ33)
    w = JcampPaperWalker(tab, 1000)
    w.mo[:] = [tab.ri, tab.ri + 1]
    w._derive()
    before = w.cost()
    assert w.up[0] < w.down[1]
    w._p2()
    np.testing.assert_array_equal(w.mo, [tab.ri + 1, tab.ri])
    assert w.cost() < before


@pytest.mark.parametrize("iter_max,want", [(1, [1, 0, -1, 0]), (2, [1, 1, -1, -1])])
def test_paper_p2_ties_between_bits_go_to_the_lowest_index(iter_max, want):
    """(43) argmin of p+ and (44) argmax of p- over bits with equal mu and order: the
    lowest flat index is moved first."""
    tab = Tables(np.ones((1, 1)), np.array([[[0.05, 0.05, 0.001, 0.001]]]), 4, 8, ber.EQ33)
    w = JcampPaperWalker(tab, iter_max)
    assert w.up[0] == w.up[1] and w.down[2] == w.down[3] and w.up[0] < w.down[2]
    w._p2()
    np.testing.assert_array_equal(w.mo - tab.ri, want)


def test_stop_index_is_the_last_state_within_the_budget():
    from escmvq.core.alloc.walkers import stop_index
    thr = np.array([1.0, 2.0, 2.0, 5.0])  # running maximum of the state costs
    # below the cheapest state: state 0; a cost equal to the budget fits; past the last: the last
    for b, want in [(0.5, 0), (1.0, 0), (1.5, 0), (2.0, 2), (4.9, 2), (5.0, 3), (1e9, 3)]:
        assert stop_index(thr, b) == want, b
    assert stop_index(np.array([3.0]), 1.0) == 0 and stop_index(np.array([3.0]), 3.0) == 0


def test_flip_cost_orders_bits_whose_mu_agree_to_three_significant_digits():
    # flat bits 0..7 of one codebook; mu rounded to 3 significant digits:
    # 0.0101 0.0101 0.0102 0.1 0.01 0.01 0.2 0.02 (0.009996 rounds up to the next decade's 0.01)
    mu = np.array([0.0101, 0.01012, 0.0102, 0.1, 0.01, 0.009996, 0.2, 0.02]).reshape(1, 2, 4)
    fc = np.array([1.0, 5, 9, 0, 7, 1, 3, 3]).reshape(1, 2, 4)
    tab = Tables(np.ones((1, 2)), mu, 4, 8, ber.EQ33, flip_cost=fc)
    # by rounded mu; within a tie the costlier flip first
    np.testing.assert_array_equal(tab.sorted_bits(np.zeros(2, np.int64)), [4, 5, 1, 0, 2, 7, 3, 6])
    # without flip costs: (mu, flat index), unrounded
    np.testing.assert_array_equal(Tables(np.ones((1, 2)), mu, 4, 8, ber.EQ33).sorted_bits(np.zeros(2, np.int64)),
                                  [5, 4, 0, 1, 2, 7, 3, 6])


@pytest.mark.parametrize("method,variant", COMBOS)
def test_a_restored_walker_steps_on_as_before(method, variant):
    from escmvq.core.alloc.walkers import make_walker
    rng = np.random.default_rng(5)
    D, mu = tie_tables(rng, levels=(0.004, 0.01, 0.03, 0.08, 0.15))
    D = D + rng.uniform(0, 0.2, D.shape)

    def trail(w, n):
        out = []
        for _ in range(n):
            if not w.step():
                break
            orders, bo, _, s, _ = w.layout()
            out.append((orders.tolist(), bo.tolist(), s))
        return out

    tab = Tables(D, mu, 4, 8, ber.EQ33)
    want = trail(make_walker(tab, method, variant, 10), 8)
    assert len(want) >= 4
    w = make_walker(tab, method, variant, 10)
    trail(w, 2)
    snap = w.snapshot()
    trail(w, 3)
    w.restore(snap)
    assert trail(w, len(want) - 2) == want[2:]


def test_score_is_the_distortion_drop_per_unit_of_extra_power():
    """(41)/(51): gain / dp for any dp > 0, however small (moves costing under one unit of power
    per unit gamma included); a move costing no power or less ranks first (+inf); an ineligible
    sub-vector last (-inf)."""
    D, mu = tie_tables(np.random.default_rng(13))
    tab = Tables(D, mu, 4, 8, ber.EQ33)
    gain = np.array([2.0, 2.0, 2.0, 2.0, 3.0, 1.0])
    dp = np.array([4.0, 1.0, 0.5, 0.0, -1.0, 0.25])
    ok = np.array([True, True, True, True, True, False])
    np.testing.assert_array_equal(tab.score(gain, dp, ok), [0.5, 2.0, 4.0, np.inf, np.inf, -np.inf])


def test_paper_grouping_stops_when_every_bit_is_in_a_symbol():
    """Algorithm 2's grouping forms symbols until the bits run out: with every bit at order 8 it
    forms N*B/8 symbols (fewer than T = N*B/R) and stops there, with no leftover bits and the
    warning that the symbol count misses T."""
    from escmvq.core.alloc.walkers import paper_grouping

    D, mu = tie_tables(np.random.default_rng(14), N=8, B=4)
    tab = Tables(D, mu, 4, 8, ber.EQ33)
    v = np.zeros(tab.N, np.int64)
    orders, bit_order, warnings = paper_grouping(tab, v, np.full((tab.N, tab.B), 8))
    assert orders.tolist() == [8] * (tab.NB // 8) and orders.size < tab.T
    np.testing.assert_array_equal(bit_order, tab.sorted_bits(v))
    assert warnings == [f"forms {tab.NB // 8} symbols where the rate needs T = {tab.T}"]


class _LinearInOrder:
    """A BER model whose symbol power is ``m * k(mu)``: every bit's share ``power / m`` is then
    the same at every order, so every layout of the symbols has the same (P2) proxy, exactly
    (k is a power of two, so the proxy's sums are exact)."""

    def power(self, mu, m):
        return np.asarray(m, np.float64) * np.where(np.asarray(mu) < 0.01, 2.0, 1.0)


def test_exact_p2_moves_only_on_a_strict_gain():
    """JCAMP-exact's (P2) takes a pair move only when it lowers the proxy: with every move tied
    the initial state (all T symbols at order R) is kept."""
    from escmvq.core.alloc.walkers import JcampExactWalker

    D, mu = tie_tables(np.random.default_rng(15))
    tab = Tables(D, mu, 4, 8, _LinearInOrder())
    for iter_max in (1, 10):
        w = JcampExactWalker(tab, iter_max)
        assert w.c.tolist() == [0, tab.T, 0, 0]
        assert w.step()
        assert w.c.tolist() == [0, tab.T, 0, 0]


def test_exact_p2_splits_two_symbols_of_one_order():
    """The pair move a -> a-2, a -> a+2 needs two symbols of order a, and two are enough: with
    T = 2 symbols at order R = 4 it is the only move, and it is taken when it lowers the power
    (two very reliable bits on QPSK, six unreliable ones on 64-QAM), as (P2)'s proxy (each bit's
    share ``eps^-1(mu; m) / m`` of its symbol's power, summed) says it should."""
    D = np.array([[0.0, 0.0], [1.0, 1.0]])
    mu = np.array([[[1e-6, 1e-6, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]]] * 2)
    plan = jcamp(D, mu, 1e6, 1.0, rate=4, variant="exact")
    assert plan.orders.tolist() == [2, 6]
    np.testing.assert_array_equal(plan.bit_order[:2], [0, 1])  # the reliable pair on QPSK

    def proxy(orders):
        m = np.repeat(orders, orders)
        return sum(float(ber.EQ33.power(mu[0].ravel()[plan.bit_order][k], m[k])) / m[k] for k in range(8))

    assert proxy(np.array([2, 6])) < proxy(np.array([4, 4]))


def test_position_powers_are_each_symbols_least_power_for_its_own_bits():
    """With ``positions`` every symbol's power is the least at which each of ITS bits (the next m
    in frame order) meets its target on its own Gray position: checked by the exact per-position
    BER just at and just below the returned power."""
    rng = np.random.default_rng(16)
    orders = np.array([2, 4, 6, 8, 4, 2])
    mus = rng.uniform(1e-4, 0.1, orders.sum())
    tab = Tables(np.ones((1, 1)), np.full((1, 1, 2), 0.01), 4, 8, ber.EQ33, positions=True)
    q = tab.symbol_powers(mus, orders)
    gx = ber.GrayQamExact()
    starts = np.concatenate(([0], np.cumsum(orders)[:-1]))
    for t, m in enumerate(orders):
        own = mus[starts[t]:starts[t] + m]
        assert np.all(gx.ber_positions(q[t], m) <= own * (1 + 1e-6)), t
        assert np.any(gx.ber_positions(q[t] * 0.999, m) > own), t
