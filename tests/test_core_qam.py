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


def test_axis_amplitude_rule():
    """The per-axis TS 38.211 amplitude of every label (MSB first) of QPSK, 16-, 64- and
    256-QAM, in units of half the level spacing (the cached tables are built from it once)."""
    want = {1: [1], 2: [1, 3], 3: [3, 1, 5, 7], 4: [5, 7, 3, 1, 11, 9, 13, 15]}  # labels 0.., then their negatives
    for k, mags in want.items():
        labels = ((np.arange(1 << k)[:, None] >> (k - 1 - np.arange(k))) & 1).astype(np.uint8)
        amp = qam._axis_amplitude(labels)
        assert amp.dtype == np.int64
        np.testing.assert_array_equal(amp, mags + [-a for a in mags])


def test_pam_labels_gray_and_ascending():
    np.testing.assert_array_equal(qam.pam_labels(2), [[1], [0]])
    np.testing.assert_array_equal(qam.pam_labels(4), [[1, 1], [1, 0], [0, 0], [0, 1]])
    assert qam.pam_labels(4).dtype == np.uint8
    with pytest.raises(ValueError, match=r"^m: expected one of \(2, 4, 6, 8\), got 3$"):
        qam.pam_labels(3)


def test_messages_and_output_dtypes():
    y = np.array([0.3 - 0.9j, -1.2 + 0.1j])
    assert qam.demap_hard(y, 4).dtype == np.uint8
    with pytest.raises(ValueError, match=r"^m: expected one of \(2, 4, 6, 8\), got 'x'$"):
        qam.constellation("x")
    with pytest.raises(ValueError, match=r"^bits: expected an integer/bool array of 0/1, got dtype float64$"):
        qam.map_bits(np.zeros((1, 2)), 2)
    with pytest.raises(ValueError, match=r"^mode: expected one of exact, maxlog, got 'soft'$"):
        qam.demap_llr(y, 4, 1.0, "soft")
    with pytest.raises(ValueError, match=r"^noise_var: expected values > 0 \(inf allowed\), got NaN or <= 0$"):
        qam.demap_llr(y, 4, np.nan)
    with pytest.raises(ValueError, match=r"^noise_var: shape \(3,\) does not broadcast to y's shape \(2,\)$"):
        qam.demap_llr(y, 4, np.ones(3))
    bits = np.zeros((1, 4), np.uint8)
    bad = [  # (call, message)
        (lambda: qam.map_frame(bits[0], [2, 2], np.arange(4)), r"^bits: expected \[batch, L\], got shape \(4,\)$"),
        (lambda: qam.map_frame(bits, [[2, 2]], np.arange(4)), r"^orders: expected a 1-D integer array, got shape \(1, 2\) dtype int64$"),
        (lambda: qam.map_frame(bits, [2.0, 2.0], np.arange(4)), r"^orders: expected a 1-D integer array, got shape \(2,\) dtype float64$"),
        (lambda: qam.map_frame(bits, [1, 3], np.arange(4)), r"^orders: values must be in \(2, 4, 6, 8\), got \[1, 3\]$"),
        (lambda: qam.map_frame(bits, [2, 2], np.arange(4)[None]), r"^bit_order: expected a 1-D integer array, got shape \(1, 4\)$"),
        (lambda: qam.map_frame(bits, [2, 2], np.arange(4.0)), r"^bit_order: expected a 1-D integer array, got shape \(4,\)$"),
        (lambda: qam.map_frame(bits, [2, 2], np.arange(3)), r"^bit_order: has 3 entries but sum\(orders\) = 4$"),
        (lambda: qam.map_frame(bits, [2, 2], [0, 1, 1, 3]), r"^bit_order: expected a permutation of 0..L-1$"),
        (lambda: qam.demap_frame(y, [2, 2], np.arange(4)), r"^y: expected \[batch, T\], got shape \(2,\)$"),
        (lambda: qam.demap_frame(y[None], [2, 2, 2], np.arange(6)), r"^y: has 2 symbols but orders has 3$"),
    ]
    for call, msg in bad:
        with pytest.raises(ValueError, match=msg):
            call()


def test_frame_demappers_keep_dtype_mode_and_batch():
    rng = np.random.default_rng(7)
    orders, bit_order = np.array([4, 2, 6]), rng.permutation(12)
    bits = rng.integers(0, 2, (3, 12), dtype=np.uint8)
    y = qam.map_frame(bits, orders, bit_order) + 0.3 * (rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3)))
    hard = qam.demap_frame(y, orders, bit_order)
    assert hard.dtype == np.uint8 and hard.shape == (3, 12)
    nv = np.array([0.2, 0.5, 0.1])
    for mode in qam.LLR_MODES:
        llr = qam.demap_frame_llr(y, orders, bit_order, nv, mode)
        assert llr.dtype == np.float32
        # symbol 0 (16-QAM) carries bits bit_order[0:4], symbol 2 (64-QAM) bit_order[6:12]
        np.testing.assert_array_equal(llr[:, bit_order[:4]], qam.demap_llr(y[:, 0], 4, nv[0], mode))
        np.testing.assert_array_equal(llr[:, bit_order[6:]], qam.demap_llr(y[:, 2], 6, nv[2], mode))
    # exact LLRs of a [batch, T] block (not square) equal those of each row
    full = qam.demap_llr(y[:, :2], 6, 0.3, "exact")
    for r in range(3):
        np.testing.assert_array_equal(full[r], qam.demap_llr(y[r, :2], 6, 0.3, "exact"))
    assert qam.frame_slices(np.zeros(0, np.int64)) == []
    assert qam.map_frame(np.zeros((2, 0), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (2, 0)
