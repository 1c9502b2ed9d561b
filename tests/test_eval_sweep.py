"""The end-to-end sweep (escmvq.eval.sweep) on a hand-made colour-quantiser bundle."""
from __future__ import annotations


import numpy as np
import pytest

from escmvq.eval.datasets import load_cifar10_test
from escmvq.eval.sweep import EscLink, fading, noise_rng, send_latent, sweep_esc


@pytest.fixture(scope="module")
def images():
    return load_cifar10_test(160)


@pytest.fixture(scope="module")
def bundle(images, tmp_path_factory):
    pytest.importorskip("onnx")
    from escmvq.eval.testing import colour_bundle
    from escmvq.runtime.bundle import load_bundle

    return load_bundle(colour_bundle(tmp_path_factory.mktemp("eval"), images[:96]))


SNRS = [-5.0, 0.0, 5.0, 10.0, 20.0]


def test_send_latent_equals_transmitter(bundle, images):
    from escmvq.core import pvq
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle)
    link = EscLink(bundle, "jcamp")  # the bundle's own allocator: same plans as tx
    tiles = images[:16].transpose(0, 3, 1, 2).astype(np.float32) / 255
    h = fading(3, "rayleigh", 0, 0, 16)
    ref = tx.send(tiles, snr_db=4.0, h=h)
    x, cbs, labels = send_latent(bundle, link.tx_plans, link.search, pvq.to_subvectors(tx.encode(tiles)), ref.p_tot, h)
    assert np.array_equal(x, ref.samples) and np.array_equal(cbs, ref.codebooks) and np.array_equal(labels, ref.labels)


def test_psnr_rises_with_snr_awgn_and_is_error_free_at_high_snr(bundle, images):
    res = sweep_esc(bundle, images[96:], SNRS, channel="awgn", seed=0)
    for m in ("jcamp", "jcap"):
        s = res[m].summary()
        mean = np.array(s["psnr_mean"])
        assert np.all(np.diff(mean) > 0), (m, mean)
        assert mean[-1] - mean[0] > 5.0
        assert s["label_error_rate"][0] > 0.5 and s["label_error_rate"][-1] == 0.0
        # at high SNR every sub-vector uses the best codebook (1-based mean = 1)
        assert np.allclose(s["mean_codebook"][-1], 1.0)
        assert np.allclose(np.sum(s["codebook_use"], axis=1), 1.0)
    # JCAMP's extra freedom (modulation) helps at low SNR on this bundle and never hurts much
    a, c = np.array(res["jcamp"].summary()["psnr_mean"]), np.array(res["jcap"].summary()["psnr_mean"])
    assert a[0] > c[0]


def test_reproducible_under_seed_and_seed_matters(bundle, images):
    kw = dict(channel="rayleigh", realizations=2, batch=24, keep=3)
    r1 = sweep_esc(bundle, images[96:136], [0.0, 10.0], methods=["jcap"], seed=7, **kw)["jcap"]
    r2 = sweep_esc(bundle, images[96:136], [0.0, 10.0], methods=["jcap"], seed=7, **kw)["jcap"]
    r3 = sweep_esc(bundle, images[96:136], [0.0, 10.0], methods=["jcap"], seed=8, **kw)["jcap"]
    assert np.array_equal(r1.psnr, r2.psnr) and np.array_equal(r1.samples, r2.samples)
    assert r1.samples.shape == (2, 3, 32, 32, 3)
    assert not np.array_equal(r1.psnr, r3.psnr)


def test_ci_shrinks_with_more_images(bundle, images):
    small = sweep_esc(bundle, images[96:112], [5.0], methods=["jcap"], channel="rayleigh", seed=1)["jcap"].summary()
    big = sweep_esc(bundle, images[96:160], [5.0], methods=["jcap"], channel="rayleigh", seed=1)["jcap"].summary()
    assert big["psnr_ci95"][0] < small["psnr_ci95"][0]
    assert big["n_images"] == 64


def test_noise_variance_four_gives_the_unit_noise_results(bundle, images):
    """sigma^2 = 4 at the same SNR: P_tot is 4x, gamma = |h|^2/4, signal and noise both scale
    by 2 (exact in floating point), so every PSNR and label error is that of sigma^2 = 1, and
    the link is nearly error-free at 20 dB (a receiver planning with sigma^2 = 1 is not)."""
    kw = dict(channel="rayleigh", seed=3)
    one = sweep_esc(bundle, images[96:128], [0.0, 20.0], noise_var=1.0, **kw)
    four = sweep_esc(bundle, images[96:128], [0.0, 20.0], noise_var=4.0, **kw)
    for m in ("jcamp", "jcap"):
        a, b = one[m].summary(), four[m].summary()
        assert np.array_equal(one[m].psnr, four[m].psnr), m
        assert a["label_error_rate"] == b["label_error_rate"] and a["mean_codebook"] == b["mean_codebook"]
        assert b["label_error_rate"][1] < 0.05 < b["label_error_rate"][0]


def test_common_random_numbers():
    h1, h2 = fading(5, "rayleigh", 1, 32, 8), fading(5, "rayleigh", 1, 32, 8)
    assert np.array_equal(h1, h2) and h1.dtype == np.complex64
    assert not np.array_equal(h1, fading(5, "rayleigh", 0, 32, 8))
    assert np.array_equal(fading(5, "awgn", 0, 0, 4), np.ones(4, np.complex64))
    assert noise_rng(5, 0, 0).standard_normal() == noise_rng(5, 0, 0).standard_normal()


def test_bad_input(bundle, images):
    with pytest.raises(ValueError):
        sweep_esc(bundle, images[:4, :16], [0.0])
    with pytest.raises(ValueError):
        sweep_esc(bundle, images[:4], [0.0], channel="rician")
    with pytest.raises(ValueError):
        sweep_esc(bundle, images[:4], [0.0], methods=["jpeg"])


NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "sionna" or name.startswith("sionna."):
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
import numpy as np
from escmvq.eval.datasets import load_cifar10_test
from escmvq.eval.sweep import sweep_esc
res = sweep_esc(sys.argv[1], load_cifar10_test(8), [0.0, 20.0], channel="rayleigh", seed=0)
assert res["jcamp"].psnr.shape == (2, 8)
assert "torch" not in sys.modules
print("ok")
"""


def test_sweep_runs_without_torch(bundle):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(bundle.path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_sweep_on_an_exported_bundle(bundle_dir, images):
    """The real export path (PyTorch -> ONNX bundle, untrained tiny preset): the decoder
    ignores the labels, but the link must still be error-free at high SNR."""
    res = sweep_esc(bundle_dir, images[:32], [-5.0, 30.0], channel="rayleigh", seed=2, realizations=2)
    for m in ("jcamp", "jcap"):
        ler = res[m].summary()["label_error_rate"]
        assert ler[0] > 0.3 and ler[1] < 0.02


def test_pair_set_picks_pairs_by_snr(tmp_path_factory, images):
    pytest.importorskip("onnx")
    from escmvq.eval.sweep import PairSet, sweep_pairs
    from escmvq.eval.testing import colour_bundle

    folder = tmp_path_factory.mktemp("pairs")
    paths = [colour_bundle(folder, images[:96], "jcap", mu_base=(m,), name=f"pair{i}")
             for i, m in enumerate((0.25, 0.002, 0.03))]  # deliberately unsorted
    ps = PairSet(paths)
    assert ps.names == ["pair1", "pair2", "pair0"]  # sorted by mu
    assert np.all(np.diff(ps.costs) < 0)  # lower mu costs more power
    res = sweep_pairs(ps, images[96:128], [-10.0, 5.0, 30.0], channel="awgn", seed=0, name="bsc-vq")
    s = res.summary()
    use = np.array(s["pair_use"])
    assert np.allclose(use.sum(1), 1.0)
    assert use[0, 2] == 1.0 and use[2, 0] == 1.0  # low SNR: most robust pair; high SNR: best pair
    assert np.all(np.diff(s["psnr_mean"]) > 0) and s["label_error_rate"][2] == 0.0
    assert s["pairs"] == 3 and s["parameter_bytes"] == ps.parameter_bytes > 0
    again = sweep_pairs(ps, images[96:128], [-10.0, 5.0, 30.0], channel="awgn", seed=0)
    assert np.array_equal(again.psnr, res.psnr)


def test_pair_set_with_erasure_states_picks_pairs_by_their_all_sent_cost(tmp_path_factory, images):
    """Pairs exported with erasure states (``escmvq export``'s default) are chosen by the cost of
    their cheapest state that sends every sub-vector, as pairs without them: the first states of
    the fragile pair's trajectory send two sub-vectors and cost a fraction of that, and choosing
    by them sent the fragile pair, nearly all erased, into deep fades."""
    pytest.importorskip("onnx")
    from escmvq.eval.sweep import PairSet, sweep_pairs
    from escmvq.eval.testing import colour_bundle

    folder = tmp_path_factory.mktemp("pairs-erasures")
    mus = (0.002, 0.25)
    plain = PairSet([colour_bundle(folder, images[:96], "jcap", mu_base=(m,), name=f"plain{i}") for i, m in enumerate(mus)])
    ps = PairSet([colour_bundle(folder, images[:96], "jcap", mu_base=(m,), name=f"erase{i}", erasures=True)
                  for i, m in enumerate(mus)])
    allocs = [lk.tx_plans.allocator for lk in ps.links]
    assert all(a.erasures and a.n_erasure_states > 0 for a in allocs)
    assert not any(lk.tx_plans.allocator.erasures for lk in plain.links)
    assert np.array_equal(ps.costs, plain.costs)
    assert allocs[0].thresholds[0] < ps.costs[1] < ps.costs[0]  # the fragile pair's erasure states are cheap
    snrs = [-10.0, 30.0]
    use = np.array(sweep_pairs(ps, images[96:128], snrs, channel="rayleigh", seed=0).summary()["pair_use"])
    use_plain = np.array(sweep_pairs(plain, images[96:128], snrs, channel="rayleigh", seed=0).summary()["pair_use"])
    assert np.array_equal(use, use_plain)
    assert use[0, 1] > 0.5 and use[1, 0] > 0.9  # deep fades: the robust pair; 30 dB: the fragile one
