"""Product-VQ mapping, BSC transition (24) and distortion (30)/(31) in numpy."""
import itertools

import numpy as np
import pytest

from escmvq.core import pvq


def test_subvector_round_trip_and_raster_order():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 4, 8, 8)).astype(np.float32)
    zs = pvq.to_subvectors(z)
    assert zs.shape == (3, 64, 4)
    # sub-vector i = r*w + c is the channel vector at (r, c)
    assert np.array_equal(zs[1, 3 * 8 + 5], z[1, :, 3, 5])
    assert np.array_equal(pvq.from_subvectors(zs, 8, 8), z)


def test_bits_round_trip_msb_first():
    B = 9
    idx = np.arange(2**B)
    bits = pvq.index_to_bits(idx, B)
    assert bits.shape == (512, 9) and bits.dtype == np.uint8
    assert list(bits[1]) == [0] * 8 + [1]
    assert list(bits[256]) == [1] + [0] * 8
    assert np.array_equal(pvq.bits_to_index(bits), idx)
    assert len({tuple(r) for r in bits}) == 512


def test_index_to_bits_rejects_out_of_range():
    with pytest.raises(ValueError, match="idx"):
        pvq.index_to_bits(np.array([4]), 2)
    with pytest.raises(ValueError, match="idx"):
        pvq.index_to_bits(np.array([0.5]), 2)


def test_nearest_codeword_matches_brute_force():
    rng = np.random.default_rng(1)
    cb = rng.normal(size=(32, 4)).astype(np.float32)
    zs = rng.normal(size=(5, 7, 4)).astype(np.float32)
    idx = pvq.nearest_codeword(zs, cb)
    brute = ((zs[..., None, :] - cb) ** 2).sum(-1).argmin(-1)
    assert np.array_equal(idx, brute)


def test_transition_probabilities_two_bit_codebook_hand_checked():
    mu = np.array([[0.1, 0.3]])  # N=1, B=2
    for q in range(4):
        p = np.exp(pvq.transition_logprob(np.array([[q]]), mu))[0, 0]
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        for k in range(4):
            f0 = ((k ^ q) >> 1) & 1  # MSB flipped?
            f1 = (k ^ q) & 1
            want = (0.1 if f0 else 0.9) * (0.3 if f1 else 0.7)
            assert p[k] == pytest.approx(want, rel=1e-12)


def test_transition_matches_product_formula_random():
    rng = np.random.default_rng(2)
    B, N = 5, 3
    mu = rng.uniform(1e-4, 0.5, size=(N, B))
    sent = rng.integers(0, 2**B, size=(2, N))
    lp = pvq.transition_logprob(sent, mu)
    bits = pvq.bit_table(B)
    for b, i in itertools.product(range(2), range(N)):
        h = bits ^ bits[sent[b, i]]
        want = np.prod(np.where(h, mu[i], 1 - mu[i]), axis=1)
        np.testing.assert_allclose(np.exp(lp[b, i]), want, rtol=1e-10)


def test_expected_distortion_matches_monte_carlo_bsc():
    rng = np.random.default_rng(3)
    B, D, N = 4, 2, 3
    cb = rng.normal(size=(2**B, D))
    mu = rng.uniform(0.01, 0.3, size=(N, B))
    zs = rng.normal(size=(2, N, D))
    exact = pvq.expected_distortion(zs, cb, mu)
    q = pvq.nearest_codeword(zs, cb)
    bits = pvq.index_to_bits(q, B)
    draws = 40000
    flipped = pvq.bsc(np.broadcast_to(bits, (draws, *bits.shape)), mu[None, None], rng)
    rec = cb[pvq.bits_to_index(flipped)]  # [draws, 2, N, D]
    mc = ((rec - zs[None]) ** 2).sum(-1).mean(0)
    np.testing.assert_allclose(mc, exact, rtol=0.05)


def test_distortion_is_quantisation_error_when_mu_tiny_and_table_averages():
    rng = np.random.default_rng(4)
    V, K, D, N, B = 2, 16, 2, 4, 4
    cbs = rng.normal(size=(V, K, D))
    mu = np.full((V, N, B), 1e-12)
    batches = [rng.normal(size=(3, N, D)), rng.normal(size=(5, N, D))]
    table = pvq.distortion_table(batches, cbs, mu)
    assert table.shape == (V, N)
    allz = np.concatenate(batches)
    for v in range(V):
        q = pvq.nearest_codeword(allz, cbs[v])
        qerr = ((cbs[v][q] - allz) ** 2).sum(-1).mean(0)
        np.testing.assert_allclose(table[v], qerr, rtol=1e-6)


def test_distortion_grows_with_mu():
    rng = np.random.default_rng(5)
    cb = rng.normal(size=(64, 4))
    zs = rng.normal(size=(20, 8, 4))
    d = [pvq.expected_distortion(zs, cb, np.full((8, 6), m)).mean() for m in (1e-4, 0.01, 0.1, 0.5)]
    assert all(a < b for a, b in zip(d, d[1:]))


# ------------- input checks, messages and precision (mutants that survived earlier) -------------
def test_layout_and_bit_table_input_checks():
    with pytest.raises(ValueError, match=r"z: expected \[batch, D, h, w\], got shape \(2, 3, 4\)"):
        pvq.to_subvectors(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"zs: expected \[batch, 12, D\], got shape \(2, 10, 4\)"):
        pvq.from_subvectors(np.zeros((2, 10, 4)), 3, 4)  # right ndim, wrong N
    with pytest.raises(ValueError, match=r"zs: expected \[batch, 12, D\]"):
        pvq.from_subvectors(np.zeros((12, 4)), 3, 4)  # right N, wrong ndim
    for B in (0, 25):
        with pytest.raises(ValueError, match=f"B: expected 1..24 bits, got {B}"):
            pvq.bit_table(B)
    np.testing.assert_array_equal(pvq.bit_table(1), [[0], [1]])
    t24 = pvq.bit_table(24)
    assert t24.shape == (1 << 24, 24) and t24.dtype == np.uint8 and t24[-1].all()
    with pytest.raises(ValueError, match=r"idx: values must lie in \[0, 512\), got \[0, 512\]"):
        pvq.index_to_bits(np.array([0, 512]), 9)


def test_nearest_codeword_works_in_float32_like_the_exported_graph():
    """Inputs are rounded to float32 first: a point 1e-9 past the midpoint of two codewords
    is a tie in float32 and goes to the lowest index (float64 would pick the other one)."""
    cb = np.array([[0.0], [1.0]])
    assert pvq.nearest_codeword(np.array([[0.5 + 1e-9]]), cb).tolist() == [0]
    assert pvq.nearest_codeword(np.array([[0.5]]), np.array([[0.0], [1.0 - 1e-9]])).tolist() == [0]
    # exact zeros in a sub-vector are ordinary values (no 0/0 anywhere in the distance)
    assert pvq.nearest_codeword(np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[5.0, 5.0], [0.0, 1.0]])).tolist() == [1, 1]
    with pytest.raises(ValueError, match="zs and codebook disagree on D: 4 vs 3"):
        pvq.nearest_codeword(np.zeros((2, 5, 4)), np.zeros((8, 3)))


def test_transition_and_distortion_compute_in_float64_whatever_the_input():
    rng = np.random.default_rng(3)
    mu64 = rng.uniform(1e-3, 0.5, (4, 3))
    sent = rng.integers(0, 8, (2, 4))
    ref = pvq.transition_logprob(sent, mu64)
    f32 = pvq.transition_logprob(sent, mu64.astype(np.float32))
    assert f32.dtype == np.float64
    np.testing.assert_allclose(f32, pvq.transition_logprob(sent, mu64.astype(np.float32).astype(np.float64)), rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.exp(f32).sum(-1), 1.0, atol=1e-13)
    with pytest.raises(ValueError, match=r"sent: expected \[batch, 4\], got shape \(4,\)"):
        pvq.transition_logprob(sent[0], mu64)  # right N, wrong ndim
    zs = rng.normal(size=(3, 4, 2)).astype(np.float32)
    cb = rng.normal(size=(8, 2)).astype(np.float32)
    got = pvq.expected_distortion(zs, cb, mu64)
    want = pvq.expected_distortion(zs.astype(np.float64), cb.astype(np.float64), mu64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_distortion_table_averages_over_samples_not_positions():
    rng = np.random.default_rng(4)
    cbs = rng.normal(size=(2, 8, 2))
    mu = np.full((2, 4, 3), 0.05)
    a, b = rng.normal(size=(3, 4, 2)), rng.normal(size=(5, 4, 2))  # batch sizes != N
    want = np.stack([np.concatenate([pvq.expected_distortion(x, cbs[v], mu[v]) for x in (a, b)]).mean(0)
                     for v in range(2)])
    np.testing.assert_allclose(pvq.distortion_table([a, b], cbs, mu), want, rtol=1e-12)
    np.testing.assert_allclose(pvq.distortion_table([a[:1]], cbs, mu)[0], pvq.expected_distortion(a[:1], cbs[0], mu[0])[0])
    with pytest.raises(ValueError, match="^batches: no latents given$"):
        pvq.distortion_table([], cbs, mu)
    with pytest.raises(ValueError, match="codebooks and mu disagree on V: 2 vs 3"):
        pvq.distortion_table([a], cbs, np.full((3, 4, 3), 0.05))


def test_bsc_returns_uint8_bits():
    rng = np.random.default_rng(0)
    bits = np.array([[[0, 1, 1, 0]]], np.int64)
    out = pvq.bsc(bits, np.zeros(4) + 1e-300, rng)
    assert out.dtype == np.uint8 and out.tolist() == bits.tolist()
    out = pvq.bsc(bits, np.full(4, 0.5 + 0.5), rng)  # mu = 1: every bit flips
    assert out.tolist() == [[[1, 0, 0, 1]]]


def test_codebook_map_one_hot_layout_and_checks():
    rng = np.random.default_rng(1)
    cbs = rng.integers(0, 4, (2, 6))
    cbs[0, 0], cbs[1, 5] = 0, 3  # the first codebook and "not sent" (V = 3)
    m = pvq.codebook_map(cbs, 3, 2, 3)
    assert m.shape == (2, 4, 2, 3) and m.dtype == np.float32
    want = np.zeros((2, 6, 4), np.float32)
    want[np.arange(2)[:, None], np.arange(6)[None], cbs] = 1
    assert np.array_equal(m, pvq.from_subvectors(want, 2, 3))
    assert m[0, 0, 0, 0] == 1 and m[1, 3, 1, 2] == 1  # sub-vector i = r*w + c
    assert pvq.codebook_map(np.zeros((0, 6), int), 3, 2, 3).shape == (0, 4, 2, 3)
    for bad in (-1, 4):
        c = cbs.copy()
        c[1, 2] = bad
        with pytest.raises(ValueError, match=r"^codebooks: indices must lie in 0\.\.3 \(V = not sent\)$"):
            pvq.codebook_map(c, 3, 2, 3)
    for shape in ((2, 5), (2, 7), (12,), (2, 6, 1)):
        with pytest.raises(ValueError, match=r"^codebooks: expected \[batch, 6\], got shape "):
            pvq.codebook_map(np.zeros(shape, int), 3, 2, 3)


def test_flip_cost_is_float64_and_refuses_a_codebook_size_not_a_power_of_two():
    rng = np.random.default_rng(2)
    cb = rng.normal(size=(2, 8, 3)).astype(np.float32)
    want = pvq.flip_cost(cb.astype(np.float64))
    got = pvq.flip_cost(cb)
    assert got.dtype == np.float64 and np.allclose(got, want, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match=r"^codebooks: K = 6 is not a power of 2$"):
        pvq.flip_cost(np.zeros((1, 6, 2)))
