"""The reliability-aware decoder (``decoder_cond="codebook"``): the codebook map in core and
in training, its zero-initialised conditioning, the maps the training passes build
(codebook, erasures, mixing), the fine-tune from an unconditioned checkpoint, and the
exported two-input decoder that the runtime's receiver feeds with the plan's codebooks."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.core import pvq  # noqa: E402
from escmvq.training import quantizer as Q  # noqa: E402
from escmvq.training.model import ESCMVQ  # noqa: E402
from escmvq.training.presets import get_preset  # noqa: E402

COND = {"decoder_cond": "codebook"}


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return ESCMVQ(get_preset("tiny").replace(**kw))


def test_default_presets_have_no_conditioning():
    for name in ("paper", "cpu", "tiny"):
        p = get_preset(name)
        assert (p.decoder_cond, p.cond_mix, p.cond_channels) == (None, 0.0, 0)
    assert get_preset("tiny").replace(**COND).cond_channels == 6


@pytest.mark.parametrize("kw,msg", [
    ({"decoder_cond": "ber"}, "decoder_cond"),
    ({"decoder_cond": "codebook", "quantizer": "sq", "D": 1}, "vector quantizer"),
    ({"cond_mix": 0.2}, "cond_mix needs"),
    ({"decoder_cond": "codebook", "cond_mix": 1.0}, "cond_mix"),
])
def test_bad_settings_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_preset("tiny").replace(**kw)


def test_codebook_map_layout_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    cbs = rng.integers(0, 6, (3, 12))
    m = pvq.codebook_map(cbs, 5, 3, 4)
    assert m.shape == (3, 6, 3, 4) and m.dtype == np.float32
    assert np.array_equal(m.sum(1), np.ones((3, 3, 4)))
    # sub-vector n sits where from_subvectors puts it (raster): channel cbs[b, n] is 1 there
    assert np.array_equal(pvq.to_subvectors(m).argmax(-1), cbs)
    assert np.array_equal(Q.codebook_map(torch.from_numpy(cbs), 5, 3, 4).numpy(), m)
    with pytest.raises(ValueError, match="0..5"):
        pvq.codebook_map(np.full((1, 12), 6), 5, 3, 4)
    with pytest.raises(ValueError, match="expected"):
        pvq.codebook_map(np.zeros((1, 11), int), 5, 3, 4)


def test_fresh_conditioning_computes_the_unconditioned_decoder_then_learns():
    m0, m1 = _model(), _model(**COND)
    missing, unexpected = m1.load_state_dict(m0.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("decoder.cond_") for k in missing)
    z = torch.randn(2, 4, 8, 8)
    cbs = torch.randint(0, 6, (2, 64))
    assert torch.equal(m0.decode(z, 0), m1.decode(z, cbs))
    with pytest.raises(ValueError, match="codebook map"):
        m1.decoder(z)
    loss, _ = m1(torch.randn(4, 3, 32, 32), 5, 0.5, torch.Generator().manual_seed(0))
    loss.backward()
    assert float(m1.decoder.cond_in.weight.grad.abs().sum()) > 0
    assert all(float(c.weight.grad.abs().sum()) > 0 for c in m1.decoder.cond_res)
    # once trained, the map changes the output
    with torch.no_grad():
        m1.decoder.cond_in.weight.normal_()
    assert not torch.allclose(m1.decode(z, 0), m1.decode(z, 4))


def _capture(monkeypatch, m):
    """Record every decoder call's (z, cond); make the Gumbel sample the hard codeword of
    the flipped label (so the decoder input of a sub-vector is exactly a codeword)."""
    seen = []
    orig = m.decoder.forward

    def fwd(z, cond=None):
        seen.append((z.detach(), None if cond is None else cond.detach()))
        return orig(z, cond)

    monkeypatch.setattr(m.decoder, "forward", fwd)
    monkeypatch.setattr(Q, "gumbel_softmax", lambda logp, tau, g: torch.nn.functional.one_hot(
        logp.argmax(-1), logp.shape[-1]).to(logp.dtype))
    return seen


def test_training_maps_mark_each_pass_codebook_and_the_erasures(monkeypatch):
    m = _model(**COND, noise="gray", erase_prob=(0, 0, 0, 0, 0.5))
    seen = _capture(monkeypatch, m)
    x = torch.randn(8, 3, 32, 32)
    m(x, 5, 0.5, torch.Generator().manual_seed(1))
    (z, cond), = seen
    cond = cond.reshape(5, 8, 6, 8, 8)
    for u in range(4):
        assert torch.all(cond[u, :, u] == 1)
    er = cond[4, :, 5] == 1
    assert torch.all(cond[4, :, 4] == (~er).float())
    assert 0.35 < float(er.float().mean()) < 0.65
    # erased positions get the batch-mean latent, as the receiver's substitute
    zmean = Q.to_subvectors(m.encoder(x)).mean(0).detach()
    zs5 = Q.to_subvectors(z.reshape(5, 8, 4, 8, 8)[4])
    assert torch.allclose(zs5[Q.to_subvectors(er[:, None].float())[..., 0] == 1],
                          zmean.expand(8, -1, -1)[Q.to_subvectors(er[:, None].float())[..., 0] == 1])


@pytest.mark.parametrize("dist", ["fixed", "uniform"])
def test_uniform_erasure_rates_spread_per_image(monkeypatch, dist):
    """``erase_dist='uniform'``: each image draws its own erasure rate from [0, 2 erase_prob],
    so some images lose almost nothing and others almost everything (the spread of the
    allocator's fades); ``'fixed'`` erases every sub-vector with erase_prob (binomial per image)."""
    m = _model(**COND, noise="gray", erase_prob=(0, 0, 0, 0, 0.5), erase_dist=dist)
    seen = _capture(monkeypatch, m)
    m(torch.randn(64, 3, 32, 32), 5, 0.5, torch.Generator().manual_seed(4))
    (_, cond), = seen
    frac = (cond.reshape(5, 64, 6, 8, 8)[4, :, 5] == 1).float().mean((1, 2))  # [64] per image
    assert 0.35 < float(frac.mean()) < 0.65
    if dist == "uniform":
        assert float(frac.std()) > 0.2 and float(frac.min()) < 0.1 and float(frac.max()) > 0.9
    else:
        assert float(frac.std()) < 0.12


def test_mixed_maps_say_which_codebook_each_input_came_from(monkeypatch):
    m = _model(**COND, cond_mix=0.6)
    with torch.no_grad():
        m.codebooks.data[:] = torch.randn_like(m.codebooks)  # distinct codebooks
        m.mu_raw.data[:] = Q.raw_from_mu(torch.tensor(0.00051), 0.05)  # ~no flips
    seen = _capture(monkeypatch, m)
    x = torch.randn(6, 3, 32, 32)
    _, st = m(x, 5, 0.5, torch.Generator().manual_seed(2))
    (z, cond), = seen
    zs = Q.to_subvectors(z)  # [5*6, N, D]
    lab = Q.to_subvectors(cond).argmax(-1)  # [5*6, N]
    # the input of every sub-vector is the codeword of the codebook its map names
    idx = st["idx"]  # [5, 6, N] nearest labels per codebook
    b = torch.arange(6).repeat(5)[:, None]
    n = torch.arange(64)[None, :]
    want = m.codebooks.detach()[lab, idx[lab, b, n]]
    assert torch.allclose(zs, want, atol=1e-6)
    own = torch.arange(5).repeat_interleave(6)[:, None]
    frac = float((lab != own).float().mean())
    assert 0.35 < frac < 0.6  # 0.6 * 4/5 = 0.48 swapped to another codebook


def test_joint_draw_feeds_the_drawn_codebooks_map(monkeypatch):
    m = _model(**COND, schedule="joint-draw")
    seen = _capture(monkeypatch, m)
    m(torch.randn(16, 3, 32, 32), 5, 0.5, torch.Generator().manual_seed(3))
    (z, cond), = seen
    assert cond.shape == (16, 6, 8, 8)
    per_sample = cond.sum((2, 3))  # all 64 sub-vectors on one codebook per sample
    assert torch.all(per_sample.max(1).values == 64)


def test_init_from_unconditioned_checkpoint(tmp_path):
    from escmvq.training.checkpoint import save_checkpoint
    from escmvq.training.trainer import init_weights_from

    src = _model(seed=1)
    ck = save_checkpoint(tmp_path / "a.ckpt", src, src.preset)
    dst = _model(seed=2, **COND)
    init_weights_from(dst, ck)
    z = torch.randn(1, 4, 8, 8)
    assert torch.equal(src.decode(z, 0), dst.decode(z, 3))
    # a conditioned checkpoint into a conditioned model keeps the conditioning weights
    with torch.no_grad():
        dst.decoder.cond_in.weight.normal_()
    ck2 = save_checkpoint(tmp_path / "b.ckpt", dst, dst.preset)
    dst2 = _model(seed=3, **COND)
    init_weights_from(dst2, ck2)
    assert torch.equal(dst2.decoder.cond_in.weight, dst.decoder.cond_in.weight)


@pytest.fixture(scope="module")
def cond_bundle(tmp_path_factory):
    """A tiny reliability-aware checkpoint with trained-looking (random) conditioning
    weights, exported with int8 and statistics (so the allocator has erasure states)."""
    from escmvq.export.pipeline import export_checkpoint
    from escmvq.training.checkpoint import save_checkpoint
    from escmvq.training.trainer import compute_distortion, synthetic_images

    d = tmp_path_factory.mktemp("cond")
    m = _model(seed=4, **COND)
    imgs = synthetic_images(64, 32, 5)
    with torch.no_grad():
        z = m.encoder(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1)
        g = torch.Generator().manual_seed(0)
        for v in range(5):
            m.init_codebook_from_data(z, v, g)
        for c in [m.decoder.cond_in, *m.decoder.cond_res]:
            c.weight.normal_(0, 0.3)
    m.eval()
    table = compute_distortion(m, imgs, torch.full((3,), 0.5), torch.full((3,), 0.5))
    ck = save_checkpoint(d / "c.ckpt", m, m.preset, distortion=table, dataset="synthetic")
    np.save(d / "calib.npy", imgs)
    res = export_checkpoint(ck, d / "c.escmvq", d / "calib.npy", stats_source=d / "calib.npy", n_stats=64,
                            n_calib=32, n_check=16, int8=True, log=lambda s: None)
    return m, res


def test_export_writes_a_two_input_decoder_that_matches_torch(cond_bundle):
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.receiver import Receiver

    m, res = cond_bundle
    assert res.manifest["model"]["decoder_cond"] == "codebook"
    assert set(res.manifest["onnx"]["decoder.onnx"]["inputs"]) == {"z", "cond"}
    assert all(r.ok for r in res.rows)
    b = load_bundle(res.path)
    assert b.decoder_cond == "codebook"
    rx = Receiver(b)
    rng = np.random.default_rng(0)
    zq = rng.normal(size=(3, 4, 8, 8)).astype(np.float32)
    cbs = rng.integers(0, 6, (3, 64))
    with torch.no_grad():
        ref = (m.decode(torch.from_numpy(zq), torch.from_numpy(cbs)) * 0.5 + 0.5).numpy()
    assert np.allclose(rx.decode(zq, cbs), ref, atol=1e-4)
    assert not np.allclose(rx.decode(zq, cbs), rx.decode(zq, np.zeros_like(cbs)), atol=1e-3)
    assert Receiver(b, precision="int8").decode(zq, cbs).shape == (3, 3, 32, 32)


def test_receiver_feeds_the_plans_codebooks(cond_bundle, monkeypatch):
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    _, res = cond_bundle
    b = load_bundle(res.path)
    tx, rx = Transmitter(b), Receiver(b)
    feeds = []
    run = rx.session.run
    monkeypatch.setattr(rx, "session", type("S", (), {"run": lambda self, o, feed: feeds.append(feed) or run(o, feed)})())
    from escmvq.training.trainer import synthetic_images

    tiles = synthetic_images(8, 32, 7).transpose(0, 3, 1, 2).astype(np.float32) / 255
    rng = np.random.default_rng(1)
    h = (rng.normal(size=8) + 1j * rng.normal(size=8)).astype(np.complex64) / np.sqrt(2)
    s = tx.send(tiles, snr_db=-5.0, h=h)  # -5 dB: deep fades erase sub-vectors
    p_tot = s.p_tot
    y = h[:, None] * s.samples + (rng.normal(size=s.samples.shape) + 1j * rng.normal(size=s.samples.shape)) / np.sqrt(2)
    out = rx.receive(y, h, p_tot)
    assert (out.codebooks == 5).any()  # some sub-vectors not sent
    assert np.array_equal(feeds[-1]["cond"], pvq.codebook_map(out.codebooks, 5, 8, 8))


def test_the_default_bundle_is_reliability_aware_and_links():
    """The shipped default (fine-tunes with the conditioned decoder) says so in its manifest,
    and its link feeds the map: on a few CIFAR-10 test tiles at 25 dB it decodes close to the
    clean PSNR. The unconditioned model it was fine-tuned from stays in models/zoo."""
    from pathlib import Path

    from escmvq.export.testing import CIFAR_TEST
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    b = load_bundle()
    assert b.decoder_cond == "codebook" and b.manifest["source_checkpoint"]["name"] == "cifar10-cpu-held.ckpt"
    old = load_bundle(Path(__file__).resolve().parents[1] / "models" / "zoo" / "esc-mvq-alg1.escmvq")
    assert old.decoder_cond is None and old.hash_hex.startswith("fe8338ea078ca26b")
    if not CIFAR_TEST.exists():
        pytest.skip(f"CIFAR-10 test split not found at {CIFAR_TEST}")
    from escmvq.eval.datasets import load_cifar10_test

    imgs = load_cifar10_test(16, CIFAR_TEST.parent.parent)
    tx, rx = Transmitter(b), Receiver(b)
    x01 = imgs.transpose(0, 3, 1, 2).astype(np.float32) / 255
    s = tx.send(x01, snr_db=25.0)
    out = rx.receive(s.samples, s.h, s.p_tot)  # no noise: every label arrives, the map is still fed
    mse = np.mean((np.clip(out.tiles, 0, 1) - x01) ** 2)
    assert 10 * np.log10(1 / mse) > 22.0
    assert np.array_equal(out.codebooks, s.codebooks) and np.array_equal(out.labels, s.labels)


def test_maps_are_mixed_from_stage_two_on(monkeypatch):
    """Mixing needs two codebooks: at stage 2 about cond_mix / 2 of each pass's sub-vectors come
    from the other codebook (and none at stage 1)."""
    for stage, lo, hi in ((2, 0.2, 0.4), (1, -0.01, 0.0)):
        m = _model(**COND, cond_mix=0.6)
        seen = _capture(monkeypatch, m)
        m(torch.randn(6, 3, 32, 32), stage, 0.5, torch.Generator().manual_seed(4))
        (_, cond), = seen
        lab = Q.to_subvectors(cond).argmax(-1)  # [stage*6, N]
        own = torch.arange(stage).repeat_interleave(6)[:, None]
        assert lo < float((lab != own).float().mean()) <= hi


def test_a_conditioned_decoder_without_its_map_is_refused():
    m = _model(**COND)
    with pytest.raises(ValueError, match=r"^this decoder is reliability-aware: it needs the codebook map \(cond\)$"):
        m.decoder(torch.zeros(1, 4, 8, 8))


def test_init_from_fewer_codebooks_adds_copies_of_the_last(tmp_path):
    """--codebooks 6 from a 5-codebook checkpoint: codebook 6 starts as codebook 5 (codewords,
    mu, its map channel), "not sent" moves to the new last channel, so every map decodes as
    before, and codebook 6's as codebook 5's."""
    from escmvq.training.checkpoint import save_checkpoint
    from escmvq.training.trainer import init_weights_from

    src = _model(seed=5, **COND)
    with torch.no_grad():
        for c in [src.decoder.cond_in, *src.decoder.cond_res]:
            c.weight.normal_(0, 0.3)
        src.codebooks.normal_()
    ck = save_checkpoint(tmp_path / "a.ckpt", src, src.preset)
    p = src.preset
    dst = ESCMVQ(p.replace(V=6, mu_min=p.mu_min + (0.2,), lambdas=p.lambdas + (4.0,), epochs_per_stage=(1,) * 6))
    init_weights_from(dst, ck)
    assert torch.equal(dst.codebooks[:5], src.codebooks) and torch.equal(dst.codebooks[5], src.codebooks[4])
    with torch.no_grad():
        assert torch.allclose(dst.mu()[:5], src.mu()) and float(dst.mu()[5].min()) >= 0.2
    z = torch.randn(2, 4, 8, 8)
    cbs = torch.randint(0, 6, (2, 64))  # src: 0..4 codebooks, 5 = not sent
    dst_cbs = torch.where(cbs == 5, torch.tensor(6), cbs)
    with torch.no_grad():
        assert torch.allclose(dst.decode(z, dst_cbs), src.decode(z, cbs), atol=1e-6)
        assert torch.allclose(dst.decode(z, torch.full_like(cbs, 5)), src.decode(z, torch.full_like(cbs, 4)), atol=1e-6)
    bigger = ESCMVQ(p.replace(V=4, mu_min=p.mu_min[:4], lambdas=p.lambdas[:4], epochs_per_stage=(1,) * 4))
    with pytest.raises(ValueError, match="checkpoint has V=5 codebooks, more than the preset's 4"):
        init_weights_from(bigger, ck)


def test_robust_rows_send_the_last_codebook_at_higher_targets(cond_bundle, tmp_path):
    """escmvq export --robust-targets: the allocator gets one more row per target (the last
    codebook's codewords and prior, mu raised to the target), the decoder is fed the last
    codebook's channel for those rows, and a deep fade uses them."""
    import json
    import shutil

    from escmvq.export.pipeline import export_checkpoint
    from escmvq.runtime.bundle import BundleError, load_bundle
    from escmvq.runtime.receiver import Receiver

    m, res = cond_bundle
    ck = res.manifest["source_checkpoint"]["name"]
    d = res.path.parent
    r = export_checkpoint(d / ck, tmp_path / "r.escmvq", d / "calib.npy", stats_source=d / "calib.npy", n_stats=64,
                          n_calib=32, n_check=16, decoding="soft", robust_targets=(0.3, 0.4), log=lambda s: None)
    b = load_bundle(r.path)
    assert b.model["V"] == 7 and b.model["decoder_codebook"] == [0, 1, 2, 3, 4, 4, 4]
    np.testing.assert_array_equal(b.decoder_codebooks, [0, 1, 2, 3, 4, 4, 4, 5])
    assert np.array_equal(b.codebooks[5], b.codebooks[4]) and np.array_equal(b.label_prior[6], b.label_prior[4])
    assert float(b.mu[5].min()) >= 0.3 and float(b.mu[6].min()) >= 0.4
    np.testing.assert_array_equal(b.mu[6], np.maximum(b.mu[4], np.float32(0.4)))
    rx = Receiver(b)
    zq = np.random.default_rng(0).normal(size=(2, 4, 8, 8)).astype(np.float32)
    rows = np.array([[5] * 32 + [6] * 16 + [7] * 16, [4] * 32 + [6] * 32])
    same = np.array([[4] * 48 + [5] * 16, [4] * 64])
    with torch.no_grad():
        ref = (m.decode(torch.from_numpy(zq), torch.from_numpy(same)) * 0.5 + 0.5).numpy()
    assert np.allclose(rx.decode(zq, rows), ref, atol=1e-4)
    deep = b.allocator.plan(b.allocator.prefix_cost_range()[0], 1.0).codebooks  # the first erasure state
    assert set(deep.tolist()) == {6, 7}  # sends on the most robust row (6), erases the rest (7)
    # a manifest whose rows do not repeat the last codebook is refused in one line
    bad = tmp_path / "badmap.escmvq"
    shutil.copytree(r.path, bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["model"]["decoder_codebook"] = [0, 1, 2, 3, 4, 5, 4]
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BundleError, match="decoder_codebook must list 0..V'-1 then V'-1 again") as e:
        load_bundle(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="robust targets: expected ascending distinct values in"):
        export_checkpoint(d / ck, tmp_path / "bad.escmvq", d / "calib.npy", stats_source=d / "calib.npy",
                          robust_targets=(0.4, 0.3), log=lambda s: None)
    assert not (tmp_path / "bad.escmvq").exists()
