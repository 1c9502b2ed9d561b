"""The network, the multi-codebook loss (27)-(29), straight-through (14) and Algorithm 1's copy."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training.model import ESCMVQ  # noqa: E402
from escmvq.training.presets import PRESET_NAMES, get_preset  # noqa: E402
from train_helpers import run_keeping_latent  # noqa: E402


@pytest.fixture()
def tiny():
    return ESCMVQ(get_preset("tiny"))


def test_presets_build_and_record_paper_values():
    for name in PRESET_NAMES:
        p = get_preset(name)
        assert len(p.epochs_per_stage) == p.V == 5
        assert p.mu_min == (0.0005, 0.001, 0.0045, 0.02, 0.05)
        assert p.lambdas == tuple(2 ** (v - 1) / 8 for v in range(1, 6))
        assert (p.D, p.B, p.K, p.N, p.eta, p.beta, p.tau0) == (4, 9, 512, 64, 0.8, 0.25, 0.5)
    paper = get_preset("paper")
    assert (paper.hidden, paper.batch_size, paper.total_epochs, paper.lr, paper.lr_mu) == (256, 64, 128, 1e-3, 1e-2)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_shapes_fully_convolutional(tiny):
    x = torch.randn(2, 3, 32, 32)
    z = tiny.encoder(x)
    assert z.shape == (2, 4, 8, 8)
    assert tiny.decoder(z).shape == x.shape
    assert tiny.decoder(tiny.encoder(torch.randn(1, 3, 96, 64))).shape == (1, 3, 96, 64)
    assert tiny.mu().shape == (5, 64, 9) and tiny.codebooks.shape == (5, 512, 4)
    stl = ESCMVQ(get_preset("tiny").replace(image_size=(96, 96)))
    assert stl.mu().shape == (5, 576, 9)


def test_mu_in_bounds(tiny):
    mu = tiny.mu()
    mm = torch.tensor(get_preset("tiny").mu_min)[:, None, None]
    assert bool((mu >= mm - 1e-7).all()) and bool((mu <= 0.5).all())


def test_loss_is_eta_weighted_sum_of_per_codebook_losses(tiny):
    p = tiny.preset
    x = torch.randn(4, 3, 32, 32)
    loss, st = tiny(x, 3, 0.5, torch.Generator().manual_seed(0))
    w = torch.tensor([p.eta, p.eta**2, p.eta**3])
    per = st["d0"] + st["d1"] + torch.tensor(p.lambdas[:3]) * st["R"]
    assert float(loss.detach()) == pytest.approx(float((w * per).sum() / w.sum()), rel=1e-5)
    assert st["idx"].shape == (3, 4, 64)


def test_gradients_reach_only_trained_codebooks_and_mu(tiny):
    x = torch.randn(4, 3, 32, 32)
    loss, _ = tiny(x, 2, 0.5, torch.Generator().manual_seed(0))
    loss.backward()
    cg = tiny.codebooks.grad.abs().sum((1, 2))
    mg = tiny.mu_raw.grad.abs().sum((1, 2))
    assert bool((cg[:2] > 0).all()) and bool((cg[2:] == 0).all())
    assert bool((mg[:2] > 0).all()) and bool((mg[2:] == 0).all())


def _d0_only(monkeypatch):
    """Make the model's loss (27) the plain sum of its per-codebook d0 (d1 and R dropped),
    so that a backward pass shows where d0's gradient goes through the model's own forward."""
    from escmvq.training import model as M

    monkeypatch.setattr(M.L, "multi_codebook_loss", lambda d0s, d1s, Rs, lambdas, eta: d0s.sum())


@pytest.mark.parametrize("stage", [1, 3])
def test_task_loss_reaches_encoder_not_codebooks_through_straight_through(tiny, monkeypatch, stage):
    """(14) in the model's forward: the decoder input is z + sg(z~ - z), so d0 sends its
    gradient to the encoder (straight through) and none to the codebooks or mu (NOTES)."""
    _d0_only(monkeypatch)
    x = torch.randn(2, 3, 32, 32)
    loss, st = tiny(x, stage, 0.5, torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(float(st["d0"].sum()), rel=1e-6)
    loss.backward()
    assert tiny.codebooks.grad is None or float(tiny.codebooks.grad.abs().sum()) == 0.0
    assert tiny.mu_raw.grad is None or float(tiny.mu_raw.grad.abs().sum()) == 0.0
    for p in (tiny.encoder.proj.weight, tiny.encoder.conv1.weight, tiny.decoder.conv_in.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_decoder_sees_the_sample_and_encoder_gets_its_gradient(tiny, monkeypatch):
    """Forward value of (14) is the Gumbel sample z~; its gradient w.r.t. the decoder input
    is what the encoder output receives (the straight-through identity)."""
    from escmvq.training import quantizer as Q

    _d0_only(monkeypatch)
    seen = {}

    def spy(module, inputs):
        inputs[0].retain_grad()
        seen["zhat"] = inputs[0]

    tiny.decoder.register_forward_pre_hook(spy)
    loss, st, z = run_keeping_latent(tiny, torch.randn(2, 3, 32, 32))
    # the same Gumbel draw, recomputed: the decoder's input equals the sample z~ (25)
    with torch.no_grad():
        zs = Q.to_subvectors(z)
        logp = Q.transition_logprob(st["idx"][0], tiny.mu()[0], tiny.bits)
        zt = Q.gumbel_softmax(logp, 0.5, torch.Generator().manual_seed(0)) @ tiny.codebooks[0]
    assert torch.allclose(seen["zhat"].detach(), Q.from_subvectors(zt, 8, 8), atol=1e-6)
    assert not torch.allclose(seen["zhat"].detach(), z.detach(), atol=1e-3)  # not z itself
    assert torch.allclose(z.grad, seen["zhat"].grad, atol=1e-9)
    assert float(z.grad.abs().sum()) > 0


def test_copy_codebook_follows_algorithm_1(tiny):
    with torch.no_grad():
        tiny.codebooks[0].normal_()
    tiny.copy_codebook(0, 1)
    tiny.copy_codebook(1, 4)  # mu^(1) = 0.01 < mu_min^(5) = 0.05: clipped up
    assert torch.equal(tiny.codebooks[1], tiny.codebooks[0])
    mu = tiny.mu().detach()
    assert torch.allclose(mu[1], mu[0], rtol=1e-3)
    assert float(mu[4].min()) >= 0.05


def test_data_init_uses_encoder_outputs(tiny):
    z = torch.randn(8, 4, 8, 8) * 3 + 10
    tiny.init_codebook_from_data(z, 0, torch.Generator().manual_seed(0))
    assert abs(float(tiny.codebooks[0].detach().mean()) - 10) < 1.0


def test_reconstruct_with_half_flip_probability_changes_labels(tiny):
    x = torch.randn(2, 3, 32, 32)
    clean = tiny.reconstruct(x, 0)
    again = tiny.reconstruct(x, 0, flip_mu=torch.zeros(64, 9))
    assert torch.equal(clean, again)
    noisy = tiny.reconstruct(x, 0, flip_mu=torch.full((64, 9), 0.5), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(clean, noisy)
    assert np.isfinite(noisy.numpy()).all()


# ---------------- construction details the shape tests do not see (mutants that survived earlier) ----------------
def test_resblock_adds_the_residual_branch():
    from escmvq.training.model import ResBlock

    torch.manual_seed(0)
    blk = ResBlock(4, 3)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        want = x + blk.conv1(torch.relu(blk.conv3(torch.relu(x))))
        assert torch.allclose(blk(x), want, atol=0) and not torch.allclose(blk(x), x)


@pytest.mark.parametrize("hidden,half", [(1, 1), (2, 1), (3, 1), (8, 4)])
def test_encoder_decoder_layers_of_vqvae(hidden, half):
    """[19]'s layout: 4x4/2 convs (padding 1) with hidden/2 then hidden channels, mirrored by
    the decoder's transposed convs; ``hidden < 2`` keeps one channel."""
    from escmvq.training.model import Decoder, Encoder

    enc, dec = Encoder(hidden, 2, 1, 4), Decoder(hidden, 2, 1, 4)
    assert enc.conv1.weight.shape == (half, 3, 4, 4) and enc.conv2.weight.shape == (hidden, half, 4, 4)
    assert dec.up1.weight.shape == (hidden, half, 4, 4) and dec.up2.weight.shape == (half, 3, 4, 4)
    for conv in (enc.conv1, enc.conv2, dec.up1, dec.up2):
        assert conv.stride == (2, 2) and conv.padding == (1, 1)
    assert enc(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 4, 4)
    assert dec(torch.zeros(1, 4, 4, 4)).shape == (1, 3, 16, 16)
    assert enc.sq_channels is None and dec.sq_channels is None
    sq_enc, sq_dec = Encoder(hidden, 2, 1, 1, sq_channels=3), Decoder(hidden, 2, 1, 1, sq_channels=3)
    assert sq_enc.sq_channels == 3 and sq_dec.sq_channels == 3
    z = sq_enc(torch.randn(2, 3, 16, 16))
    assert z.shape == (2, 1, 4, 12) and float(z.detach().abs().max()) <= 1.0  # tanh-bounded, laid out in a row
    assert sq_dec(z).shape == (2, 3, 16, 16)


def test_initial_codebooks_and_mu(tiny):
    """Codebooks start uniform in [-1/K, 1/K) from a fixed seed (reproducible models);
    mu starts at max(mu_init, 1.01 mu_min^(v)); the bit table is not saved in checkpoints."""
    p = tiny.preset
    V, K, D = p.V, p.K, p.D
    want = (torch.rand(V, K, D, generator=torch.Generator().manual_seed(0)) * 2 - 1) / K
    assert torch.equal(tiny.codebooks.detach(), want)
    assert torch.equal(ESCMVQ(p).codebooks.detach(), want)  # same seed every time
    assert tiny.codebooks.requires_grad and tiny.mu_raw.requires_grad
    mu0 = [max(p.mu_init, 1.01 * m) for m in p.mu_min]
    assert torch.allclose(tiny.mu().detach(), torch.tensor(mu0)[:, None, None].expand(V, p.N, p.B), rtol=2e-4)
    assert tiny.mu_min.dtype == torch.float32 and torch.equal(tiny.mu_min, torch.tensor(p.mu_min))
    assert "bits" not in tiny.state_dict() and "mu_min" in tiny.state_dict()


def test_forward_refuses_a_latent_of_another_size_and_returns_z(tiny):
    with pytest.raises(ValueError, match="latent has 144 sub-vectors, the model's mu expects N=64"):
        tiny(torch.randn(1, 3, 48, 48), 1, 0.5)
    x = torch.randn(2, 3, 32, 32)
    _, st = tiny(x, 2, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(st["z"], tiny.encoder(x).detach())
    assert st["d0"].shape == st["d1"].shape == st["R"].shape == (2,)
    assert torch.all(st["R"] < 0)  # mean(mu log mu) < 0 for mu in (0, 1)


def test_fixed_mu_baseline_model():
    """BSC+VQ: mu is the constant of the baseline everywhere, not trained, and (22) is off."""
    from escmvq.training.baselines import baseline_preset

    m = ESCMVQ(baseline_preset(get_preset("tiny"), "bsc-vq", 0.05))
    assert torch.equal(m.mu(), torch.full_like(m.mu_raw, 0.05))
    assert not m.mu_raw.requires_grad and m.codebooks.requires_grad
    loss, st = m(torch.randn(2, 3, 32, 32), 1, 0.5, torch.Generator().manual_seed(0))
    assert float(st["R"][0]) == 0.0
    loss.backward()
    assert m.mu_raw.grad is None and float(m.codebooks.grad.abs().sum()) > 0


def test_blindsc_model_uses_its_own_regulariser():
    """BlindSC (Sec. V): trained mu with R = (mean(mu) - 0.5)^2 instead of (22)."""
    from escmvq.training.baselines import baseline_preset

    m = ESCMVQ(baseline_preset(get_preset("tiny"), "blindsc", 3))
    assert m.preset.regulariser == "mse-half" and m.mu_raw.requires_grad
    _, st = m(torch.randn(2, 3, 32, 32), 1, 0.5, torch.Generator().manual_seed(0))
    assert float(st["R"][0]) == pytest.approx(float((m.mu()[0].detach().mean() - 0.5) ** 2), rel=1e-6)
