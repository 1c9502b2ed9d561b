"""Equations (7), (9), (22), (24)-(26) and the mu reparametrisation, on hand-checkable cases."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.core import pvq  # noqa: E402
from escmvq.training import quantizer as Q  # noqa: E402


def test_two_bit_transition_sums_to_one_and_matches_product_formula():
    # 2-bit codebook, one sub-vector, mu = (0.1, 0.3); sent label 2 = bits (1, 0)
    mu = torch.tensor([[0.1, 0.3]], dtype=torch.float64)
    table = Q.bit_table(2, torch.float64)
    lp = Q.transition_logprob(torch.tensor([[2]]), mu, table)[0, 0]
    p = lp.exp()
    # labels 0=(0,0): flip bit0 only -> 0.1*0.7; 1=(0,1): both -> 0.1*0.3;
    # 2=(1,0): none -> 0.9*0.7; 3=(1,1): bit1 only -> 0.9*0.3
    expect = torch.tensor([0.1 * 0.7, 0.1 * 0.3, 0.9 * 0.7, 0.9 * 0.3], dtype=torch.float64)
    assert torch.allclose(p, expect, atol=1e-12)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)


def test_transition_matches_numpy_runtime_and_normalises():
    g = np.random.default_rng(1)
    mu = g.uniform(0.001, 0.5, (5, 9))
    sent = g.integers(0, 512, (3, 5))
    ours = Q.transition_logprob(torch.from_numpy(sent), torch.from_numpy(mu), Q.bit_table(9, torch.float64))
    ref = pvq.transition_logprob(sent, mu)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)
    np.testing.assert_allclose(np.exp(ref).sum(-1), 1.0, atol=1e-10)
    # the sent label is the most likely one when every mu < 0.5
    assert (ref.argmax(-1) == sent).all()


def test_gumbel_sample_tends_to_hard_codeword_as_tau_to_zero():
    logp = torch.log(torch.tensor([[[0.7, 0.2, 0.05, 0.05]]]))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    soft = Q.gumbel_softmax(logp, 1.0, g1)
    hard = Q.gumbel_softmax(logp, 1e-4, g2)  # same noise draw
    assert float(soft.max()) < 0.999
    assert torch.allclose(hard, torch.nn.functional.one_hot(hard.argmax(-1), 4).double().to(hard.dtype), atol=1e-6)
    assert torch.allclose(soft.sum(-1), torch.ones(1, 1))


def test_gumbel_sample_frequencies_follow_the_bsc():
    # argmax of the sample is a draw from p(k|q): empirical frequencies ~ (24)
    mu = torch.tensor([[0.2, 0.05]])
    table = Q.bit_table(2)
    lp = Q.transition_logprob(torch.zeros(20000, 1, dtype=torch.long), mu, table)
    e = Q.gumbel_softmax(lp, 0.01, torch.Generator().manual_seed(0))
    freq = torch.bincount(e.argmax(-1).flatten(), minlength=4).double() / 20000
    expect = torch.tensor([0.8 * 0.95, 0.8 * 0.05, 0.2 * 0.95, 0.2 * 0.05], dtype=torch.float64)
    assert torch.allclose(freq, expect, atol=0.012)


def test_mu_reparametrisation_stays_in_bounds_and_inverts():
    mu_min = torch.tensor([0.0005, 0.05])
    raw = torch.tensor([[-50.0, 0.0, 50.0], [-50.0, 0.0, 50.0]])
    mu = Q.mu_from_raw(raw, mu_min)
    assert float(mu[0, 0]) == pytest.approx(0.0005, abs=1e-9)
    assert float(mu[1, 0]) == pytest.approx(0.05, abs=1e-9)
    assert float(mu.max()) <= 0.5
    back = Q.mu_from_raw(Q.raw_from_mu(torch.tensor(0.02), 0.001), torch.tensor(0.001))
    assert float(back) == pytest.approx(0.02, rel=1e-5)


def test_regulariser_minimum_is_one_over_e():
    m = torch.linspace(0.01, 0.5, 4901, dtype=torch.float64)
    r = m * torch.log(m)
    assert float(m[r.argmin()]) == pytest.approx(1 / math.e, abs=1e-3)


def test_tau_annealing_schedule():
    assert Q.tau_at(0, 0.5, 0.003, 100) == 0.5
    assert Q.tau_at(99, 0.5, 0.003, 100) == 0.5
    assert Q.tau_at(100, 0.5, 0.003, 100) == pytest.approx(0.5 * math.exp(-0.003))
    assert Q.tau_at(1050, 0.5, 0.003, 100) == pytest.approx(0.5 * math.exp(-0.03))


def test_nearest_matches_numpy_quantizer():
    g = np.random.default_rng(0)
    zs = g.normal(size=(4, 16, 4)).astype(np.float32)
    cb = g.normal(size=(64, 4)).astype(np.float32)
    ours = Q.nearest(torch.from_numpy(zs), torch.from_numpy(cb)).numpy()
    np.testing.assert_array_equal(ours, pvq.nearest_codeword(zs, cb))
    brute = ((zs[..., None, :] - cb) ** 2).sum(-1).argmin(-1)
    assert (ours == brute).mean() > 0.99


def test_subvector_layout_matches_numpy():
    z = torch.arange(2 * 4 * 3 * 5, dtype=torch.float32).reshape(2, 4, 3, 5)
    np.testing.assert_array_equal(Q.to_subvectors(z).numpy(), pvq.to_subvectors(z.numpy()))
    assert torch.equal(Q.from_subvectors(Q.to_subvectors(z), 3, 5), z)


def test_perplexity():
    assert Q.perplexity(torch.ones(512)) == pytest.approx(512)
    assert Q.perplexity(torch.tensor([5, 0, 0, 0])) == pytest.approx(1)
