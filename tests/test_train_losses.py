"""The loss terms of escmvq.training.losses called directly: values and gradients
(the regulariser's sign and d1's stop-gradients are otherwise unguarded)."""
import math

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training import losses as L  # noqa: E402


def test_regulariser_value_is_mean_of_mu_log_mu():
    mu = torch.tensor([[0.1, 0.2], [0.3, 0.5]], dtype=torch.float64)
    want = (0.1 * math.log(0.1) + 0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5)) / 4
    assert float(L.regulariser(mu)) == pytest.approx(want, rel=1e-12)
    assert float(L.regulariser(mu, "xlogx")) == pytest.approx(want, rel=1e-12)
    assert want < 0  # x log x < 0 on (0, 1)


def test_regulariser_minimum_is_one_over_e():
    """R is minimised at mu = 1/e (22), evaluated through ``regulariser`` itself."""
    grid = torch.linspace(0.001, 0.5, 4991, dtype=torch.float64)
    r = torch.stack([L.regulariser(m.reshape(1, 1)) for m in grid])
    assert float(grid[r.argmin()]) == pytest.approx(1 / math.e, abs=2e-4)
    assert float(r.min()) == pytest.approx(-1 / math.e, rel=1e-6)


@pytest.mark.parametrize("m", [0.01, 0.1, 0.3, 0.36, 0.38, 0.45, 0.5])
def test_regulariser_gradient_pushes_mu_towards_one_over_e(m):
    """dR/dmu_ij = (log mu_ij + 1) / (N B): negative below 1/e, so a descent step raises mu."""
    mu = torch.full((3, 4), m, dtype=torch.float64, requires_grad=True)
    L.regulariser(mu).backward()
    g = mu.grad
    assert torch.allclose(g, torch.full_like(g, (math.log(m) + 1) / 12), rtol=1e-12)
    step = mu.detach() - 0.5 * g
    assert abs(float(step[0, 0]) - 1 / math.e) < abs(m - 1 / math.e)  # a descent step moves towards 1/e


def test_blindsc_regulariser_and_unknown_kind():
    mu = torch.tensor([0.1, 0.3], dtype=torch.float64, requires_grad=True)
    r = L.regulariser(mu, "mse-half")
    assert float(r.detach()) == pytest.approx((0.2 - 0.5) ** 2)
    r.backward()
    assert torch.allclose(mu.grad, torch.full((2,), 2 * (0.2 - 0.5) / 2, dtype=torch.float64))  # pushes mu up
    with pytest.raises(ValueError, match="unknown regulariser"):
        L.regulariser(mu, "entropy")


def test_d1_value_and_stop_gradients():
    """d1 = ||sg(z) - z~||^2 + beta ||z - sg(z~)||^2 (element means): the codebook term moves
    only z~ (codebooks, mu), the commitment term only z (the encoder), scaled by beta."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    beta = 0.25
    d = L.d1(z, zt, beta)
    diff = (z - zt).detach()
    n = diff.numel()
    assert float(d.detach()) == pytest.approx((1 + beta) * float((diff ** 2).mean()), rel=1e-12)
    d.backward()
    assert torch.allclose(z.grad, beta * 2 * diff / n, rtol=1e-12, atol=0)  # commitment only (not (1 + beta))
    assert torch.allclose(zt.grad, -2 * diff / n, rtol=1e-12, atol=0)  # codebook term only (not beta's)


def test_d1_encoder_gradient_scales_with_beta_only():
    z = torch.ones(1, 2, 2, dtype=torch.float64, requires_grad=True)
    zt = torch.zeros(1, 2, 2, dtype=torch.float64, requires_grad=True)
    grads = []
    for beta in (0.0, 1.0):
        z.grad = zt.grad = None
        L.d1(z, zt, beta).backward()
        grads.append((z.grad.clone(), zt.grad.clone()))
    assert torch.count_nonzero(grads[0][0]) == 0  # beta = 0: the encoder gets nothing from d1
    assert torch.equal(grads[0][1], grads[1][1])  # the codebook side does not depend on beta


def test_d0_per_codebook_and_multi_codebook_loss():
    x = torch.full((2, 3, 2, 2), 0.5, dtype=torch.float64)
    x[1] = -0.25
    xh = torch.stack([x + 1.0, x - 2.0])
    d0 = L.d0_per_codebook(xh, x)
    assert torch.allclose(d0, torch.tensor([1.0, 4.0], dtype=torch.float64), rtol=0, atol=1e-15)
    w = L.stage_weights(3, 0.8, torch.float64)
    assert torch.allclose(w, torch.tensor([0.8, 0.64, 0.512], dtype=torch.float64) / 1.952)
    d0s = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    d1s = torch.tensor([0.5, 0.25, 0.0], dtype=torch.float64)
    Rs = torch.tensor([-0.2, -0.3, -0.1], dtype=torch.float64)
    lam = (0.1, 0.3, 0.7, 1.0)  # not exact in float32: the loss keeps the terms' dtype (float64 here)
    got = L.multi_codebook_loss(d0s, d1s, Rs, lam, 0.8)
    assert got.dtype == torch.float64
    per = [1.0 + 0.5 + 0.1 * -0.2, 2.0 + 0.25 + 0.3 * -0.3, 3.0 + 0.0 + 0.7 * -0.1]
    assert float(got) == pytest.approx(sum(wi * p for wi, p in zip([0.8, 0.64, 0.512], per)) / 1.952, rel=1e-15)
