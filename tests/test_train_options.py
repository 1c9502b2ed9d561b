"""The trainer's robustness options on the ``tiny`` preset: commitment to the clean codeword, an
encoder shielded from the noisy codebooks, joint schedules, Gray/erasure noise, and the
``--init-from`` fine-tune. Every option is off by default (the paper's Algorithm 1)."""
import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training import quantizer as Q  # noqa: E402
from escmvq.training.model import ESCMVQ  # noqa: E402
from escmvq.training.presets import get_preset  # noqa: E402
from train_helpers import run_keeping_latent  # noqa: E402


def _model(**kw):
    torch.manual_seed(0)
    return ESCMVQ(get_preset("tiny").replace(**kw))


def _loss_of(monkeypatch, pick):
    """Replace (27) by ``pick(d0s, d1s, Rs)`` so a backward pass isolates one term."""
    from escmvq.training import model as M

    monkeypatch.setattr(M.L, "multi_codebook_loss", lambda d0s, d1s, Rs, lambdas, eta: pick(d0s, d1s, Rs))


def _noisy(m, mu=0.3):
    """Every codebook's mu at ``mu`` (a heavily corrupted sample) and distinct codebooks."""
    with torch.no_grad():
        m.mu_raw.data[:] = Q.raw_from_mu(torch.tensor(mu), float(m.mu_min.max()))
        m.codebooks.data[:] = torch.randn_like(m.codebooks) * 0.5


def test_defaults_are_the_paper_algorithm():
    for name in ("paper", "cpu", "tiny"):
        p = get_preset(name)
        assert (p.commit_clean, p.encoder_grad_codebooks, p.schedule, p.joint_init, p.noise, p.erase_prob) == \
            (False, None, "sequential", "copy", "bsc", None)


@pytest.mark.parametrize("kw,msg", [
    ({"encoder_grad_codebooks": 0}, "encoder_grad_codebooks"), ({"encoder_grad_codebooks": 6}, "encoder_grad_codebooks"),
    ({"schedule": "random"}, "schedule"), ({"noise": "awgn"}, "noise"), ({"joint_init": "zero"}, "joint_init"),
    ({"erase_prob": (0.1,)}, "erase_prob"), ({"erase_prob": (0, 0, 0, 0, 1.0)}, "erase_prob"),
    ({"erase_dist": "normal"}, "erase_dist"), ({"erase_prob": (0, 0, 0, 0, 0.6), "erase_dist": "uniform"}, "at most 0.5"),
])
def test_bad_options_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_preset("tiny").replace(**kw)


def _commitment_check(m, x):
    """Recompute (25) with the same Gumbel draw; return (d1 reported, d1 on the sample, d1 clean)."""
    z = m.encoder(x)
    _, st = m(x, 1, 0.5, torch.Generator().manual_seed(3))
    with torch.no_grad():
        zs = Q.to_subvectors(z)
        idx = Q.nearest(zs, m.codebooks[0])
        logp = Q.transition_logprob(idx, m.mu()[0], m.bits)
        zt = Q.gumbel_softmax(logp, 0.5, torch.Generator().manual_seed(3)) @ m.codebooks[0]
        zq = m.codebooks[0][idx]
        beta = m.preset.beta
        on_sample = float(((zt - zs) ** 2).mean() * (1 + beta))
        clean = float(((zt - zs) ** 2).mean() + beta * ((zs - zq) ** 2).mean())
    return float(st["d1"][0]), on_sample, clean


@pytest.mark.parametrize("clean", [False, True])
def test_commitment_target_is_the_clean_codeword(clean):
    m = _model(commit_clean=clean)
    _noisy(m)
    x = torch.randn(4, 3, 32, 32)
    got, on_sample, on_clean = _commitment_check(m, x)
    assert abs(on_sample - on_clean) > 1e-3 * on_sample  # the corrupted sample is not the codeword
    assert got == pytest.approx(on_clean if clean else on_sample, rel=1e-5)


def test_commit_clean_gradient_pulls_encoder_to_nearest_codeword(monkeypatch):
    """d1's gradient w.r.t. z is beta * 2 (z - z_q) / n with the option (z_q the nearest codeword)."""
    m = _model(commit_clean=True)
    _noisy(m)
    _loss_of(monkeypatch, lambda d0s, d1s, Rs: d1s.sum())
    loss, st, z_enc = run_keeping_latent(m, torch.randn(2, 3, 32, 32))
    z = z_enc.detach()
    zq = Q.from_subvectors(m.codebooks[0][st["idx"][0]].detach(), 8, 8)
    want = m.preset.beta * 2 * (z - zq) / z.numel()
    assert torch.allclose(z_enc.grad, want, atol=1e-9)


@pytest.mark.parametrize("k", [None, 1, 2])
def test_noisy_codebooks_send_no_gradient_into_the_encoder(monkeypatch, k):
    """With encoder_grad_codebooks=k, the d0 and d1 of codebooks > k reach the decoder and
    their codebooks but not the encoder; without it (None) they reach the encoder."""
    stage = 3
    for term in ("d0", "d1"):
        m = _model(encoder_grad_codebooks=k)
        _noisy(m, 0.05)
        first = 2 if k is None else k  # the codebooks whose terms we keep: > first
        if term == "d0":
            _loss_of(monkeypatch, lambda d0s, d1s, Rs: d0s[first:].sum())
        else:
            _loss_of(monkeypatch, lambda d0s, d1s, Rs: d1s[first:].sum())
        loss, _ = m(torch.randn(2, 3, 32, 32), stage, 0.5, torch.Generator().manual_seed(0))
        loss.backward()
        enc = sum(float(p.grad.abs().sum()) for p in m.encoder.parameters() if p.grad is not None)
        if k is None:
            assert enc > 0, term
        else:
            assert enc == 0.0, term
        if term == "d0":
            assert float(m.decoder.conv_in.weight.grad.abs().sum()) > 0
        else:
            assert float(m.codebooks.grad[first:stage].abs().sum()) > 0 and float(m.mu_raw.grad[first:stage].abs().sum()) > 0


def test_encoder_still_learns_from_the_clean_codebooks(monkeypatch):
    m = _model(encoder_grad_codebooks=1)
    _loss_of(monkeypatch, lambda d0s, d1s, Rs: d0s[0])
    loss, _ = m(torch.randn(2, 3, 32, 32), 3, 0.5, torch.Generator().manual_seed(0))
    loss.backward()
    assert float(m.encoder.proj.weight.grad.abs().sum()) > 0


def test_options_off_give_the_paper_loss_bit_for_bit():
    """The defaults spelled out give the same loss and gradients as the preset without them."""
    x = torch.randn(2, 3, 32, 32)
    out = []
    for kw in ({}, {"commit_clean": False, "encoder_grad_codebooks": 5, "schedule": "sequential", "noise": "bsc"}):
        m = _model(**kw)
        loss, _ = m(x, 3, 0.5, torch.Generator().manual_seed(0))
        loss.backward()
        out.append((float(loss.detach()), m.encoder.proj.weight.grad.clone()))
    assert out[0][0] == out[1][0] and torch.equal(out[0][1], out[1][1])


def test_joint_draw_decodes_each_sample_once():
    m = _model(schedule="joint-draw")
    sizes = []
    m.decoder.register_forward_pre_hook(lambda mod, inp: sizes.append(inp[0].shape[0]))
    b = 64
    loss, st = m(torch.randn(b, 3, 32, 32), 5, 0.5, torch.Generator().manual_seed(0))
    assert sizes == [b]  # one pass over the batch, not 5 x b
    assert st["d0"].shape == (5,) and st["idx"].shape == (5, b, 64) and math.isfinite(float(loss.detach()))
    loss.backward()
    assert float(m.codebooks.grad.abs().sum(dim=(1, 2)).min()) > 0  # every codebook trains (d1)


def test_joint_draw_frequencies_follow_the_stage_weights(monkeypatch):
    from escmvq.training import losses as L

    m = _model(schedule="joint-draw")
    drawn = []
    orig = torch.multinomial

    def spy(*a, **k):
        r = orig(*a, **k)
        drawn.append(r)
        return r

    monkeypatch.setattr(torch, "multinomial", spy)
    x = torch.randn(8, 3, 32, 32)
    seen = []
    m.decoder.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
    zs_all = []
    orig_from = Q.from_subvectors
    monkeypatch.setattr(Q, "from_subvectors", lambda zs, h, w: zs_all.append(orig_from(zs, h, w).detach()) or zs_all[-1])
    m(x, 5, 0.5, torch.Generator().manual_seed(0))
    (d,) = drawn
    assert d.shape == (8,) and int(d.max()) <= 4
    # sample i's decoder input is codebook d[i]'s straight-through input
    for i in range(8):
        assert torch.equal(seen[0][i], zs_all[int(d[i])][i])
    # drawn with (27)'s weights eta^u / sum eta^k
    w = L.stage_weights(5, m.preset.eta)
    drawn.clear()
    m(torch.randn(600, 3, 8, 8).repeat(1, 1, 4, 4), 5, 0.5, torch.Generator().manual_seed(1))
    freq = torch.bincount(drawn[0], minlength=5).double() / 600
    assert torch.allclose(freq, w.double(), atol=0.06)
    assert float(freq[0]) > float(freq[4]) + 0.05


def test_gray_noise_flip_probabilities():
    """Each bit's flip probability is the strong or weak Gray 16-QAM position BER at the power
    that meets mu on average: 2/3 mu and 4/3 mu for small mu, averaging to mu."""
    from escmvq.core.ber import GrayQamExact

    m = _model(noise="gray")
    mu = torch.tensor([[1e-3, 0.05, 0.2]]).expand(64, 3).contiguous()
    eff = m._gray_mu(mu, 2000, torch.Generator().manual_seed(0))
    assert eff.shape == (2000, 64, 3)
    g = GrayQamExact()
    for j, mj in enumerate((1e-3, 0.05, 0.2)):
        pos = g.ber_positions(g.power(np.array(mj), 4), 4)
        vals = torch.unique(eff[..., j].round(decimals=7))
        assert len(vals) == 2
        assert sorted(vals.tolist()) == pytest.approx(sorted([pos[0], 2 * mj - pos[0]]), rel=1e-3)
        assert float(eff[..., j].mean()) == pytest.approx(mj, rel=0.01)
    mu_req = torch.full((64, 9), 0.05, requires_grad=True)
    m._gray_mu(mu_req, 3, None).sum().backward()
    assert float(mu_req.grad.abs().sum()) > 0  # mu still learns through the sample


def test_gray_erasures_feed_the_mean_latent():
    m = _model(noise="gray", erase_prob=(0.0, 0.0, 0.0, 0.0, 0.6))
    seen = []
    m.decoder.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
    x = torch.randn(16, 3, 32, 32)
    m(x, 5, 0.5, torch.Generator().manual_seed(0))
    zin = Q.to_subvectors(seen[0].reshape(5, 16, 4, 8, 8)[4])  # codebook 5's decoder input
    zmean = Q.to_subvectors(m.encoder(x)).detach().mean(0)
    erased = torch.isclose(zin, zmean[None].expand_as(zin), atol=1e-6).all(-1)
    assert 0.45 < float(erased.float().mean()) < 0.75
    zin1 = Q.to_subvectors(seen[0].reshape(5, 16, 4, 8, 8)[0])
    assert float(torch.isclose(zin1, zmean[None].expand_as(zin1), atol=1e-6).all(-1).float().mean()) < 0.05


# ---------------- trainer: joint schedule, --init-from ----------------
def _data(n=40):
    from escmvq.training.data import ImageSet
    from escmvq.training.trainer import synthetic_images

    imgs = synthetic_images(n, 32, 1)
    return ImageSet("synthetic", imgs[8:], imgs[:8])


@pytest.mark.parametrize("schedule,joint_init", [("joint", "copy"), ("joint-draw", "data")])
def test_joint_schedule_trains_every_codebook_from_the_start(tmp_path, schedule, joint_init):
    from escmvq.training.trainer import TrainConfig, train

    p = get_preset("tiny").replace(schedule=schedule, joint_init=joint_init, epochs_per_stage=(1, 0, 1, 0, 1))
    res = train(TrainConfig(preset=p, data=_data(), out=tmp_path, progress=False))
    h = res["summary"]["history"]
    assert [r["stage"] for r in h] == [5, 5, 5]  # one stage, the sum of the epochs
    assert all(len(r["eval_psnr"]) == 5 for r in h)
    cb = res["model"].codebooks.detach()
    same = [torch.equal(cb[0], cb[v]) for v in range(1, 5)]
    assert not any(same)  # trained apart (and for "data", initialised apart)


@pytest.mark.parametrize("joint_init", ["copy", "data"])
def test_joint_init_copies_or_data_initialises(tmp_path, joint_init):
    """Before any step: "copy" gives V equal codebooks (Algorithm 1's copy, all at once),
    "data" V different ones, each drawn from encoder outputs (not the tiny random init)."""
    from escmvq.training.trainer import TrainConfig, train

    p = get_preset("tiny").replace(schedule="joint", joint_init=joint_init, epochs_per_stage=(0, 0, 0, 0, 0))
    m = train(TrainConfig(preset=p, data=_data(), out=tmp_path, progress=False))["model"]
    cb = m.codebooks.detach()
    K = p.K
    assert all(float(cb[v].abs().max()) > 10.0 / K for v in range(5))  # data-derived, not U(-1/K, 1/K)
    same = [torch.equal(cb[0], cb[v]) for v in range(1, 5)]
    assert all(same) if joint_init == "copy" else not any(same)


def test_init_from_loads_weights_and_clips_mu_to_new_floors(tmp_path):
    from escmvq.training.checkpoint import load_checkpoint
    from escmvq.training.trainer import TrainConfig, build_tiny_checkpoint, train

    ck = build_tiny_checkpoint(tmp_path / "src.ckpt")
    src, _ = load_checkpoint(ck)
    floors = (0.0005, 0.002, 0.01, 0.05, 0.2)
    p = get_preset("tiny").replace(mu_min=floors, epochs_per_stage=(0, 0, 0, 0, 0))
    res = train(TrainConfig(preset=p, data=_data(), out=tmp_path / "ft", progress=False, init_from=ck))
    m = res["model"]
    for a, b in zip(m.encoder.state_dict().values(), src.encoder.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(m.codebooks.detach(), src.codebooks.detach())
    want = torch.maximum(src.mu().detach(), 1.01 * torch.tensor(floors)[:, None, None])
    assert torch.allclose(m.mu().detach(), want, rtol=1e-3)
    # one fine-tune epoch on the last stage: the loaded codebooks are not re-initialised / copied
    p1 = p.replace(epochs_per_stage=(0, 0, 0, 0, 1), steps_per_epoch=1, lr=1e-6)
    m1 = train(TrainConfig(preset=p1, data=_data(), out=tmp_path / "ft1", progress=False, init_from=ck,
                           dead_restart=False))["model"]
    assert float((m1.codebooks.detach() - src.codebooks.detach()).abs().max()) < 1e-3


def test_init_from_refuses_another_architecture(tmp_path):
    from escmvq.training.trainer import TrainConfig, build_tiny_checkpoint, train

    ck = build_tiny_checkpoint(tmp_path / "src.ckpt")
    p = get_preset("tiny").replace(hidden=32, epochs_per_stage=(0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="hidden"):
        train(TrainConfig(preset=p, data=_data(), out=tmp_path / "ft", progress=False, init_from=ck))


def test_cli_flags_reach_the_preset(tmp_path):
    from typer.testing import CliRunner
    import typer

    from escmvq.cli import train as train_cli
    from escmvq.training.checkpoint import load_checkpoint
    from escmvq.training.trainer import build_tiny_checkpoint, synthetic_images

    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "train.npz", images=synthetic_images(24, 32, 1))
    np.savez(d / "test.npz", images=synthetic_images(8, 32, 2))
    ck = build_tiny_checkpoint(tmp_path / "src.ckpt")
    app = typer.Typer(pretty_exceptions_enable=False)
    train_cli.register(app)
    args = ["train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(d), "--out", str(tmp_path / "run"),
            "--threads", "1", "--commit-clean", "--encoder-grad-codebooks", "1", "--schedule", "joint-draw",
            "--noise", "gray", "--erase-prob", "0,0,0,0,0.2", "--erase-dist", "uniform", "--mu-min", "0.0005,0.002,0.01,0.05,0.2",
            "--lr", "0.0003", "--tau0", "0.25", "--epochs", "0,0,0,0,1", "--decoder-cond", "codebook",
            "--cond-mix", "0.2", "--init-from", str(ck)]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output + repr(r.exception)
    m, c = load_checkpoint(tmp_path / "run" / "final.ckpt")
    p = m.preset
    assert (p.commit_clean, p.encoder_grad_codebooks, p.schedule, p.noise) == (True, 1, "joint-draw", "gray")
    assert p.erase_prob == (0, 0, 0, 0, 0.2) and p.erase_dist == "uniform" and p.mu_min == (0.0005, 0.002, 0.01, 0.05, 0.2)
    assert (p.lr, p.tau0) == (0.0003, 0.25) and c["init_from"] == str(ck)
    assert (p.decoder_cond, p.cond_mix) == ("codebook", 0.2) and m.decoder.cond_channels == p.V + 1
    r = CliRunner().invoke(app, args[:-1] + [str(tmp_path / "missing.ckpt")], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "--init-from" in r.output
    assert dataclasses.asdict(p)["schedule"] == "joint-draw"
    # --codebooks 6 from the 5-codebook checkpoint: a sixth codebook, lambda doubled for it
    six = ["--codebooks", "6", "--mu-min", "0.0005,0.002,0.01,0.05,0.1,0.2", "--epochs", "0,0,0,0,0,1",
           "--erase-prob", "0,0,0,0,0.2,0.2"]
    r = CliRunner().invoke(app, args[:-1] + [str(ck), *six, "--out", str(tmp_path / "six")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output + repr(r.exception)
    m6, _ = load_checkpoint(tmp_path / "six" / "final.ckpt")
    assert m6.preset.V == 6 and m6.preset.lambdas == p.lambdas + (2 * p.lambdas[-1],)
    assert m6.codebooks.shape[0] == 6 and m6.decoder.cond_channels == 7
    r = CliRunner().invoke(app, args[:-1] + [str(ck), "--codebooks", "6"], env={"COLUMNS": "200"})
    assert r.exit_code != 0 and "need V=6 entries" in r.output


# ---------------- what the mutation run found untested in forward ----------------
@pytest.mark.parametrize("kw,stage", [
    ({"noise": "gray", "erase_prob": (0.0, 0.0, 0.0, 0.2, 0.4)}, 5),
    ({"decoder_cond": "codebook", "cond_mix": 0.5, "noise": "gray", "erase_prob": (0.0, 0.3, 0.0, 0.0, 0.0)}, 3),
    ({"schedule": "joint-draw"}, 4),
    ({"decoder_input": "posterior", "noise": "gray"}, 2),
])
def test_every_draw_comes_from_the_given_generator(kw, stage):
    """Flips, erasures, mixing, the joint-draw codebook and the posterior's received labels are
    drawn from the generator passed to forward, so a seed reproduces a training step whatever
    the global RNG did before."""
    x = torch.randn(6, 3, 32, 32)
    out = []
    for global_seed in (1, 2):
        m = _model(**kw)
        torch.manual_seed(global_seed)
        loss, st = m(x, stage, 0.5, torch.Generator().manual_seed(7))
        out.append((float(loss.detach()), st["d0"].clone()))
    assert out[0][0] == out[1][0] and torch.equal(out[0][1], out[1][1])


def test_gray_noise_reaches_the_sample(monkeypatch):
    """With noise="gray" forward draws each pass's sample from the per-position flip
    probabilities of _gray_mu, not from mu itself."""
    m = _model(noise="gray")
    calls = []
    orig = m._gray_mu

    def spy(mu, b, generator):
        out = orig(mu, b, generator)
        calls.append(out)
        return out

    monkeypatch.setattr(m, "_gray_mu", spy)
    seen = []
    monkeypatch.setattr(Q, "transition_logprob", lambda sent, mu, table, f=Q.transition_logprob: seen.append(mu) or f(sent, mu, table))
    m(torch.randn(3, 3, 32, 32), 2, 0.5, torch.Generator().manual_seed(0))
    assert len(calls) == 2 and len(seen) == 2
    assert all(s is c for s, c in zip(seen, calls)) and calls[0].shape == (3, *m.mu().shape[1:])


def test_joint_draw_at_one_codebook_is_the_sequential_loss():
    """With one codebook every sample is decoded through it, so the joint-draw loss (its d0
    estimate plus the weighted d1 and R) is the sequential loss (27) of stage 1, term by term."""
    x = torch.randn(5, 3, 32, 32)
    res = {}
    for schedule in ("sequential", "joint-draw"):
        m = _model(schedule=schedule)
        loss, st = m(x, 1, 0.5, torch.Generator().manual_seed(3))
        res[schedule] = (loss, st)
    (ls, ss), (lj, sj) = res["sequential"], res["joint-draw"]
    assert torch.allclose(lj, ls, rtol=1e-5, atol=1e-7)
    for k in ("d0", "d1", "R"):
        assert torch.allclose(sj[k], ss[k], rtol=1e-5, atol=1e-7), k
