"""The network, the multi-codebook loss (27)-(29), straight-through (14) and Algorithm 1's copy."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training.model import ESCMVQ  # noqa: E402
from escmvq.training.presets import PRESET_NAMES, get_preset  # noqa: E402


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


def test_task_loss_gives_codebook_no_gradient_through_straight_through(tiny):
    # d0 alone: the decoder input z + sg(z~ - z) carries no gradient to codebooks or mu (NOTES)
    x = torch.randn(2, 3, 32, 32)
    _, st = tiny(x, 1, 0.5, torch.Generator().manual_seed(0))
    z = tiny.encoder(x)
    zs = z.permute(0, 2, 3, 1).reshape(2, 64, 4)
    e = torch.softmax(torch.randn(2, 64, 512), -1)
    zt = e @ tiny.codebooks[0]
    zhat = zs + (zt - zs).detach()
    xh = tiny.decoder(zhat.reshape(2, 8, 8, 4).permute(0, 3, 1, 2))
    ((xh - x) ** 2).mean().backward()
    assert tiny.codebooks.grad is None or float(tiny.codebooks.grad.abs().sum()) == 0.0
    assert float(tiny.encoder.proj.weight.grad.abs().sum()) > 0


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
