"""Erasure-aware allocation (``Allocator(erasure_distortion=...)``), the flip-cost bit layout
and the per-position power model: invariants, agreement with the allocator without
erasures above its cheapest state, the floor chosen on the distortion objective."""
import numpy as np
import pytest

from escmvq.core import ber, pvq
from escmvq.core.alloc import Allocator
from escmvq.core.alloc.erasures import choose_erasure_floor, plan_distortion

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


def _objective(seed, n):
    """V = 3 codebooks of N = 8 sub-vectors (B = 5, D = 2), ``n`` training latents, their mean
    (the erasure substitute) and an erasure-aware JCAP allocator from their table (31)."""
    rng = np.random.default_rng(seed)
    V, N, B, Dd = 3, 8, 5, 2
    cb = rng.standard_normal((V, 2 ** B, Dd)).astype(np.float32)
    zs = _latents(rng, n, N, Dd, cb)
    mean = zs.mean(0)
    de = ((zs - mean) ** 2).sum(-1).mean(0)
    mu = np.broadcast_to(np.array([0.001, 0.01, 0.05])[:, None, None], (V, N, B)).copy()
    A = Allocator(pvq.distortion_table([zs], cb, mu), mu, rate=2, method="jcap", erasure_distortion=de)
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


def test_positions_power_model_meets_targets_in_plans():
    rng, D, mu, de = _tables(10)
    A = Allocator(D, mu, positions=True)
    g = ber.GrayQamExact()
    for b in np.geomspace(A.thresholds[0], A.thresholds[-1], 20):
        p = A.plan(float(b), 1.0)
        mus = mu[p.codebooks[p.bit_order // 9], p.bit_order // 9, p.bit_order % 9]
        s = 0
        for t, m in enumerate(p.orders):
            assert np.all(g.ber_positions(p.powers[t], int(m)) <= mus[s:s + m] * (1 + 1e-9))
            s += m


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
