"""``decoder_input="posterior"``: the decoder trained on the posterior-mean codewords that the
runtime's soft receiver hands it (``escmvq train --decoder-input posterior``)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.core import pvq  # noqa: E402
from escmvq.runtime import soft  # noqa: E402
from escmvq.training import quantizer as Q  # noqa: E402
from escmvq.training.model import ESCMVQ  # noqa: E402
from escmvq.training.presets import get_preset  # noqa: E402

POST = {"decoder_input": "posterior"}


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return ESCMVQ(get_preset("tiny").replace(**kw))


@pytest.mark.parametrize("kw,msg", [
    ({"decoder_input": "mean"}, "decoder_input"),
    ({"decoder_input": "posterior", "quantizer": "sq", "D": 1}, "vector quantizer"),
    ({"usage_decay": 1.0}, "usage_decay"),
])
def test_bad_settings_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_preset("tiny").replace(**kw)


def test_flip_labels_flips_each_bit_with_its_probability():
    B, N, b = 9, 6, 4000
    table = Q.bit_table(B)
    mu = torch.linspace(0.0, 0.5, N * B).reshape(N, B)
    idx = torch.randint(0, 2**B, (b, N), generator=torch.Generator().manual_seed(0))
    r = Q.flip_labels(idx, mu, table, torch.Generator().manual_seed(1))
    assert r.shape == (b, N) and r.dtype == torch.long
    rate = (table[r] != table[idx]).double().mean(0)  # [N, B]
    assert torch.allclose(rate, mu.double(), atol=0.03)
    assert torch.equal(Q.flip_labels(idx, torch.zeros(N, B), table), idx)


def test_posterior_mean_is_the_soft_receivers_mmse_estimate_for_hard_decided_bits():
    """Torch (training) and numpy (runtime) agree: received labels r, flip probabilities mu,
    a prior per position -> the same posterior-mean codeword as the soft receiver fed the LLRs
    +-log((1-mu)/mu) of r's bits."""
    rng = np.random.default_rng(0)
    V, K, D, N, B, b = 2, 512, 4, 6, 9, 5
    cbs = rng.normal(size=(V, K, D)).astype(np.float32)
    prior = rng.dirichlet(np.full(K, 0.3), size=(V, N)).astype(np.float32)
    mu = rng.uniform(0.01, 0.3, (N, B)).astype(np.float32)
    r = rng.integers(0, K, (b, N))
    v = 1
    got = Q.posterior_mean(torch.from_numpy(r), torch.from_numpy(mu), torch.log(torch.from_numpy(prior[v])),
                           torch.from_numpy(cbs[v]), Q.bit_table(B)).numpy()
    bits = pvq.index_to_bits(r, B)  # [b, N, B]
    llr = ((1.0 - 2.0 * bits) * np.log((1 - mu) / mu)[None]).astype(np.float32)
    tables = soft.SoftTables(cbs, prior, None, N)
    want, _ = soft.decode_soft(llr, np.full((b, N), v), tables, "mmse")
    assert np.allclose(got, want, atol=2e-4)


def _capture_decoder_input(model):
    seen = {}

    def hook(_mod, args):
        seen["z"] = args[0].detach().clone()

    model.decoder.register_forward_pre_hook(hook)
    return seen


def test_forward_feeds_the_decoder_the_posterior_mean():
    """Flip probabilities at the floor 1e-6 and a hot Gumbel temperature: the sample (25) is far
    from the codeword, the posterior mean is the codeword itself; the label usage is learned."""
    m = _model(seed=1, mu_min=(1e-6,) * 5, mu_init=1e-6, **POST)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        zs = Q.to_subvectors(m.encoder(x))
        m.init_codebook_from_data(m.encoder(x), 0, torch.Generator().manual_seed(0))
    seen = _capture_decoder_input(m)
    m.train()
    m(x, 1, 50.0, torch.Generator().manual_seed(2))
    cw = m.codebooks[0][Q.nearest(zs, m.codebooks[0])].detach()
    assert torch.allclose(Q.to_subvectors(seen["z"]), cw, atol=1e-4)
    # the usage row of codebook 1 after one step: (1 - decay) x the batch's label frequencies
    assert torch.allclose(m.label_usage[0].sum(-1), torch.full((m.preset.N,), 1 - m.preset.usage_decay))
    assert float(m.label_usage[1:].abs().sum()) == 0.0
    # the paper's input (the sample) is not the codeword at this temperature
    s = _model(seed=1, mu_min=(1e-6,) * 5, mu_init=1e-6)
    s.load_state_dict(m.state_dict())
    seen_s = _capture_decoder_input(s)
    s.train()
    s(x, 1, 50.0, torch.Generator().manual_seed(2))
    assert not torch.allclose(Q.to_subvectors(seen_s["z"]), cw, atol=1e-2)


def test_posterior_input_keeps_the_straight_through_gradients(monkeypatch):
    """The task loss d0 alone (d1 and R dropped) reaches the encoder straight through and
    leaves the codebooks and mu without gradient, as with the sample."""
    from escmvq.training import model as M

    monkeypatch.setattr(M.L, "multi_codebook_loss", lambda d0s, d1s, Rs, lambdas, eta: d0s.sum())
    m = _model(seed=3, noise="gray", erase_prob=(0, 0, 0, 0, 0.3), decoder_cond="codebook", **POST)
    m.train()
    loss, _ = m(torch.randn(4, 3, 32, 32), 5, 0.5, torch.Generator().manual_seed(0))
    loss.backward()
    assert m.codebooks.grad is None or float(m.codebooks.grad.abs().sum()) == 0.0
    assert m.mu_raw.grad is None or float(m.mu_raw.grad.abs().sum()) == 0.0
    for p in (m.encoder.proj.weight, m.encoder.conv1.weight, m.decoder.conv_in.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    assert torch.allclose(m.label_usage.sum(-1), torch.full((5, m.preset.N), 1 - m.preset.usage_decay))
