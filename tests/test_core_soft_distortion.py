"""The distortion table (31) for the soft receiver: ``pvq.posterior_means`` (the MMSE estimate of
each received label) and ``expected_distortion`` / ``distortion_table`` with that reconstruction."""
import numpy as np
import pytest

from escmvq.core import pvq
from escmvq.runtime import soft

K, D, N, B = 512, 4, 6, 9


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    cb = rng.normal(size=(K, D))
    prior = rng.dirichlet(np.full(K, 0.3), size=N)
    mu = rng.uniform(0.01, 0.2, (N, B))
    return rng, cb, prior, mu


def test_posterior_means_limits(setup):
    rng, cb, prior, _ = setup
    # reliable bits: every received label is its own codeword (a prior without near-zero labels)
    m = pvq.posterior_means(cb, np.full((N, B), 1e-9), rng.dirichlet(np.full(K, 5.0), size=N))
    assert m.shape == (N, K, D) and np.allclose(m, cb[None], atol=1e-5)
    # useless bits (mu = 1/2): every received label gives the prior mean
    m = pvq.posterior_means(cb, np.full((N, B), 0.5), prior)
    assert np.allclose(m, (prior @ cb)[:, None, :], atol=1e-9)
    # no prior: the uniform mean
    assert np.allclose(pvq.posterior_means(cb, np.full((N, B), 0.5)), cb.mean(0), atol=1e-9)


def test_posterior_means_are_the_soft_receivers_estimate(setup):
    rng, cb, prior, mu = setup
    r = rng.integers(0, K, (3, N))
    bits = pvq.index_to_bits(r, B)
    llr = ((1.0 - 2.0 * bits) * np.log((1 - mu) / mu)[None]).astype(np.float32)
    tables = soft.SoftTables(cb[None].astype(np.float32), prior[None].astype(np.float32), None, N)
    want, _ = soft.decode_soft(llr, np.zeros((3, N), int), tables, "mmse")
    got = pvq.posterior_means(cb, mu, prior)[np.arange(N)[None], r]
    assert np.allclose(got, want, atol=2e-4)


def test_expected_distortion_with_a_reconstruction_is_the_monte_carlo_mean(setup):
    rng, cb, prior, mu = setup
    zs = rng.normal(size=(40, N, D))
    recon = pvq.posterior_means(cb, mu, prior)
    exact = pvq.expected_distortion(zs, cb, mu, recon)
    # the codeword itself as the reconstruction is the paper's (30)
    assert np.allclose(pvq.expected_distortion(zs, cb, mu, np.broadcast_to(cb[None], (N, K, D))),
                       pvq.expected_distortion(zs, cb, mu))
    q = pvq.nearest_codeword(zs, cb)
    draws = 4000
    bits = np.repeat(pvq.index_to_bits(q, B)[None], draws, 0)
    r = pvq.bits_to_index(pvq.bsc(bits, mu, rng))  # [draws, 40, N]
    mc = ((recon[np.arange(N), r] - zs[None]) ** 2).sum(-1).mean(0)
    assert np.allclose(mc, exact, rtol=0.05, atol=0.02)
    assert not np.allclose(exact, pvq.expected_distortion(zs, cb, mu), rtol=0.05)


def test_soft_distortion_table(setup):
    rng, cb, prior, mu = setup
    cbs = np.stack([cb, cb[::-1]])
    mus = np.stack([mu, mu / 4])
    priors = np.stack([prior, prior])
    batches = [rng.normal(size=(30, N, D)) for _ in range(2)]
    t = pvq.distortion_table(batches, cbs, mus, priors, receiver="soft")
    want = np.stack([np.concatenate([pvq.expected_distortion(z, cbs[v], mus[v], pvq.posterior_means(cbs[v], mus[v], priors[v]))
                                     for z in batches]).mean(0) for v in range(2)])
    assert t.shape == (2, N) and np.allclose(t, want)
    assert np.array_equal(pvq.distortion_table(batches, cbs, mus), pvq.distortion_table(batches, cbs, mus, receiver="hard"))
    with pytest.raises(ValueError, match="hard or soft"):
        pvq.distortion_table(batches, cbs, mus, receiver="map")


def test_soft_distortion_table_without_a_prior_is_the_uniform_one(setup):
    rng, cb, _, mu = setup
    cbs, mus = cb[None], mu[None]
    batches = [rng.normal(size=(20, N, D))]
    t = pvq.distortion_table(batches, cbs, mus, receiver="soft")
    uniform = np.full((1, N, K), 1.0 / K)
    assert np.allclose(t, pvq.distortion_table(batches, cbs, mus, uniform, receiver="soft"))


def test_float32_inputs_are_taken_at_their_value_in_float64(setup):
    # the bundles ship float32 tables; the soft table is computed in float64 from their exact values
    rng, cb, prior, mu = setup
    p32 = prior.astype(np.float32)
    want = pvq.posterior_means(cb, mu, p32.astype(np.float64))
    got = pvq.posterior_means(cb, mu, p32)
    assert got.dtype == np.float64 and np.allclose(got, want, rtol=1e-13, atol=1e-15)
    zs = rng.normal(size=(10, N, D))
    r32 = pvq.posterior_means(cb, mu, prior).astype(np.float32)
    d = pvq.expected_distortion(zs, cb, mu, r32)
    assert d.dtype == np.float64
    assert np.allclose(d, pvq.expected_distortion(zs, cb, mu, r32.astype(np.float64)), rtol=1e-13, atol=1e-15)
