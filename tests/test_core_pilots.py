"""Estimated CSI, the numpy parts: pilots and the channel estimate, the QPSK header modem, the
plan header (every state index, CRC-8 detection) and plans both ends derive from it, also in
two separate processes."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from escmvq.core import pilots as P
from escmvq.core import plan_header as ph

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def alloc():
    """The shipped bundle's allocator: JCAMP with the erasure prefix (negative state indices)."""
    from escmvq.runtime.bundle import load_bundle

    return load_bundle(None).allocator


# ---------------------------------------------------------------- pilots and the estimate
def test_pilots_are_fixed_unit_energy_qpsk():
    s = P.pilot_symbols(8)
    assert s.dtype == np.complex64 and s.shape == (8,)
    np.testing.assert_allclose(np.abs(s) ** 2, 1.0, rtol=1e-6)
    assert np.array_equal(s, P.pilot_symbols(8)) and np.array_equal(P.pilot_symbols(16)[:8], s)
    assert len(set(np.round(s, 4).tolist())) == 4  # all four QPSK points, so no DC in I or Q
    with pytest.raises(ValueError, match="^n: expected an int >= 1"):
        P.pilot_symbols(0)


def test_pilot_sequence_and_argument_messages():
    # pilot i is the QPSK point of (7 i + 3) mod 4 = 3, 2, 1, 0, ...: bit 0 of it negates I, bit 1 Q
    np.testing.assert_allclose(P.pilot_symbols(5) * np.sqrt(2), [-1 - 1j, 1 - 1j, -1 + 1j, 1 + 1j, -1 - 1j], atol=1e-6)
    y, s = np.ones((2, 1), np.complex64), P.pilot_symbols(1)
    np.testing.assert_allclose(P.estimate_h(y, s, 1.0), [np.conj(s[0])] * 2, rtol=1e-6)  # one pilot is enough
    bad = [
        (lambda: P.pilot_symbols(2.5), r"^n: expected an int >= 1, got 2.5$"),
        (lambda: P.pilot_symbols(True), r"^n: expected an int >= 1, got True$"),
        (lambda: P.estimate_h(y, s, 0.0), r"^pilot_power: expected a finite value > 0, got 0.0$"),
        (lambda: P.estimate_h(y, s, np.inf), r"^pilot_power: expected a finite value > 0, got inf$"),
        (lambda: P.estimate_h(y, s, 1.0, "lmmse", -1.0), r"^noise_var: expected a finite value > 0, got -1.0$"),
        (lambda: P.estimate_h(np.ones((2, 3)), P.pilot_symbols(2), 1.0), r"^y_pilots \[b, n\] and pilots \[n\] disagree: \(2, 3\) vs \(2,\)$"),
        (lambda: P.estimate_h(np.ones(2), P.pilot_symbols(2), 1.0), r"^y_pilots \[b, n\] and pilots \[n\] disagree: \(2,\) vs \(2,\)$"),
        (lambda: P.estimate_h(np.ones((2, 2)), np.ones((1, 2)), 1.0), r"^y_pilots \[b, n\] and pilots \[n\] disagree: \(2, 2\) vs \(1, 2\)$"),
        (lambda: P.estimate_error_var(4, 1.0, 1.0, "ml"), r"^method: expected one of ls, lmmse, got 'ml'$"),
        (lambda: P.estimate_error_var(0, 1.0, 1.0), r"^n: expected an int >= 1, got 0$"),
        (lambda: P.estimate_error_var(4, 0.0, 1.0), r"^pilot_power: expected a finite value > 0, got 0.0$"),
        (lambda: P.estimate_error_var(4, 1.0, 0.0), r"^noise_var: expected a finite value > 0, got 0.0$"),
    ]
    for call, msg in bad:
        with pytest.raises(ValueError, match=msg):
            call()


@pytest.mark.parametrize("n, p, nv", [(8, 4.0, 1.0), (4, 40.0, 1.0), (16, 0.5, 2.0)])
def test_ls_estimate_is_unbiased_with_variance_sigma2_over_np(n, p, nv):
    rng = np.random.default_rng(1)
    b = 40_000
    h = np.full(b, 0.6 - 0.3j)
    s = P.pilot_symbols(n)
    noise = (rng.standard_normal((b, n)) + 1j * rng.standard_normal((b, n))) * np.sqrt(nv / 2)
    y = h[:, None] * np.sqrt(p) * s[None] + noise
    e = P.estimate_h(y, s, p) - h
    assert P.estimate_h(y, s, p).dtype == np.complex64
    want = nv / (n * p)
    assert want == P.estimate_error_var(n, p, nv)
    assert abs(e.mean()) < 4 * np.sqrt(want / b)  # unbiased
    assert np.mean(np.abs(e) ** 2) == pytest.approx(want, rel=0.03)


def test_ls_is_exact_without_noise_and_lmmse_shrinks_with_its_error_variance():
    s = P.pilot_symbols(8)
    h = np.array([1 + 1j, -0.2 + 0.05j], np.complex64)
    y = h[:, None] * np.sqrt(3.0) * s[None]
    np.testing.assert_allclose(P.estimate_h(y, s, 3.0), h, rtol=1e-6)
    np.testing.assert_allclose(P.estimate_h(y, s, 3.0, "lmmse", 1.0), h * 24 / 25, rtol=1e-6)
    # LMMSE over Rayleigh: error variance sigma^2 / (n p + sigma^2), below LS's
    rng = np.random.default_rng(2)
    b, n, p, nv = 40_000, 4, 0.5, 1.0
    h = (rng.standard_normal(b) + 1j * rng.standard_normal(b)) * np.sqrt(0.5)
    s = P.pilot_symbols(n)
    y = h[:, None] * np.sqrt(p) * s[None] + (rng.standard_normal((b, n)) + 1j * rng.standard_normal((b, n))) * np.sqrt(nv / 2)
    e = P.estimate_h(y, s, p, "lmmse", nv) - h
    assert np.mean(np.abs(e) ** 2) == pytest.approx(P.estimate_error_var(n, p, nv, "lmmse"), rel=0.03)
    assert P.estimate_error_var(n, p, nv, "lmmse") < P.estimate_error_var(n, p, nv, "ls")
    with pytest.raises(ValueError, match="^noise_var: the LMMSE estimate needs"):
        P.estimate_h(y, s, p, "lmmse")
    with pytest.raises(ValueError, match="^method: expected one of ls, lmmse"):
        P.estimate_h(y, s, p, "ml")


def test_qpsk_repetition_round_trip_and_soft_combining():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, (500, 22)).astype(np.uint8)
    x = P.qpsk_map(bits, 3)
    assert x.shape == (500, 33) and x.dtype == np.complex64
    from escmvq.core import qam

    np.testing.assert_allclose(x[:, :11], qam.map_bits(bits.reshape(-1, 2), 2).reshape(500, 11), atol=1e-7)
    h = np.exp(1j * rng.uniform(0, 6.3, 500)) * 0.7
    got, _ = P.qpsk_soft_combine(h[:, None] * x, h, 22, 3)
    assert np.array_equal(got, bits)
    # at an SNR where one copy errs often, three combined copies err far less
    noise = (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) * 0.5
    one = P.qpsk_soft_combine((h[:, None] * x + noise)[:, :11], h, 22, 1)[0]
    three = P.qpsk_soft_combine(h[:, None] * x + noise, h, 22, 3)[0]
    assert np.mean(three != bits) < 0.5 * np.mean(one != bits)


def test_qpsk_defaults_decisions_and_messages():
    bits = np.array([[0, 1, 1, 0]], np.uint8)
    x = P.qpsk_map(bits)  # one copy by default
    assert x.shape == (1, 2)
    got, soft = P.qpsk_soft_combine(0.1 * x, [1.0], 4)  # one copy by default; small soft values keep their sign
    assert got.dtype == np.uint8 and got.tolist() == bits.tolist() and np.all(np.abs(soft) < 0.1)
    bad = [
        (lambda: P.qpsk_map(np.zeros((1, 3), np.uint8)), r"^bits: expected \[b, 2k\] with k >= 1, got shape \(1, 3\)$"),
        (lambda: P.qpsk_map(np.zeros((1, 0), np.uint8)), r"^bits: expected \[b, 2k\] with k >= 1, got shape \(1, 0\)$"),
        (lambda: P.qpsk_map(np.zeros(4, np.uint8)), r"^bits: expected \[b, 2k\] with k >= 1, got shape \(4,\)$"),
        (lambda: P.qpsk_map(np.full((1, 2), 2, np.uint8)), r"^bits: expected values 0 or 1$"),
        (lambda: P.qpsk_map(bits, 0), r"^repetitions: expected an int >= 1, got 0$"),
        (lambda: P.qpsk_soft_combine(x, [1.0], 4, 0), r"^repetitions: expected an int >= 1, got 0$"),
        (lambda: P.qpsk_soft_combine(x, [1.0], 0), r"^n_bits: expected an int >= 1, got 0$"),
        (lambda: P.qpsk_soft_combine(x, [1.0], 3), r"^n_bits: expected an even count, got 3$"),
        (lambda: P.qpsk_soft_combine(x, [1.0], 4, 2), r"^y: expected \[b, 4\] \(2 symbols x 2 copies\), got shape \(1, 2\)$"),
        (lambda: P.qpsk_soft_combine(x, [1.0, 1.0], 4), r"^h_hat: expected \[1\], got shape \(2,\)$"),
    ]
    for call, msg in bad:
        with pytest.raises(ValueError, match=msg):
            call()


# ---------------------------------------------------------------- the plan header
def test_header_round_trip_for_every_state_index(alloc):
    lay = ph.layout_for(alloc)
    n_pre = alloc.n_states - alloc.plan(1e9, 1.0).state_index - 1  # states below the all-sent cheapest one
    assert n_pre > 0 and lay.state_bits == int(np.ceil(np.log2(alloc.n_states)))
    p_tot = 576 * 10.0
    thr = alloc.thresholds
    seen = set()
    for k in range(alloc.n_states):
        # the state's own lower edge (as the header rebuilds it) and the middle of its interval
        for g in (ph.header_gamma(alloc, p_tot, k, 0, lay.scale_bits),
                  0.5 * (thr[k] + (thr[k + 1] if k + 1 < alloc.n_states else 3 * thr[k])) / p_tot):
            bits, gq = ph.encode_headers(alloc, p_tot, [g], lay)
            assert bits.shape == (1, lay.n_bits) and ph.unpack_bits(bits[:, :lay.state_bits])[0] == k
            gq2, ok, why = ph.decode_headers(alloc, p_tot, bits, lay)
            assert ok[0] and not why and gq2[0] == gq[0]  # bit-exact
            plan = alloc.plan(p_tot, float(gq[0]))
            # erasure prefix states are negative; from the erasure floor up the allocator keeps
            # every sub-vector (state 0, scaled) instead of a prefix state
            floored = k < n_pre and gq[0] * p_tot >= alloc.erasure_floor
            assert plan.state_index == (0 if floored else k - n_pre)
            assert gq[0] <= g * (1 + 1e-15)  # rounded down: never more than the channel gives
            seen.add(plan.state_index)
    assert min(seen) == -n_pre and max(seen) == alloc.n_states - n_pre - 1
    # the power scale: in the last state a good channel's share of surplus is sent, rounded down
    g = 40 * thr[-1] / p_tot
    bits, gq = ph.encode_headers(alloc, p_tot, [g], lay)
    j = ph.unpack_bits(bits[:, lay.state_bits:lay.payload_bits])[0]
    assert j == 15 and gq[0] == pytest.approx(thr[-1] * 16 / p_tot)
    bits, gq = ph.encode_headers(alloc, p_tot, [1.5 * thr[-1] / p_tot], lay)
    assert ph.unpack_bits(bits[:, lay.state_bits:lay.payload_bits])[0] == 5  # floor(16 * (1 - 1/1.5))


def test_crc8_detects_every_single_double_and_triple_bit_error(alloc):
    lay = ph.layout_for(alloc)
    p_tot = 576 * 3.0
    rng = np.random.default_rng(4)
    bits, _ = ph.encode_headers(alloc, p_tot, rng.exponential(size=6), lay)
    flips = [idx for w in (1, 2, 3) for idx in itertools.combinations(range(lay.n_bits), w)]
    for row in bits:
        bad = np.repeat(row[None], len(flips), axis=0)
        for r, idx in enumerate(flips):
            bad[r, list(idx)] ^= 1
        _, ok, why = ph.decode_headers(alloc, p_tot, bad, lay)
        assert not ok.any() and len(why) == len(flips)
    # the CRC itself: the catalogue's check value of CRC-8/SMBUS (poly 0x07, init 0) over "123456789"
    msg = np.unpackbits(np.frombuffer(b"123456789", np.uint8))[None]
    assert ph.unpack_bits(ph.crc8(msg, init=0))[0] == 0xF4
    # and the header's init 0xFF against a plain bytewise implementation
    reg = 0xFF
    for byte in b"123456789":
        reg ^= byte
        for _ in range(8):
            reg = ((reg << 1) ^ 0x07) & 0xFF if reg & 0x80 else (reg << 1) & 0xFF
    assert ph.unpack_bits(ph.crc8(msg))[0] == reg


def test_a_crc_valid_header_naming_no_plan_is_refused(alloc):
    lay = ph.layout_for(alloc)
    p_tot = 576.0
    for k, j, match in ((alloc.n_states, 0, "names state"), ((1 << lay.state_bits) - 1, 0, "names state"),
                        (3, 15, "describes no plan")):
        payload = np.concatenate([ph.pack_bits([k], lay.state_bits), ph.pack_bits([j], lay.scale_bits)], axis=1)
        bits = np.concatenate([payload, ph.crc8(payload), np.zeros((1, 1), np.uint8)], axis=1)
        gq, ok, why = ph.decode_headers(alloc, p_tot, bits, lay)
        assert not ok[0] and np.isnan(gq[0]) and match in why[0][1]
        with pytest.raises(ph.HeaderError, match=match):
            ph.header_gamma(alloc, p_tot, k, j, lay.scale_bits)


def test_tx_and_rx_derive_byte_identical_plans_from_the_header(alloc):
    from escmvq.runtime.alloc_adapter import PlanCache

    lay = ph.layout_for(alloc)
    rng = np.random.default_rng(5)
    for snr in (-5.0, 10.0, 25.0):
        p_tot = 576 * 10 ** (snr / 10)
        g = rng.exponential(size=300)
        bits, gq_tx = ph.encode_headers(alloc, p_tot, g, lay)
        gq_rx, ok, _ = ph.decode_headers(alloc, p_tot, bits, lay)
        assert ok.all() and gq_tx.tobytes() == gq_rx.tobytes()
        a, b = PlanCache(alloc), PlanCache(alloc)  # each end its own cache
        for x, y in zip(a.batch(p_tot, gq_tx), b.batch(p_tot, gq_rx)):
            assert x.tobytes() == y.tobytes()


WORKER = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from escmvq.core import plan_header as ph
    from escmvq.runtime.bundle import load_bundle

    side, path = sys.argv[1:3]
    alloc = load_bundle(None).allocator
    lay = ph.layout_for(alloc)
    rng = np.random.default_rng(7)
    p_tot = 576 * 10 ** (rng.uniform(-8, 28, 400) / 10)
    if side == "tx":
        gam = rng.exponential(size=400) + 1e-6
        bits = np.concatenate([ph.encode_headers(alloc, float(p), [g], lay)[0] for p, g in zip(p_tot, gam)])
        np.save(path + ".bits.npy", bits)
        gq = [ph.encode_headers(alloc, float(p), [g], lay)[1][0] for p, g in zip(p_tot, gam)]
    else:
        bits = np.load(path + ".bits.npy")
        gq = [ph.decode_headers(alloc, float(p), b[None], lay)[0][0] for p, b in zip(p_tot, bits)]
    with open(path + "." + side, "wb") as f:
        for p, g in zip(p_tot, gq):
            f.write(alloc.plan(float(p), float(g)).to_bytes())
    """
)


def test_two_processes_derive_byte_identical_plans_from_headers(tmp_path):
    base = str(tmp_path / "h")
    for side in ("tx", "rx"):
        p = subprocess.run([sys.executable, "-c", WORKER, side, base], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
    a, b = Path(base + ".tx").read_bytes(), Path(base + ".rx").read_bytes()
    assert len(a) > 400 * 1000 and a == b


def test_layout_and_bad_input(alloc):
    lay = ph.layout_for(alloc, 4)
    assert (lay.state_bits, lay.scale_bits, lay.n_bits, lay.n_symbols) == (9, 4, 22, 11)
    assert ph.layout_for(alloc, 0).n_bits == 18
    with pytest.raises(ValueError, match="^scale_bits: expected an int in 0..16"):
        ph.layout_for(alloc, 17)
    with pytest.raises(ValueError, match=r"^bits: expected \[b, 22\]"):
        ph.decode_headers(alloc, 1.0, np.zeros((2, 21), np.uint8), lay)


@pytest.mark.parametrize("width", [1, 4, 9, 13])
def test_pack_bits_is_msb_first_binary(width):
    """The wire order of every header field, against Python's own binary formatting."""
    vals = np.array(sorted({0, 1, (1 << width) - 1, (1 << width) // 3, (1 << (width - 1))}))
    bits = ph.pack_bits(vals, width)
    assert bits.dtype == np.uint8 and bits.shape == (vals.size, width)
    want = np.array([[int(c) for c in format(int(v), f"0{width}b")] for v in vals], np.uint8)
    np.testing.assert_array_equal(bits, want)
    np.testing.assert_array_equal(ph.unpack_bits(bits), vals)
    with pytest.raises(ValueError):
        ph.pack_bits(np.array([1 << width]), width)
    with pytest.raises(ValueError):
        ph.pack_bits(np.array([-1]), width)


@pytest.mark.parametrize("n_states", [1, 2, 3, 255, 256, 257, 288, 2592])
def test_state_field_is_just_wide_enough(n_states):
    lay = ph.layout_for(type("A", (), {"n_states": n_states})(), scale_bits=4)
    assert lay.state_bits == max(1, (n_states - 1).bit_length())
    assert lay.n_bits == lay.state_bits + 4 + ph.CRC_BITS + (lay.state_bits + 4 + ph.CRC_BITS) % 2
    assert lay.n_bits % 2 == 0


def test_header_wire_layout(alloc):
    """Header = state (MSB first) | scale (MSB first) | CRC-8 of those bits | 0 pad, checked
    field by field against an independent bit-by-bit CRC-8 (poly 0x07, init 0xFF)."""
    lay = ph.layout_for(alloc)
    p_tot = 1.0
    gammas = np.geomspace(1e-3, 1e6, 40)
    bits, _ = ph.encode_headers(alloc, p_tot, gammas, lay)
    assert bits.shape == (40, lay.n_bits)
    for row, g in zip(bits, gammas):
        k, j = ph.quantize_budget(alloc, p_tot, float(g), lay.scale_bits)
        s = "".join(map(str, row))
        assert s[:lay.state_bits] == format(k, f"0{lay.state_bits}b")
        assert s[lay.state_bits:lay.payload_bits] == format(j, f"0{lay.scale_bits}b")
        reg = 0xFF
        for c in s[:lay.payload_bits]:
            fb = ((reg >> 7) & 1) ^ int(c)
            reg = ((reg << 1) & 0xFF) ^ (0x07 if fb else 0)
        assert s[lay.payload_bits:lay.payload_bits + 8] == format(reg, "08b")
        assert set(s[lay.payload_bits + 8:]) <= {"0"}


def test_layout_bounds_and_fields(alloc):
    lay = ph.layout_for(alloc, 16)
    assert (lay.n_states, lay.scale_bits) == (alloc.n_states, 16)
    for bad in (2.5, True):
        with pytest.raises(ValueError, match="^scale_bits: expected an int in 0..16"):
            ph.layout_for(alloc, bad)


def test_pack_and_unpack_edge_inputs():
    # a scalar is one row; any integer dtype (uint64 included); width 0 gives [b, 0]
    np.testing.assert_array_equal(ph.pack_bits(5, 4), [[0, 1, 0, 1]])
    np.testing.assert_array_equal(ph.pack_bits(np.array([5, 9], np.uint64), 4), [[0, 1, 0, 1], [1, 0, 0, 1]])
    np.testing.assert_array_equal(ph.unpack_bits(np.array([[1, 0, 1]], np.uint64)), [5])
    empty = ph.pack_bits(np.zeros(3, np.int64), 0)
    assert empty.shape == (3, 0) and empty.dtype == np.uint8
    none = ph.unpack_bits(empty)
    assert none.dtype == np.int64
    np.testing.assert_array_equal(none, [0, 0, 0])
    with pytest.raises(ValueError, match=r"^values: expected ints in 0\.\.15$"):
        ph.pack_bits([16], 4)
    with pytest.raises(ValueError, match=r"^bits: expected \[b, n\], got shape \(8,\)$"):
        ph.crc8(np.zeros(8, np.uint8))


def test_header_gamma_messages_and_bounds(alloc):
    n = alloc.n_states
    with pytest.raises(ph.HeaderError, match=rf"^plan header names state {n}, the allocator has {n} \(0..{n - 1}\)$"):
        ph.header_gamma(alloc, 576.0, n, 0, 4)
    for j in (16, 17):  # j = 2^q would divide by zero
        with pytest.raises(ph.HeaderError, match=rf"^plan header power scale {j} out of range for 4 bits$"):
            ph.header_gamma(alloc, 576.0, 0, j, 4)
    # gamma_q of 0 or inf is a header failure, not an allocator error
    with pytest.raises(ph.HeaderError, match="describes no plan"):
        ph.header_gamma(alloc, math.inf, 0, 0, 4)
    lay = ph.layout_for(alloc)
    payload = np.concatenate([ph.pack_bits([n - 1], lay.state_bits), ph.pack_bits([0], lay.scale_bits)], axis=1)
    bits = np.concatenate([payload, ph.crc8(payload), np.zeros((1, 1), np.uint8)], axis=1)
    gq, ok, why = ph.decode_headers(alloc, 1e-306, bits, lay)  # thresholds[-1] / 1e-306 overflows
    assert not ok[0] and "describes no plan" in why[0][1]


class _HoleyAllocator:
    """Two states, thresholds 1 and 8, except that budgets in [1.05, 1.1) and [1.7, 1.9) belong
    to state 1: holes in state 0 that a rounded-down power scale can fall into."""
    n_states = 2
    thresholds = np.array([1.0, 8.0])

    def state_index(self, p_tot, gamma):
        b = p_tot * gamma
        return int(b >= 8.0 or 1.05 <= b < 1.1 or 1.7 <= b < 1.9)


def test_quantize_budget_steps_down_out_of_a_hole():
    a = _HoleyAllocator()
    # floor(16 (1 - 1/1.95)) = 7 gives the budget 16/9, in the hole; 6 gives 1.6, in state 0
    assert ph.quantize_budget(a, 1.0, 1.95, 4) == (0, 6)
    # floor(16 (1 - 1/1.12)) = 1 lands in the hole (16/15); j = 0 is the threshold itself
    assert ph.quantize_budget(a, 1.0, 1.12, 4) == (0, 0)
    assert ph.quantize_budget(a, 1.0, 1.08, 4) == (1, 0)


@pytest.mark.parametrize("p_tot", [3.0, 49.0, 10.0, 0.7, 5760.0, 1e-3])
def test_header_gamma_is_the_smallest_double_reaching_the_budget(p_tot):
    """j = 0 and j = 8 of 4 bits give the dyadic budgets 1 and 2 of the threshold 1: gamma_q is
    the smallest double whose budget P_tot * gamma_q reaches them."""
    a = _HoleyAllocator()
    for j, bq in ((0, 1.0), (8, 2.0)):
        g = ph.header_gamma(a, p_tot, 0, j, 4)
        assert p_tot * g >= bq and p_tot * math.nextafter(g, 0.0) < bq


def test_decode_headers_judges_each_row_alone(alloc):
    lay = ph.layout_for(alloc)
    assert lay.n_bits == lay.payload_bits + ph.CRC_BITS + 1  # one pad bit
    bits, gq = ph.encode_headers(alloc, 576.0, [0.5, 1.0, 2.0, 4.0], lay)
    bits[1, lay.payload_bits] ^= 1  # a CRC bit
    bits[2, -1] = 1  # the pad
    gq2, ok, why = ph.decode_headers(alloc, 576.0, bits, lay)
    assert ok.dtype == bool and ok.tolist() == [True, False, False, True]
    assert why == [(1, "plan header CRC-8 mismatch"), (2, "plan header CRC-8 mismatch")]
    assert gq2[0] == gq[0] and gq2[3] == gq[3] and np.isnan(gq2[1:3]).all()
    # one tile's gamma as a plain float is a batch of one
    one, _ = ph.encode_headers(alloc, 576.0, 0.5, lay)
    np.testing.assert_array_equal(one, bits[:1])
