"""Allocators: Allocator == iterative algorithms (ties, extremes), exact-variant
invariants, paper-variant reporting, literal Algorithm 3, persistence, bad input."""
import zlib

import numpy as np
import pytest

from escmvq.core import ber, channels
from escmvq.core.alloc import Allocator, jcamp, jcap, jcap_literal
from escmvq.core.alloc.walkers import Tables
from escmvq.runtime import Allocator as RtAllocator, jcamp as rt_jcamp, jcap as rt_jcap
from alloc_helpers import MU_MIN, Scaled, trained_like_tables

COMBOS = [("jcap", "exact"), ("jcap", "paper"), ("jcamp", "exact"), ("jcamp", "paper")]


def synth(rng, V=5, N=64, B=9, ties=False):
    """Trained-like tables (:func:`alloc_helpers.trained_like_tables`) from ``rng``."""
    return trained_like_tables(lambda k, shape, lo, hi: rng.uniform(lo, hi, shape), V, N, B, ties)


def iterative(method, variant, D, mu, p, g, rate):
    if method == "jcap":
        return jcap(D, mu, p, g, rate=rate, variant=variant)
    return jcamp(D, mu, p, g, rate=rate, variant=variant)


def assert_same(p1, p2, exact_powers=False):
    """The same plan: layout, powers, and what it says of itself (names, warnings, distortion)."""
    assert (p1.method, p1.variant, p1.n_target, p1.warnings) == (p2.method, p2.variant, p2.n_target, p2.warnings)
    assert p1.distortion == p2.distortion
    np.testing.assert_array_equal(p1.codebooks, p2.codebooks)
    np.testing.assert_array_equal(p1.orders, p2.orders)
    np.testing.assert_array_equal(p1.bit_order, p2.bit_order)
    assert p1.state_index == p2.state_index
    if exact_powers:
        np.testing.assert_array_equal(p1.powers, p2.powers)
    else:
        np.testing.assert_allclose(p1.powers, p2.powers, rtol=1e-12, atol=1e-12 * p1.p_tot)


def budgets(rng, A, n):
    """Budgets across the trajectory: random, exactly at thresholds, both extremes."""
    thr = A.thresholds
    out = []
    for _ in range(n):
        g = float(rng.exponential()) + 1e-3
        out.append((float(rng.uniform(0.5, 2.0) * thr[rng.integers(thr.size)] / g + 1e-9), g))
    t = thr[rng.integers(thr.size)]
    out += [(t, 1.0), (np.nextafter(t, 0), 1.0), (np.nextafter(t, np.inf), 1.0)]
    out += [(thr[0] * 1e-3 + 1e-12, 1.0), (thr[0] * 0.5 + 1e-12, 0.7)]  # below the cheapest state
    out += [(thr[-1] * 10 + 1, 1.0), (1e12, 3.0)]  # above the most expensive
    return out


@pytest.mark.parametrize("method,variant", COMBOS)
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_allocator_matches_iterative(method, variant, ties):
    rng = np.random.default_rng(zlib.crc32(f"{method}{variant}{ties}".encode()))
    warned = False
    for trial in range(3):
        V = int(rng.integers(2, 6))
        N = 2 * int(rng.integers(2, 6))
        B = int(rng.choice([4, 6, 8, 9]))
        rate = int(rng.choice([r for r in (2, 4, 6) if (N * B) % r == 0]))
        D, mu = synth(rng, V, N, B, ties)
        A = Allocator(D, mu, rate=rate, method=method, variant=variant)
        assert A.n_states == (V - 1) * N + 1  # every step moves one sub-vector one codebook down
        bs = budgets(rng, A, 6)
        seen = set()
        for p, g in bs:
            p1 = iterative(method, variant, D, mu, p, g, rate)
            p2 = A.plan(p, g)
            assert p2.method == method and p2.variant == variant
            assert_same(p1, p2)
            seen.add(p2.state_index)
            warned |= bool(p2.warnings)
        assert 0 in seen and A.n_states - 1 in seen  # both extremes exercised
    assert warned or variant == "exact"  # the paper plans' warnings compared too


def test_allocator_matches_literal_algorithm3():
    rng = np.random.default_rng(7)
    for ties in (False, True):
        D, mu = synth(rng, 5, 12, 9, ties)
        A = Allocator(D, mu, rate=4, method="jcap", variant="paper")
        for p, g in budgets(rng, A, 10):
            lit = jcap_literal(D, mu, p, g, rate=4)
            assert_same(lit, A.plan(p, g))


@pytest.mark.parametrize("method", ["jcap", "jcamp"])
def test_exact_variant_invariants_over_snr(method):
    rng = np.random.default_rng(11)
    D, mu = synth(rng)
    N, B = mu.shape[1:]
    A = Allocator(D, mu, rate=4, method=method)
    model = ber.EQ33
    for snr in np.linspace(-10, 35, 46):
        g = float(rng.exponential()) + 0.05
        p_tot = channels.snr_db_to_ptot(snr, N * B)
        plan = A.plan(p_tot, g)
        assert plan.valid, plan.problems()
        assert plan.n_symbols == N * B // 4
        assert plan.orders.sum() == N * B and np.all(np.isin(plan.orders, (2, 4, 6, 8)))
        assert np.all(plan.powers >= 0)
        assert plan.powers.sum() == pytest.approx(p_tot, rel=1e-12)
        np.testing.assert_array_equal(np.sort(plan.bit_order), np.arange(N * B))
        assert np.all((plan.codebooks >= 0) & (plan.codebooks < D.shape[0]))
        # BER matching (34): each symbol meets the mean mu of its bits unless the budget is
        # below the cheapest state (then the plan says so)
        mus = mu[plan.codebooks[plan.bit_order // B], plan.bit_order // B, plan.bit_order % B]
        starts = np.concatenate(([0], np.cumsum(plan.orders)[:-1]))
        mbar = np.add.reduceat(mus, starts) / plan.orders
        eps = model.ber(plan.powers * g, plan.orders)
        if plan.warnings:
            assert plan.state_index == 0 and "below the cheapest state" in plan.warnings[0]
            assert np.all(eps >= np.minimum(mbar, model.at_zero(plan.orders)) * (1 - 1e-9))
        else:
            assert np.all(eps <= mbar * (1 + 1e-9))
        # symbols are laid out along ascending mu (the orders ascend with it for JCAMP)
        assert np.all(np.diff(mus) >= 0)
        assert np.all(np.diff(plan.orders) >= 0)


def test_exact_beats_or_matches_paper_and_paper_reports():
    rng = np.random.default_rng(5)
    D, mu = synth(rng)
    N, B = mu.shape[1:]
    saw_negative = saw_count = False
    al = {(m, v): Allocator(D, mu, rate=4, method=m, variant=v) for m, v in COMBOS}
    for snr in np.arange(-8, 31, 1.0):
        p_tot = channels.snr_db_to_ptot(snr, N * B)
        for method in ("jcap", "jcamp"):
            pe = al[method, "exact"].plan(p_tot, 1.0)
            pp = al[method, "paper"].plan(p_tot, 1.0)
            assert pe.valid
            if not pp.valid:
                assert pp.warnings, "the paper variant must say why it leaves the budget"
            if pp.powers.min() < 0:
                saw_negative = True
                assert any("negative" in w for w in pp.warnings)
            forms = f"forms {pp.n_symbols} symbols where the rate needs T = {pp.n_target}"
            if pp.n_symbols != pp.n_target:
                saw_count = True
                assert forms in pp.warnings
            else:
                assert not any(w.startswith("forms ") for w in pp.warnings)
            if method == "jcap":
                # the paper loop charges each symbol once per bit, so it never gets further
                assert pe.state_index >= pp.state_index
        # JCAMP-exact walks JCAP's codebook path with less power per state
        for g in (0.3, 1.0, 2.0):
            pa, pb = al["jcamp", "exact"].plan(p_tot, g), al["jcap", "exact"].plan(p_tot, g)
            assert pa.state_index >= pb.state_index and pa.distortion <= pb.distortion + 1e-12
    assert saw_negative and saw_count  # both flaws of the literal algorithms show up on trained-like tables


def test_plan_bytes_and_persistence(tmp_path):
    rng = np.random.default_rng(3)
    D, mu = synth(rng, 5, 16, 9)
    for method, variant in COMBOS:
        A = Allocator(D, mu, rate=4, method=method, variant=variant)
        f = tmp_path / f"{method}_{variant}.npz"
        np.savez(f, **A.state())
        with np.load(f, allow_pickle=False) as z:
            B_ = Allocator.from_state(z)
        for p, g in budgets(rng, A, 8):
            a, b = A.plan(p, g), B_.plan(p, g)
            assert a.to_bytes() == b.to_bytes() and a.digest() == b.digest()
        # different budgets on different states give different bytes
        lo, hi = A.plan(1e-6, 1.0), A.plan(1e9, 1.0)
        assert lo.digest() != hi.digest()


def test_from_state_does_not_recompute(monkeypatch):
    rng = np.random.default_rng(4)
    D, mu = synth(rng, 4, 8, 6)
    st = Allocator(D, mu, rate=4, method="jcamp").state()

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(Tables, "__init__", boom)
    monkeypatch.setattr(ber.Eq33, "power", boom)
    A = Allocator.from_state(st)
    assert A.plan(1e3, 1.0).valid


def test_swappable_ber_model():
    rng = np.random.default_rng(8)
    D, mu = synth(rng, 4, 8, 6)

    p33 = jcap(D, mu, 500.0, 1.0, rate=4)
    pex = jcap(D, mu, 500.0, 1.0, rate=4, ber_model="gray-exact")
    psc = jcap(D, mu, 500.0, 1.0, rate=4, ber_model=Scaled())
    p_half = jcap(D, mu, 250.0, 1.0, rate=4)
    assert psc.state_index == p_half.state_index  # twice the power need = half the budget
    assert pex.valid and p33.valid
    assert Allocator(D, mu, rate=4, method="jcap", ber_model="gray-exact").state()["ber_model"] == "gray-exact"
    A = Allocator(D, mu, rate=4, method="jcap", ber_model=Scaled())
    assert_same(A.plan(500.0, 1.0), psc)
    A2 = Allocator.from_state(A.state())  # plan() needs no model
    assert_same(A2.plan(500.0, 1.0), psc, exact_powers=True)


def test_iterative_functions_pass_their_defaults_and_model_on():
    """jcap / jcamp / jcap_literal: rate 4 by default (T = N*B/4), the plan named after its
    method and variant, and the BER model given reaching the walk (a model needing twice the
    power walks as the default one does on half the budget, and not as on the same budget)."""
    rng = np.random.default_rng(8)
    D, mu = synth(rng, 4, 8, 6)
    for fn, method, variant in ((jcap, "jcap", "exact"), (jcamp, "jcamp", "exact"), (jcap_literal, "jcap", "paper")):
        plan = fn(D, mu, 500.0, 1.0)
        assert (plan.method, plan.variant, plan.n_target) == (method, variant, 8 * 6 // 4), fn.__name__
        assert_same(plan, fn(D, mu, 500.0, 1.0, rate=4))
        scaled, half, same = fn(D, mu, 500.0, 1.0, ber_model=Scaled()), fn(D, mu, 250.0, 1.0), fn(D, mu, 500.0, 1.0)
        assert scaled.state_index == half.state_index != same.state_index, fn.__name__
        np.testing.assert_array_equal(scaled.orders, half.orders)
    assert jcap(D, mu, 500.0, 1.0).orders.tolist() == [4] * 12


def test_runtime_reexports():
    assert RtAllocator is Allocator and rt_jcap is jcap and rt_jcamp is jcamp


def test_bad_input():
    rng = np.random.default_rng(0)
    D, mu = synth(rng, 3, 4, 4)
    with pytest.raises(ValueError, match="mu: shape"):
        jcap(D, mu[:, :3], 10.0, 1.0)
    with pytest.raises(ValueError, match="distortion"):
        jcap(D[0], mu, 10.0, 1.0)
    bad = mu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="mu: contains NaN"):
        jcamp(D, bad, 10.0, 1.0)
    for val in (0.0, 0.6, -0.1):
        bad[0, 0, 0] = val
        with pytest.raises(ValueError, match=r"mu: values must lie in \(0, 0.5\]"):
            Allocator(D, bad)
    Dn = D.copy()
    Dn[1, 1] = np.nan
    with pytest.raises(ValueError, match="distortion: contains NaN"):
        jcap(Dn, mu, 10.0, 1.0)
    for p, g, name in ((0.0, 1.0, "p_tot"), (-1.0, 1.0, "p_tot"), (np.nan, 1.0, "p_tot"), (1.0, 0.0, "gamma"), (1.0, np.inf, "gamma")):
        with pytest.raises(ValueError, match=name):
            jcap(D, mu, p, g)
        with pytest.raises(ValueError, match=name):
            Allocator(D, mu, method="jcap").plan(p, g)
    with pytest.raises(ValueError, match="rate"):
        jcap(D, mu, 10.0, 1.0, rate=3)
    with pytest.raises(ValueError, match="rate"):
        jcamp(D, mu, 10.0, 1.0, rate=8, m_max=6)
    with pytest.raises(ValueError, match="rate"):
        jcap(D, mu[:, :, :3], 10.0, 1.0, rate=8)  # 12 bits: not a multiple of 8
    with pytest.raises(ValueError, match="variant"):
        jcamp(D, mu, 10.0, 1.0, variant="nope")
    with pytest.raises(ValueError, match="method"):
        Allocator(D, mu, method="nope")
    with pytest.raises(ValueError, match="m_max"):
        jcamp(D, mu, 10.0, 1.0, m_max=10)
    with pytest.raises(ValueError, match="state"):
        Allocator.from_state({"format": np.array("x"), "version": np.array(1)})


def test_plan_through_the_channel_meets_its_ber_targets():
    """End to end: bits -> map_frame -> Rayleigh-free AWGN with the plan's powers ->
    equalise -> demap_frame; the measured BER matches (33) at each symbol's power and
    stays at or below the mean mu the plan promised its bits."""
    rng = np.random.default_rng(21)
    D, mu = synth(rng, 5, 64, 9)
    N, B = mu.shape[1:]
    from escmvq.core import qam

    for method in ("jcap", "jcamp"):
        plan = Allocator(D, mu, rate=4, method=method).plan(channels.snr_db_to_ptot(6.0, N * B), 1.0)
        assert plan.valid and not plan.warnings
        n = 400
        bits = rng.integers(0, 2, (n, N * B), dtype=np.uint8)
        s = qam.map_frame(bits, plan.orders, plan.bit_order)
        h = channels.awgn_gain(n)
        y = channels.apply(s, h, plan.powers, rng)
        err = qam.demap_frame(channels.equalize(y, h, plan.powers), plan.orders, plan.bit_order) != bits
        sim = err.mean()
        pred = np.repeat(ber.EQ33.ber(plan.powers, plan.orders), plan.orders).mean()
        target = mu[plan.codebooks[np.arange(N)][:, None], np.arange(N)[:, None], np.arange(B)[None, :]].mean()
        sig = np.sqrt(pred / (n * N * B))
        assert abs(sim - pred) < 0.03 * pred + 5 * sig, (method, sim, pred)
        assert sim < target + 5 * sig, (method, sim, target)


def _plan(**kw):
    from escmvq.core.alloc.plan import Plan
    args = dict(codebooks=np.array([0, 2, 1]), orders=np.array([4, 2, 4, 2]), powers=np.array([1.0, 2.0, 3.0, 4.0]),
                bit_order=np.array([3, 1, 2, 0, 5, 4, 7, 6, 8, 11, 10, 9]), method="jcamp", variant="exact",
                p_tot=10.0, gamma=2.0, n_target=4, state_index=7, distortion=1.25)
    args.update(kw)
    return Plan(**args)


def test_plan_checks_messages_bytes_and_repr():
    p = _plan()
    assert p.valid and p.problems() == [] and p.n_symbols == 4 and p.warnings == () and p.sent_bits is None
    assert repr(p) == "Plan(jcamp/exact, N=3, T'=4/4, orders=[2, 2, 0, 0], sum_p=10, D=1.25, state=7, warnings=0)"
    # sum(powers) within 1e-9 relative of p_tot is valid, beyond is not
    assert _plan(powers=np.array([1.0, 2.0, 3.0, 4.0 + 0.9e-8])).valid
    assert _plan(powers=np.array([1.0, 2.0, 3.0, 4.0 - 0.9e-8])).valid
    assert _plan(powers=np.array([1.0, 2.0, 3.0, 4.0 + 1.1e-8])).problems() == ["sum(powers) = 10 != p_tot = 10"]
    assert _plan(powers=np.array([1.0, 2.0, 3.0, 4.0 - 1.1e-8])).problems() == ["sum(powers) = 10 != p_tot = 10"]
    bad = _plan(orders=np.array([4, 2, 4]), powers=np.array([-1.0, 5.0, 6.0]))
    assert bad.problems() == ["forms 3 symbols, the rate needs T = 4", "sum(orders) = 10 != 12 bits to send",
                              "negative power (min -1)"]
    assert not bad.valid
    assert _plan(powers=np.array([0.0, 0.0, 0.0, 10.0])).valid  # zero power is not negative
    # erasures: only sent_bits of bit_order are carried; an unused channel use has order 0
    assert _plan(orders=np.array([4, 2, 2, 0]), sent_bits=8).valid
    assert _plan(orders=np.array([4, 2, 4, 2]), sent_bits=8).problems() == ["sum(orders) = 12 != 8 bits to send"]
    b = p.to_bytes()
    head = b"ESCMVQ-PLAN\x01" + np.array([3, 4, 12, 7], "<i8").tobytes()
    assert b == (head + np.array([0, 2, 1], "<i2").tobytes() + np.array([4, 2, 4, 2], "<i1").tobytes()
                 + np.array([3, 1, 2, 0, 5, 4, 7, 6, 8, 11, 10, 9], "<i4").tobytes()
                 + np.array([1.0, 2.0, 3.0, 4.0], "<f8").tobytes())
    import hashlib
    assert p.digest() == hashlib.sha256(b).hexdigest()
    assert _plan(state_index=-2).to_bytes() != b


def test_finish_powers_surplus_deficit_and_messages():
    from escmvq.core.alloc.plan import finish_powers
    base = np.array([1.0, 3.0])  # per unit gamma; sum 4
    # surplus (b = p_tot * gamma = 6 >= 4): (47) spreads the gap evenly, both variants
    for variant in ("exact", "paper"):
        p, w = finish_powers(base, 4.0, 3.0, 2.0, variant)
        np.testing.assert_allclose(p, [0.5 + 0.5, 1.5 + 0.5])
        assert w == [] and abs(p.sum() - 3.0) < 1e-12
    p, w = finish_powers(base, 4.0, 2.0, 2.0, "exact")  # exactly the need: no warning
    np.testing.assert_allclose(p, [0.5, 1.5])
    assert w == []
    # deficit, paper: (47) as written, here one power negative
    p, w = finish_powers(base, 4.0, 0.5, 2.0, "paper")
    np.testing.assert_allclose(p, [0.5 - 0.75, 1.5 - 0.75])
    assert w == ["budget below the chosen state's need (2 > p_tot 0.5): eq. (47) subtracts the deficit evenly",
                 "negative symbol power -0.25 (eq. (47))"]
    p, w = finish_powers(base, 4.0, 1.5, 2.0, "paper")  # deficit without a negative power
    np.testing.assert_allclose(p, [0.5 - 0.25, 1.5 - 0.25])
    assert w == ["budget below the chosen state's need (2 > p_tot 1.5): eq. (47) subtracts the deficit evenly"]
    p, w = finish_powers(base, 4.0, 1.0, 2.0, "paper")  # a power of exactly 0 is not negative
    np.testing.assert_array_equal(p, [0.0, 1.0])
    assert w == ["budget below the chosen state's need (2 > p_tot 1): eq. (47) subtracts the deficit evenly"]
    # deficit, exact: one common scale, sum p_tot, nothing negative
    p, w = finish_powers(base, 4.0, 0.5, 2.0, "exact")
    np.testing.assert_allclose(p, [0.125, 0.375])
    assert w == ["budget below the cheapest state (2 > p_tot 0.5): all powers scaled by 0.25 (-6.02 dB), BER targets missed"]


def test_batched_position_powers_skip_an_order_no_state_uses():
    """The batched per-position inverse equals one ``ber.power_positions`` call per state and order,
    also when an order in the middle (here 4) carries no symbol in any state: the orders above
    it are still computed."""
    from escmvq.core import ber as _ber
    from escmvq.core.alloc.allocator import _batched_position_powers

    rng = np.random.default_rng(5)
    order_rows = [np.array([2, 6, 8, 6, 2]), np.array([8, 2, 6])]
    mus_rows = [rng.uniform(1e-4, 0.2, int(o.sum())) for o in order_rows]
    got = _batched_position_powers(mus_rows, order_rows)
    for mus, o, g in zip(mus_rows, order_rows, got):
        starts = np.concatenate(([0], np.cumsum(o)[:-1]))
        want = [_ber.power_positions(mus[s:s + m][None], int(m))[0] for s, m in zip(starts, o)]
        np.testing.assert_array_equal(g, want)
