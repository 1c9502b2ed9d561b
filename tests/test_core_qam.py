"""Gray square QAM: the TS 38.211 labelling, round trips, Gray property, LLR signs, frame helpers."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from escmvq.core import qam

ORDERS = (2, 4, 6, 8)


@pytest.mark.parametrize("m", ORDERS)
def test_unit_energy_and_distinct(m):
    c = qam.constellation(m).astype(np.complex128)
    assert c.shape == (2**m,)
    assert abs(np.mean(np.abs(c) ** 2) - 1.0) < 1e-6
    assert np.unique(np.round(c, 5)).size == 2**m
    # square grid, symmetric
    assert abs(c.mean()) < 1e-6


@pytest.mark.parametrize("m", ORDERS)
def test_gray_neighbours_differ_in_one_bit(m):
    c = qam.constellation(m).astype(np.complex128)
    lev = qam.pam_levels(m)
    step = lev[1] - lev[0]
    d = np.abs(c[:, None] - c[None, :])
    nb = np.isclose(d, step, rtol=1e-4)  # horizontal/vertical neighbours
    labels = np.arange(2**m)
    ham = np.array([[bin(a ^ b).count("1") for b in labels] for a in labels])
    assert nb.sum() == 2 * 2 * (2 ** (m // 2)) * (2 ** (m // 2) - 1)
    assert np.all(ham[nb] == 1)


def _ts38211(b: np.ndarray) -> np.ndarray:
    """3GPP TS 38.211 sec. 5.1.3-5.1.5 modulation mapper, written out per order from the
    standard: ``b [n, m]`` (b(i), b(i+1), ... in the standard's order) -> ``[n]`` complex."""
    s = 1.0 - 2.0 * b  # (1 - 2 b(i+k))
    m = b.shape[1]
    if m == 2:  # QPSK
        return (s[:, 0] + 1j * s[:, 1]) / np.sqrt(2)
    if m == 4:  # 16-QAM
        return (s[:, 0] * (2 - s[:, 2]) + 1j * s[:, 1] * (2 - s[:, 3])) / np.sqrt(10)
    if m == 6:  # 64-QAM
        return (s[:, 0] * (4 - s[:, 2] * (2 - s[:, 4])) + 1j * s[:, 1] * (4 - s[:, 3] * (2 - s[:, 5]))) / np.sqrt(42)
    assert m == 8  # 256-QAM
    return (s[:, 0] * (8 - s[:, 2] * (4 - s[:, 4] * (2 - s[:, 6])))
            + 1j * s[:, 1] * (8 - s[:, 3] * (4 - s[:, 5] * (2 - s[:, 7])))) / np.sqrt(170)


@pytest.mark.parametrize("m", ORDERS)
def test_labelling_is_ts38211(m):
    bits = np.array([[(s >> (m - 1 - j)) & 1 for j in range(m)] for s in range(2**m)], np.uint8)
    ref = _ts38211(bits.astype(np.float64))
    np.testing.assert_allclose(qam.map_bits(bits, m), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(qam.constellation(m), ref, rtol=0, atol=1e-6)
    # the receiver inverts the same table: noiseless hard decisions and max-log LLR signs
    np.testing.assert_array_equal(qam.demap_hard(ref, m), bits)
    for mode in qam.LLR_MODES:
        np.testing.assert_array_equal((qam.demap_llr(ref, m, 0.05, mode) < 0).astype(np.uint8), bits)


def test_odd_orders_rejected():
    for m in (1, 3, 5, 7):
        with pytest.raises(ValueError, match="m: expected one of"):
            qam.constellation(m)
        with pytest.raises(ValueError, match="m: expected one of"):
            qam.demap_llr(np.zeros(2, np.complex64), m, 1.0)


@pytest.mark.parametrize("m", ORDERS)
def test_sign_bits(m):
    bits = np.array([[(s >> (m - 1 - j)) & 1 for j in range(m)] for s in range(2**m)], np.uint8)
    s = qam.map_bits(bits, m)
    assert np.all((s.real > 0) == (bits[:, 0] == 0))
    assert np.all((s.imag > 0) == (bits[:, 1] == 0))


@settings(max_examples=30, deadline=None)
@given(m=st.sampled_from(ORDERS), seed=st.integers(0, 2**31), shape=st.lists(st.integers(1, 5), min_size=0, max_size=2))
def test_map_demap_round_trip(m, seed, shape):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=tuple(shape) + (m,), dtype=np.uint8)
    s = qam.map_bits(bits, m)
    assert s.shape == tuple(shape) and s.dtype == np.complex64
    np.testing.assert_array_equal(qam.demap_hard(s, m), bits)
    # small noise does not change decisions; LLR signs agree with bits
    llr = qam.demap_llr(s, m, 0.01)
    assert llr.dtype == np.float32 and llr.shape == bits.shape
    np.testing.assert_array_equal((llr < 0).astype(np.uint8), bits)


@pytest.mark.parametrize("m", ORDERS)
def test_hard_decision_is_nearest_point(m):
    rng = np.random.default_rng(m)
    y = (rng.standard_normal(500) + 1j * rng.standard_normal(500)) * 0.8
    c = qam.constellation(m).astype(np.complex128)
    nearest = np.argmin(np.abs(y[:, None] - c[None, :]), axis=1)
    bits = qam.demap_hard(y, m)
    idx = (bits.astype(int) << (m - 1 - np.arange(m))).sum(-1)
    np.testing.assert_array_equal(idx, nearest)
    # max-log LLR = (min_{b=1} d^2 - min_{b=0} d^2) / N0, brute force
    nv = 0.3
    llr = qam.demap_llr(y, m, nv)
    lab = np.array([[(s >> (m - 1 - j)) & 1 for j in range(m)] for s in range(2**m)])
    d2 = np.abs(y[:, None] - c[None, :]) ** 2
    for j in range(m):
        ref = (d2[:, lab[:, j] == 1].min(1) - d2[:, lab[:, j] == 0].min(1)) / nv
        np.testing.assert_allclose(llr[:, j], ref, rtol=1e-4, atol=1e-4)


def _random_plan(rng, L):
    orders = []
    left = L
    while left:
        m = int(rng.choice([o for o in ORDERS if o <= left]))
        orders.append(m)
        left -= m
    return np.array(orders), rng.permutation(L)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), half=st.integers(1, 60), batch=st.integers(1, 4))
def test_frame_round_trip(seed, half, batch):
    rng = np.random.default_rng(seed)
    L = 2 * half
    orders, bit_order = _random_plan(rng, L)
    bits = rng.integers(0, 2, (batch, L), dtype=np.uint8)
    s = qam.map_frame(bits, orders, bit_order)
    assert s.shape == (batch, orders.size) and s.dtype == np.complex64
    np.testing.assert_array_equal(qam.demap_frame(s, orders, bit_order), bits)
    llr = qam.demap_frame_llr(s, orders, bit_order, 0.01)
    np.testing.assert_array_equal((llr < 0).astype(np.uint8), bits)
    # a symbol sent with no power (infinite noise after equalisation) carries LLR 0
    nv = np.full((batch, orders.size), 0.01)
    nv[:, 0] = np.inf
    llr = qam.demap_frame_llr(s, orders, bit_order, nv)
    pos0 = bit_order[: orders[0]]
    assert np.all(llr[:, pos0] == 0)
    rest = np.setdiff1d(np.arange(L), pos0)
    np.testing.assert_array_equal((llr[:, rest] < 0).astype(np.uint8), bits[:, rest])


def test_frame_layout_symbol_carries_next_bits_msb_first():
    orders = np.array([2, 4])
    bit_order = np.array([5, 0, 1, 2, 3, 4])
    bits = np.array([[1, 0, 1, 1, 0, 0]], np.uint8)
    s = qam.map_frame(bits, orders, bit_order)
    assert s[0, 0] == qam.map_bits(bits[0, [5, 0]], 2)
    assert s[0, 1] == qam.map_bits(bits[0, [1, 2, 3, 4]], 4)


def test_bad_input():
    with pytest.raises(ValueError, match="m"):
        qam.map_bits(np.zeros((3, 3), np.uint8), 3)
    with pytest.raises(ValueError, match="bits"):
        qam.map_bits(np.zeros((3, 2), np.uint8), 4)
    with pytest.raises(ValueError, match="bits"):
        qam.map_bits(np.full((3, 2), 2, np.uint8), 2)
    with pytest.raises(ValueError, match="noise_var"):
        qam.demap_llr(np.zeros(3, np.complex64), 2, 0.0)
    with pytest.raises(ValueError, match="bit_order"):
        qam.map_frame(np.zeros((1, 4), np.uint8), np.array([2, 2]), np.array([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="sum\\(orders\\)"):
        qam.map_frame(np.zeros((1, 6), np.uint8), np.array([2, 2]), np.arange(4))
    with pytest.raises(ValueError, match="orders"):
        qam.demap_frame(np.zeros((1, 2), np.complex64), np.array([3, 1]), np.arange(4))
