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
