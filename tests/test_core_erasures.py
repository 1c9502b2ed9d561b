"""Erasure-aware allocation (``Allocator(erasure_distortion=...)``), the flip-cost bit layout
and the per-position power model: invariants, agreement with the allocator without
erasures above its cheapest state, the floor chosen on the distortion objective."""
import itertools
import math

import numpy as np
import pytest

from escmvq.core import ber, pvq
from escmvq.core.alloc import Allocator
from escmvq.core.alloc.erasures import choose_erasure_floor, fit_counts, plan_distortion, prefix_states
from escmvq.core.alloc.walkers import Tables

from test_core_alloc import synth


def _tables(seed=0, N=64, B=9):
    rng = np.random.default_rng(seed)
    D, mu = synth(rng, N=N, B=B)
    de = D[-1] * rng.uniform(1.3, 2.5, N)
    return rng, D, mu, de


@pytest.mark.parametrize("method", ["jcamp", "jcap"])
def test_above_cheapest_state_byte_identical(method):
    rng, D, mu, de = _tables(1)
    A, A0 = Allocator(D, mu, method=method, erasure_distortion=de), Allocator(D, mu, method=method)
    c0 = A.prefix_cost_range()[1]
    assert c0 == pytest.approx(A0.thresholds[0])
    for b in np.geomspace(c0, c0 * 50, 200):
        g = float(rng.uniform(0.05, 3))
        p, p0 = A.plan(float(b / g), g), A0.plan(float(b / g), g)
        assert p.to_bytes() == p0.to_bytes() and p.sent_bits is None
    # floor 0 restores the old behaviour (scale all powers) below the cheapest state too
    for b in np.geomspace(c0 * 1e-3, c0, 50, endpoint=False):
        assert A.plan(float(b), 1.0, erasure_floor=0.0).to_bytes() == A0.plan(float(b), 1.0).to_bytes()


@pytest.mark.parametrize("method", ["jcamp", "jcap"])
def test_erasure_plans_keep_the_channel(method):
    rng, D, mu, de = _tables(2)
    V, N, B = mu.shape
    A = Allocator(D, mu, method=method, erasure_distortion=de)
    c_first, c0 = A.prefix_cost_range()
    prev_sent = 0
    for b in np.geomspace(c_first * 0.1, c0, 120, endpoint=False):
        p = A.plan(float(b), 1.0)
        assert p.valid, p.problems()
        sent = p.codebooks < V
        assert p.sent_bits == sent.sum() * B == p.orders.sum()
        assert sent.sum() % 2 == 0 and 2 <= sent.sum() < N  # B odd: pairs of sub-vectors
        assert np.all(p.codebooks[sent] == V - 1) and np.all(p.codebooks[~sent] == V)
        assert p.orders.size == A.plan(float(c0 * 2), 1.0).orders.size  # exactly T symbols
        assert np.all(p.powers[p.orders == 0] == 0) and np.all(p.powers >= 0)
        assert np.isclose(p.powers.sum(), b)
        # the bits carried are exactly those of the sent sub-vectors
        carried = np.sort(p.bit_order[: p.sent_bits]) // B
        np.testing.assert_array_equal(np.unique(carried), np.flatnonzero(sent))
        assert sent.sum() >= prev_sent  # more budget never sends fewer sub-vectors
        prev_sent = sent.sum()
        # model distortion: erased ones cost their substitute's distortion
        assert p.distortion == pytest.approx(D[V - 1, sent].sum() + de[~sent].sum())
    assert prev_sent > N // 2


def test_erasure_state_roundtrip_and_old_state_loads():
    rng, D, mu, de = _tables(3)
    A = Allocator(D, mu, erasure_distortion=de, erasure_floor=123.0)
    st = A.state()
    assert int(st["version"]) == 2
    B2 = Allocator.from_state(st)
    assert B2.erasures and B2.erasure_floor == 123.0
    for b in np.geomspace(1, 1e5, 60):
        assert A.plan(float(b), 0.7).to_bytes() == B2.plan(float(b), 0.7).to_bytes()
    old = Allocator(D, mu).state()
    assert int(old["version"]) == 1 and "positions" not in old
    assert not Allocator.from_state(old).erasures


def test_floor_keeps_the_scaled_state():
    rng, D, mu, de = _tables(4)
    A = Allocator(D, mu, erasure_distortion=de)
    c_first, c0 = A.prefix_cost_range()
    b = 0.5 * (c_first + c0)
    assert A.plan(b, 1.0).sent_bits is not None
    p = A.plan(b, 1.0, erasure_floor=b)  # at the floor: all sent, scaled
    assert p.sent_bits is None and p.state_index == 0 and "below the cheapest state" in p.warnings[0]
    assert A.plan(b, 1.0, erasure_floor=np.nextafter(b, np.inf)).sent_bits is not None


def test_bad_erasure_input():
    rng, D, mu, de = _tables(5)
    with pytest.raises(ValueError, match="erasure_distortion"):
        Allocator(D, mu, erasure_distortion=de[:-1])
    with pytest.raises(ValueError, match="variant"):
        Allocator(D, mu, variant="paper", erasure_distortion=de)
    with pytest.raises(ValueError, match="erasure_floor"):
        Allocator(D, mu, erasure_distortion=de, erasure_floor=-1.0)


def _latents(rng, n, N, D, codebooks):
    return (codebooks[0][rng.integers(0, codebooks.shape[1], (n, N))] + 0.05 * rng.standard_normal((n, N, D))).astype(np.float32)


def _objective(seed, n, mu=(0.001, 0.01, 0.05), erasure_floor=None):
    """V = 3 codebooks of N = 8 sub-vectors (B = 5, D = 2), ``n`` training latents, their mean
    (the erasure substitute) and an erasure-aware JCAP allocator from their table (31), with
    target ``mu[v]`` for every bit on codebook v."""
    rng = np.random.default_rng(seed)
    V, N, B, Dd = 3, 8, 5, 2
    cb = rng.standard_normal((V, 2 ** B, Dd)).astype(np.float32)
    zs = _latents(rng, n, N, Dd, cb)
    mean = zs.mean(0)
    de = ((zs - mean) ** 2).sum(-1).mean(0)
    mu = np.broadcast_to(np.array(mu, np.float64)[:, None, None], (V, N, B)).copy()
    A = Allocator(pvq.distortion_table([zs], cb, mu), mu, rate=2, method="jcap", erasure_distortion=de,
                  erasure_floor=erasure_floor)
    return cb, zs, mean, A


def test_plan_distortion_and_floor_on_the_objective():
    cb, zs, mean, A = _objective(6, 300)
    V = cb.shape[0]
    c_first, c0 = A.prefix_cost_range()
    # an erasure plan: the erased sub-vectors cost exactly ||z - mean||^2
    p = A.plan(float(c_first * 1.01), 1.0)
    erased = p.codebooks == V
    assert erased.any()
    got = plan_distortion(p, zs, cb, mean)
    sent_part = got - ((zs[:, erased] - mean[erased]) ** 2).sum((1, 2)).mean()
    assert 0 < sent_part < ((zs[:, ~erased] - mean[~erased]) ** 2).sum((1, 2)).mean()
    # a plan with plenty of power: distortion close to the clean quantisation error
    hi = A.plan(float(c0 * 1e4), 1.0)
    clean = sum(((zs[:, i] - cb[v][pvq.nearest_codeword(zs[:, i], cb[v])]) ** 2).sum(-1).mean()
                for i, v in enumerate(hi.codebooks))
    assert plan_distortion(hi, zs, cb, mean) == pytest.approx(clean, rel=1e-3)
    floor, rows = choose_erasure_floor(A, zs, cb, mean, n_grid=12)
    assert c_first <= floor <= c0
    for r in rows:  # the kept plan is never worse than scaling on the grid
        kept = r["scaled"] if r["b"] >= floor else r["erasure"]
        assert kept <= max(r["scaled"], r["erasure"]) and kept == min(r["scaled"], r["erasure"]) or r["b"] < floor


def test_flip_cost_matches_brute_force():
    rng = np.random.default_rng(8)
    V, B, Dd, N = 2, 4, 3, 5
    cb = rng.standard_normal((V, 2 ** B, Dd))
    prior = rng.dirichlet(np.ones(2 ** B), (V, N))
    F = pvq.flip_cost(cb, prior)
    for v in range(V):
        for i in range(N):
            for j in range(B):
                want = sum(prior[v, i, k] * ((cb[v, k] - cb[v, k ^ (1 << (B - 1 - j))]) ** 2).sum() for k in range(2 ** B))
                assert F[v, i, j] == pytest.approx(want)
    np.testing.assert_allclose(pvq.flip_cost(cb)[:, 0], F.mean(1) * 0 + pvq.flip_cost(cb)[:, 0])


def test_flip_cost_layout_puts_costly_bits_on_sign_positions():
    rng, D, mu, de = _tables(9)
    V, N, B = mu.shape
    mu = np.broadcast_to(mu.min(axis=(1, 2))[:, None, None], mu.shape) * (1 + 1e-6 * rng.random(mu.shape))
    F = rng.uniform(1, 10, mu.shape)
    A = Allocator(D, mu, method="jcap", flip_cost=F)
    p = A.plan(float(A.thresholds[-1] * 2), 1.0)
    f = F[p.codebooks[p.bit_order // B], p.bit_order // B, p.bit_order % B].reshape(-1, 4)  # 16-QAM symbols
    same_mu = np.isclose(mu[p.codebooks[p.bit_order // B], p.bit_order // B, p.bit_order % B].reshape(-1, 4).std(1), 0,
                         atol=1e-3 * mu.min())
    # the sign bits (b0, b1) carry the costlier flips of each symbol
    assert np.all(f[same_mu][:, :2].min(1) >= f[same_mu][:, 2:].max(1) - 1e-12)
    A0 = Allocator(D, mu, method="jcap")
    p0 = A0.plan(float(A.thresholds[-1] * 2), 1.0)
    f0 = F[p0.codebooks[p0.bit_order // B], p0.bit_order // B, p0.bit_order % B].reshape(-1, 4)
    assert not np.all(f0[same_mu][:, :2].min(1) >= f0[same_mu][:, 2:].max(1))  # without it, no such order


@pytest.mark.parametrize("erasures", [False, True], ids=["plain", "erasures"])
def test_positions_power_model_meets_targets_in_plans(erasures):
    """With ``positions=True`` every sent bit meets its own target on its own Gray position, in
    the all-sent states and in the erasure states (whose powers come from ``Tables.symbol_powers``)."""
    rng, D, mu, de = _tables(10)
    A = Allocator(D, mu, positions=True, erasure_distortion=de if erasures else None)
    assert A.n_erasure_states > 0 if erasures else A.n_erasure_states == 0
    g = ber.GrayQamExact()
    for b in np.geomspace(A.thresholds[0], A.thresholds[-1], 20 + 20 * erasures):
        p = A.plan(float(b), 1.0)
        sent = p.bit_order[:int(p.orders.sum())]
        assert np.all(p.codebooks[sent // 9] < D.shape[0])
        mus = mu[p.codebooks[sent // 9], sent // 9, sent % 9]
        s = 0
        for t, m in enumerate(p.orders):
            if m:
                assert np.all(g.ber_positions(p.powers[t], int(m)) <= mus[s:s + m] * (1 + 1e-9))
            s += m
        assert s == sent.size


def test_plan_distortion_adds_every_codebook_and_the_erased():
    """A plan mixing two sent codebooks and erasures, with power enough that no bit flips:
    plan_distortion is the clean quantisation error of each sent sub-vector under its own
    codebook plus ||z - mean||^2 of each erased one, summed over all of them."""
    import dataclasses

    cb, zs, mean, A = _objective(11, 200)
    V = cb.shape[0]
    hi = A.plan(float(A.prefix_cost_range()[1] * 1e6), 1.0)
    mixed = np.array([0, 1, 0, 1, V, 0, 1, V], np.int64)  # the bits stay where the plan put them
    p = dataclasses.replace(hi, codebooks=mixed)
    want = 0.0
    for i, v in enumerate(mixed.tolist()):
        if v == V:
            want += ((zs[:, i] - mean[i]) ** 2).sum(-1).mean()
        else:
            want += ((zs[:, i] - cb[v][pvq.nearest_codeword(zs[:, i], cb[v])]) ** 2).sum(-1).mean()
    assert plan_distortion(p, zs, cb, mean) == pytest.approx(want, rel=1e-3)


def test_prefix_states_enter_sub_vectors_by_their_ratio_one_at_a_time_for_even_b():
    """B even: state j sends j sub-vectors (j = 1 .. N-1), on codebook V-1, the j with the best
    ratio of distortion drop ``de - D[V-1]`` to order-R power. Every bit of codebook V-1 has one
    target, so that power is the same for all and the drop alone orders them; the drops' order
    differs from the index order and from the orders of ``de + D[V-1]``, ``de - D[V-2]`` and of
    the drop over codebook V-2's powers (its targets differ per sub-vector)."""
    V, N, B = 2, 6, 4
    entry = [3, 0, 5, 1, 4, 2]  # by decreasing drop
    drop = np.empty(N)
    drop[entry] = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    D1 = np.array([1.0, 9.0, 3.0, 2.0, 8.0, 4.0])
    D = np.stack([0.5 * D1, D1])
    mu = np.empty((V, N, B))
    mu[1] = 0.01
    mu[0] = np.array([1e-4, 1e-3, 1e-2, 1e-5, 1e-3, 1e-4])[:, None]
    st = Allocator(D, mu, erasure_distortion=D1 + drop).state()
    n = int(st["traj_n_prefix"])
    assert n == N - 1
    for j, v in enumerate(st["traj_codebooks"][:n], 1):
        assert sorted(np.flatnonzero(v < V).tolist()) == sorted(entry[:j])
        assert np.all(v[entry[:j]] == V - 1) and np.all(v[entry[j:]] == V)


def test_prefix_states_refuse_an_odd_count_of_odd_sub_vectors():
    """B odd: sub-vectors are sent in pairs, so N must be even (no allocator accepts N*B odd,
    hence the tables directly)."""
    tab = Tables(np.ones((1, 5)), np.full((1, 5, 5), 0.01), 2, 8, ber.EQ33)
    with pytest.raises(ValueError) as e:
        prefix_states(tab, np.full(5, 2.0), 50)
    assert str(e.value) == "erasures: N = 5 sub-vectors of B = 5 bits cannot be sent in whole symbols in pairs"


def _layouts(T, bits, orders):
    """Every count vector over ``orders`` of ``T`` symbols carrying ``bits`` bits."""
    for c in itertools.product(range(T + 1), repeat=len(orders) - 1):
        if sum(c) <= T and sum(m * k for m, k in zip(orders[1:], c)) == bits:
            yield np.array((T - sum(c),) + c)


@pytest.mark.parametrize("T, bits", [(2, 6), (2, 8), (6, 36)])
def test_fit_counts_reaches_the_least_power_layout(T, bits):
    """Bits of one target: the per-bit proxy is then the layout's power (46). Near mu = 1/2 the
    power per bit of (33) is not monotone in the order (QPSK and 256-QAM cost least, 16-QAM
    most), so the most even layout is not the cheapest and the pair moves must go down to order
    0 and up to the top order; here they reach the least power of all layouts (brute force)."""
    tab = Tables(np.ones((1, 1)), np.full((1, 1, 2), 0.01), 4, 8, ber.EQ33)
    orders = (0,) + tab.orders
    mus = np.full(bits, 0.5)

    def power(c):
        return float(tab.symbol_powers(mus, np.repeat(np.array(orders[1:]), c[1:])).sum())

    c = fit_counts(tab, mus, T, orders, 50)
    assert c.dtype == np.int64 and c.sum() == T and int((c * np.array(orders)).sum()) == bits
    assert power(c) == pytest.approx(min(power(lay) for lay in _layouts(T, bits, orders)), abs=1e-12)


def test_erasure_plans_meet_the_mean_target_of_each_symbols_bits():
    """Each used symbol of an erasure plan gets at least the power (46) its own bits' mean target
    needs, and exactly that at a budget equal to its state's cost (no surplus): the prefix
    states' powers are computed on the bits the plan sends, grouped as it sends them."""
    rng, D, mu, de = _tables(12, N=16)
    V, N, B = mu.shape
    A = Allocator(D, mu, erasure_distortion=de)
    st = A.state()
    costs, n = st["traj_costs"], int(st["traj_n_prefix"])
    at_cost = [float(c) for c, t in zip(costs[:n], A.thresholds[:n]) if c == t]
    assert len(at_cost) > n // 2
    c_first, c0 = A.prefix_cost_range()
    for b in at_cost + np.geomspace(c_first, c0, 25, endpoint=False).tolist():
        p = A.plan(b, 1.0)
        assert p.sent_bits is not None
        bo = p.bit_order[: p.sent_bits]
        mus = mu[p.codebooks[bo // B], bo // B, bo % B]
        s = 0
        for t, m in enumerate(p.orders.tolist()):
            if m:
                got, target = ber.EQ33.ber(np.array([p.powers[t]]), m)[0], mus[s:s + m].mean()
                assert got <= target * (1 + 1e-9)
                if b in at_cost and p.powers[t] > 0:  # power 0: (33)'s BER at q = 0 already meets it
                    assert got == pytest.approx(target, rel=1e-9)
                s += m


def test_plan_distortion_depends_on_power_times_gamma():
    """The flips follow the SNR ``q = p_t * gamma``: the plans for ``(b / g, g)`` and ``(b, 1)``
    (the same state, powers scaled by 1/g) deliver the same distortion."""
    cb, zs, mean, A = _objective(6, 100)
    c_first, c0 = A.prefix_cost_range()
    for b in (c_first * 1.5, c0 * 0.95, c0 * 2):
        want = plan_distortion(A.plan(float(b), 1.0), zs, cb, mean)
        for g in (0.25, 4.0):
            assert plan_distortion(A.plan(float(b / g), g), zs, cb, mean) == pytest.approx(want, rel=1e-9)


def test_choose_erasure_floor_scores_both_plans_on_its_grid():
    """The rows: ``n_grid`` budgets log-spaced from the first prefix state's cost (included) to
    the cheapest all-sent state's (excluded) and 0.9, 0.95, 0.98, 0.99 of the latter; at each,
    the erasure plan (floor inf) and the scaled plan (floor 0) at gamma 1, whatever the
    allocator's own floor (here between the two), and the erasure plan's sent sub-vectors.
    Loose targets put the grid below budget 1 too."""
    cb, zs, mean, A = _objective(6, 120, mu=(0.01, 0.1, 0.4), erasure_floor=1.1)
    V, N = cb.shape[0], zs.shape[1]
    c_first, c0 = A.prefix_cost_range()
    assert c_first < 1 < 1.1 < c0
    n_grid = 8
    floor, rows = choose_erasure_floor(A, zs, cb, mean, n_grid=n_grid)
    bs = np.array([r["b"] for r in rows])
    near = c0 * np.array([0.9, 0.95, 0.98, 0.99])
    assert bs.size == n_grid + near.size and np.all(np.diff(bs) > 0)
    is_near = np.isclose(bs[:, None], near[None], rtol=1e-12, atol=0).any(1)
    assert is_near.sum() == near.size
    logs = bs[~is_near]
    assert logs[0] == pytest.approx(c_first, rel=1e-12) and logs[-1] < c0
    np.testing.assert_allclose(np.diff(np.log(logs)), np.log(c0 / c_first) / n_grid, rtol=1e-9)
    for r in rows:
        pe = A.plan(r["b"], 1.0, erasure_floor=math.inf)
        ps = A.plan(r["b"], 1.0, erasure_floor=0.0)
        assert pe.sent_bits is not None and ps.sent_bits is None
        assert r["erasure"] == plan_distortion(pe, zs, cb, mean)
        assert r["scaled"] == plan_distortion(ps, zs, cb, mean)
        assert r["sent"] == int((pe.codebooks < V).sum()) < N
    assert floor == c0  # with these loose targets scaling never wins


def test_choose_erasure_floor_where_scaling_starts_to_win():
    """Tight targets: just below the cheapest all-sent state the scaled plan misses them by
    little and beats erasing, lower down it does not. The floor is the grid budget from which
    the scaled plan is no worse at every grid point above; the default grid has 24 + 4 points."""
    cb, zs, mean, A = _objective(6, 120, mu=(1e-4, 1e-3, 1e-2))
    c_first, c0 = A.prefix_cost_range()
    floor, rows = choose_erasure_floor(A, zs, cb, mean)
    bs = [r["b"] for r in rows]
    assert len(rows) == 24 + 4
    assert c_first < floor < c0 and floor in bs
    k = bs.index(floor)
    assert all(r["scaled"] <= r["erasure"] for r in rows[k:])
    assert rows[k - 1]["scaled"] > rows[k - 1]["erasure"]


def test_plan_distortion_for_the_soft_receiver():
    """With the label prior, plan_distortion scores the soft receiver's posterior mean: never
    above the hard score, and a scaled plan deep below its targets costs about what sending
    nothing costs (the posterior tends to the prior) where hard decoding costs twice that; with
    plenty of power both are the clean quantisation error. So the floor from which scaling is
    kept drops (here to about the first prefix state)."""
    cb, zs, mean, A = _objective(6, 300)
    V, K, N = cb.shape[0], cb.shape[1], zs.shape[1]
    prior = np.stack([np.stack([np.bincount(pvq.nearest_codeword(zs[:, i], cb[v]), minlength=K) + 1.0
                                for i in range(N)]) for v in range(V)])
    prior /= prior.sum(-1, keepdims=True)
    nothing = ((zs - mean) ** 2).sum((1, 2)).mean()
    c_first, c0 = A.prefix_cost_range()
    for b in np.geomspace(c_first * 0.3, c0, 6):
        for floor in (0.0, math.inf):
            p = A.plan(float(b), 1.0, erasure_floor=floor)
            assert plan_distortion(p, zs, cb, mean, prior) < plan_distortion(p, zs, cb, mean)
    deep = A.plan(float(c_first * 0.3), 1.0, erasure_floor=0.0)
    assert plan_distortion(deep, zs, cb, mean) > 1.8 * nothing
    assert plan_distortion(deep, zs, cb, mean, prior) < nothing
    hi = A.plan(float(c0 * 1e4), 1.0)
    assert plan_distortion(hi, zs, cb, mean, prior) == pytest.approx(plan_distortion(hi, zs, cb, mean), rel=1e-6)
    hard_floor = choose_erasure_floor(A, zs, cb, mean)[0]
    soft_floor, rows = choose_erasure_floor(A, zs, cb, mean, label_prior=prior)
    assert hard_floor == c0 and soft_floor < 1.1 * c_first
    assert all(r["scaled"] <= r["erasure"] for r in rows if r["b"] >= soft_floor)
