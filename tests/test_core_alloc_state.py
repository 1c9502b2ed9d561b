"""Allocator's public surface beyond ``plan``'s choices: ``state_index``, the saved state
(what it records, round trips of every kind: positions, erasures, custom and named BER
models), ``from_state``'s refusals, ``prefix_cost_range``, and the plan's own fields."""
import math

import numpy as np
import pytest

from escmvq.core.alloc import Allocator
from alloc_helpers import Scaled
from test_core_alloc import COMBOS, synth
from test_core_erasures import _tables


def _erasure_tables(seed=0, N=16, B=8):
    """``(D, mu, erasure distortion)`` of test_core_erasures' tables, smaller by default."""
    return _tables(seed, N, B)[1:]


def _assert_same_state(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("erasures", [False, True], ids=["plain", "erasures"])
def test_state_index_is_the_plans_state_counted_from_the_first(erasures):
    D, mu, de = _erasure_tables(1)
    A = Allocator(D, mu, erasure_distortion=de if erasures else None)
    n_prefix = A.n_erasure_states
    thr = A.thresholds
    seen = set()
    for gamma in (0.3, 1.0, 2.5):  # gamma != 1: the budget is p_tot * gamma, not p_tot / gamma
        for b in np.concatenate([np.geomspace(thr[0] * 0.1, thr[-1] * 3, 80), thr]):
            p_tot = float(b / gamma)
            k = A.state_index(p_tot, gamma)
            # the plan without the floor's override is the state the budget reaches
            assert k == A.plan(p_tot, gamma, erasure_floor=math.inf).state_index + n_prefix
            assert k == max(int(np.searchsorted(thr, p_tot * gamma, side="right")) - 1, 0)
            seen.add(k)
    assert {0, A.n_states - 1} <= seen and len(seen) > A.n_states // 2
    assert A.state_index(1, 2) == A.state_index(1.0, 2.0)  # plain numbers are converted
    with pytest.raises(ValueError, match="p_tot"):
        A.state_index(-1.0, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        A.state_index(1.0, 0.0)


@pytest.mark.parametrize("method,variant,positions", [(m, v, False) for m, v in COMBOS]
                         + [(m, "exact", True) for m in ("jcap", "jcamp")])  # positions: exact variant only
def test_state_round_trips_to_the_same_state_and_plans(tmp_path, method, variant, positions):
    rng = np.random.default_rng(5)
    D, mu = synth(rng, 5, 16, 8)
    A = Allocator(D, mu, method=method, variant=variant, positions=positions)
    st = A.state()
    assert bool(st.get("positions", False)) is positions
    np.savez(tmp_path / "a.npz", **st)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        B_ = Allocator.from_state(z)
    _assert_same_state(st, B_.state())  # the restored allocator saves exactly what it was loaded from
    _assert_same_state(st, Allocator.from_state(B_.state()).state())
    for b in np.geomspace(A.thresholds[0] * 0.5, A.thresholds[-1] * 2, 25):
        assert A.plan(float(b), 0.8).to_bytes() == B_.plan(float(b), 0.8).to_bytes()


def test_erasure_state_records_what_it_was_built_from():
    D, mu, de = _erasure_tables(2)
    A = Allocator(D, mu, erasure_distortion=de)
    st = A.state()
    np.testing.assert_array_equal(st["traj_erasure_distortion"], de)
    assert np.issubdtype(st["traj_codebooks"].dtype, np.integer)  # indices, not floats
    assert st["traj_codebooks"].max() == mu.shape[0]  # V marks "not sent"
    _assert_same_state(st, Allocator.from_state(st).state())


def test_erasure_floor_zero_is_a_valid_floor_that_never_erases():
    D, mu, de = _erasure_tables(3)
    A0 = Allocator(D, mu)
    for floor in (0.0, 0.5):
        A = Allocator(D, mu, erasure_distortion=de, erasure_floor=floor)
        assert A.erasure_floor == floor
    A = Allocator(D, mu, erasure_distortion=de, erasure_floor=0.0)
    for b in np.geomspace(A.thresholds[0] * 0.1, A0.thresholds[-1], 40):
        assert A.plan(float(b), 1.0).to_bytes() == A0.plan(float(b), 1.0).to_bytes()
    with pytest.raises(ValueError, match=r"erasure_floor: expected a budget >= 0, got -0\.1"):
        Allocator(D, mu, erasure_distortion=de, erasure_floor=-0.1)


def test_prefix_cost_range_is_the_first_state_and_the_cheapest_all_sent():
    D, mu, de = _erasure_tables(4)
    A, A0 = Allocator(D, mu, erasure_distortion=de), Allocator(D, mu)
    c_first, c0 = A.prefix_cost_range()
    assert c_first == A.thresholds[0] and c_first < c0 == A0.thresholds[0]
    # below c_first even the first erasure state is scaled; from it on nothing is scaled
    assert A.plan(c_first, 1.0).warnings == () and A.plan(c_first * 0.99, 1.0).warnings != ()
    with pytest.raises(ValueError, match="^this allocator has no erasure states$"):
        A0.prefix_cost_range()


def test_n_erasure_states_counts_the_states_that_leave_sub_vectors_unsent():
    D, mu, de = _erasure_tables(5)
    A, A0 = Allocator(D, mu, erasure_distortion=de), Allocator(D, mu)
    assert A0.n_erasure_states == 0
    k = A.n_erasure_states
    V = D.shape[0]
    p = [A.plan(float(c) * (1 + 1e-12), 1.0) for c in A.thresholds]
    assert k > 0 and all(np.any(q.codebooks == V) for q in p[:k]) and all(np.all(q.codebooks < V) for q in p[k:])
    assert A.thresholds[k] == A.prefix_cost_range()[1] == A0.thresholds[0]
    assert Allocator.from_state(A.state()).n_erasure_states == k


def test_from_state_refusals_name_the_problem():
    rng = np.random.default_rng(6)
    D, mu = synth(rng, 4, 8, 6)
    st = Allocator(D, mu).state()
    for bad in ({}, {"format": np.array("x")}, None):
        with pytest.raises(ValueError, match=r"^state: not an Allocator state \(missing 'format'/'version'\)$"):
            Allocator.from_state(bad)
    with pytest.raises(ValueError, match=r"^state: expected .* version 1 or 2, got escmvq.* version 7$"):
        Allocator.from_state({**st, "version": np.array(7)})
    for need in ("codebooks", "costs", "thresholds", "dist"):
        cut = {k: v for k, v in st.items() if k != "traj_" + need}
        with pytest.raises(ValueError, match=f"^state: missing 'traj_{need}'$"):
            Allocator.from_state(cut)


@pytest.mark.parametrize("method,variant", COMBOS)
def test_a_custom_model_is_needed_only_by_the_paper_jcamp(method, variant):
    rng = np.random.default_rng(7)
    D, mu = synth(rng, 4, 8, 6)
    A = Allocator(D, mu, method=method, variant=variant, ber_model=Scaled())
    st = A.state()
    assert str(st["ber_model"]) == "scaled"
    budgets = np.geomspace(A.thresholds[0] * 0.5, A.thresholds[-1] * 2, 20)
    if (method, variant) == ("jcamp", "paper"):  # its layout is finished at plan time, with the model
        with pytest.raises(ValueError, match="^ber_model: state uses custom model 'scaled'; pass it to from_state$"):
            Allocator.from_state(st)
        B_ = Allocator.from_state(st, ber_model=Scaled())
        default = Allocator.from_state({**st, "ber_model": np.array("eq33")})
        assert any(A.plan(float(b), 1.0).to_bytes() != default.plan(float(b), 1.0).to_bytes() for b in budgets)
    else:
        B_ = Allocator.from_state(st)
    for b in budgets:
        assert A.plan(float(b), 1.0).to_bytes() == B_.plan(float(b), 1.0).to_bytes()


def test_named_models_are_found_by_name_for_the_paper_jcamp():
    rng = np.random.default_rng(8)
    D, mu = synth(rng, 4, 8, 6)
    A = Allocator(D, mu, method="jcamp", variant="paper", ber_model="gray-exact")
    A33 = Allocator(D, mu, method="jcamp", variant="paper")
    B_ = Allocator.from_state(A.state())
    budgets = np.geomspace(A.thresholds[0] * 0.5, A.thresholds[-1] * 2, 20)
    for b in budgets:
        assert A.plan(float(b), 1.0).to_bytes() == B_.plan(float(b), 1.0).to_bytes()
    # and the model matters: (33) gives other powers for the same layouts
    assert any(A.plan(float(b), 1.0).to_bytes() != A33.plan(float(b), 1.0).to_bytes() for b in budgets)


@pytest.mark.parametrize("method,variant", COMBOS)
def test_plan_fields_have_the_documented_types(method, variant):
    rng = np.random.default_rng(9)
    D, mu = synth(rng, 4, 8, 6)
    A = Allocator(D, mu, method=method, variant=variant)
    for b in (A.thresholds[0] * 0.5, A.thresholds[-1] * 2):
        p = A.plan(float(b), 1.0)
        assert (p.method, p.variant) == (method, variant)
        assert p.codebooks.dtype == np.int64 and p.orders.dtype == np.int64 and p.powers.dtype == np.float64


def test_plan_budget_checks_for_every_type():
    rng = np.random.default_rng(10)
    D, mu = synth(rng, 4, 8, 6)
    A = Allocator(D, mu)
    ref = A.plan(3.0, 2.0).to_bytes()
    for p, g in ((3, 2.0), (3.0, 2), (np.float32(3), 2.0), (np.float64(3), np.int64(2))):
        assert A.plan(p, g).to_bytes() == ref
    for p, g, name in (("three", 2.0, "p_tot"), (3.0, "two", "gamma"), (math.inf, 1.0, "p_tot"), (1.0, math.inf, "gamma"),
                       (-1, 1.0, "p_tot"), (1.0, 0, "gamma"), (np.array([1.0, 2.0]), 1.0, "p_tot")):
        with pytest.raises(ValueError, match=f"^{name}: "):
            A.plan(p, g)


def test_a_surplus_is_never_spent_on_an_unused_channel_use():
    """Erasure states may leave channel uses empty (order 0); the surplus goes to the used
    ones only, also when just one is empty."""
    D, mu, de = _erasure_tables(1)
    A = Allocator(D, mu, erasure_distortion=de)
    st = A.state()
    n_prefix, thr = A.n_erasure_states, A.thresholds
    unused = st["traj_counts"][:n_prefix, 0]
    ks = [k for k in range(n_prefix) if thr[k + 1] > thr[k]]
    assert 1 in unused[ks] and (unused[ks] > 1).any()
    for k in ks:
        b = 0.5 * (thr[k] + thr[k + 1])  # inside state k: a surplus over its cost
        p = A.plan(float(b), 1.0, erasure_floor=math.inf)
        assert p.state_index == k - n_prefix and (p.orders == 0).sum() == unused[k]
        assert np.all(p.powers[p.orders == 0] == 0) and p.powers.sum() == pytest.approx(b)
    # a budget of exactly a state's cost (p_tot * gamma == cost, p_tot one ulp above cost / gamma):
    # the unused channel uses still get exactly 0, not the rounding residue
    rng, hit = np.random.default_rng(0), 0
    for k in ks:
        s = float(st["traj_costs"][k])
        if unused[k] == 0 or s != thr[k]:
            continue
        for g in rng.uniform(0.1, 3.0, 200):
            p_tot = float(np.nextafter(s / g, math.inf))
            if p_tot * g == s and p_tot - s / g != 0:
                p = A.plan(p_tot, float(g), erasure_floor=math.inf)
                assert p.state_index == k - n_prefix and np.all(p.powers[p.orders == 0] == 0)
                hit += 1
                break
    assert hit >= 3


def test_erasures_need_the_exact_variant():
    D, mu, de = _erasure_tables(9)
    for method in ("jcamp", "jcap"):
        with pytest.raises(ValueError, match=r"^erasure_distortion: erasures need variant='exact' "
                                             r"\(the paper variant has no 'not sent' state\)$"):
            Allocator(D, mu, method=method, variant="paper", erasure_distortion=de)


class _Nameless:
    """A custom BER model without a ``name``: the state calls it "custom"."""

    def ber(self, q, m):
        return Scaled().ber(q, m)

    def power(self, mu, m):
        return Scaled().power(mu, m)


def test_a_nameless_custom_model_is_recorded_as_custom():
    rng = np.random.default_rng(10)
    D, mu = synth(rng, 4, 8, 6)
    st = Allocator(D, mu, method="jcamp", variant="paper", ber_model=_Nameless()).state()
    assert str(st["ber_model"]) == "custom"
    with pytest.raises(ValueError, match="^ber_model: state uses custom model 'custom'; pass it to from_state$"):
        Allocator.from_state(st)
    assert str(Allocator.from_state(st, ber_model=_Nameless()).state()["ber_model"]) == "custom"


def test_the_saved_trajectory_is_compact():
    """The state (a bundle's allocator.npz) stores the trajectory in the narrowest types that hold
    it: codebook indices int16, symbol-order counts int32, the paper JCAMP's orders int8, powers,
    costs and the erasure distortion float64 (also from float32 input); the paper JCAMP keeps no
    per-state powers (its (P2) layout and powers are finished at plan time)."""
    rng = np.random.default_rng(11)
    D, mu = synth(rng, 4, 8, 6)
    ex = Allocator(D, mu).state()
    assert ex["traj_codebooks"].dtype == np.int16 and ex["traj_counts"].dtype == np.int32
    assert ex["traj_base"].dtype == ex["traj_costs"].dtype == np.float64
    pj = Allocator(D, mu, method="jcamp", variant="paper").state()
    assert pj["traj_codebooks"].dtype == np.int16 and pj["traj_mo"].dtype == np.int8
    assert "traj_base" not in pj and "traj_base_sum" not in pj and pj["traj_costs"].dtype == np.float64
    Dd, mud, de = _erasure_tables(12)
    er = Allocator(Dd, mud, erasure_distortion=de.astype(np.float32)).state()
    assert er["traj_erasure_distortion"].dtype == np.float64
