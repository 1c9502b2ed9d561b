"""The one sweep loop (escmvq.eval.driver.simulate) with links written in a few lines, and the
ESC-MVQ / pair-set links driven together in one call."""
from __future__ import annotations

import numpy as np
import pytest

from escmvq.eval.datasets import load_cifar10_test
from escmvq.eval.driver import BaseLink, Link, fading, noise_rng, simulate
from escmvq.eval.stats import psnr_batch


class NoisyCopy(BaseLink):
    """A baseline in one class: each pixel plus Gaussian noise whose std falls with the SNR and
    the fading gain; counts the images whose gain is below 1."""

    name = "noisy-copy"

    def __init__(self):
        self.calls = []

    def run(self, images, h, snr_db, rng, prepared=None):
        self.calls.append((len(images), snr_db))
        std = 64.0 / np.sqrt(10 ** (snr_db / 10) * np.abs(h) ** 2)[:, None, None, None]
        rec = np.clip(np.rint(images + std * rng.standard_normal(images.shape)), 0, 255).astype(np.uint8)
        return rec, {"faded": int(np.count_nonzero(np.abs(h) < 1)), "per_snr": np.array([1.0, snr_db])}

    def summary(self, totals, n_transmissions):
        return {"kind": "test"}, {"faded_rate": [t["faded"] / n_transmissions for t in totals],
                                  "runs": [t["per_snr"].tolist() for t in totals]}


@pytest.fixture(scope="module")
def images():
    return load_cifar10_test(40)


def test_a_one_class_baseline_is_driven_with_the_shared_streams(images):
    link = NoisyCopy()
    assert isinstance(link, Link)
    done = []
    res = simulate([link], images, [0.0, 20.0], channel="rayleigh", realizations=2, seed=4, batch=16, keep=3,
                   progress=done.append)["noisy-copy"]
    # batches 16 + 16 + 8, two realisations, two SNR points
    assert [n for n, _ in link.calls] == [16] * 4 + [16] * 4 + [8] * 4 and sum(done) == 40 * 2 * 2
    assert res.psnr.shape == (2, 40) and res.samples.shape == (2, 3, 32, 32, 3)
    # the driver's statistics: per-image PSNR averaged over realisations, with the same fading and
    # noise streams as every other method (seed, realisation, batch start)
    ref = np.zeros((2, 40))
    for start in range(0, 40, 16):
        imgs = images[start:start + 16]
        for r in range(2):
            h = fading(4, "rayleigh", r, start, len(imgs))
            for si, snr in enumerate([0.0, 20.0]):
                rec, _ = NoisyCopy().run(imgs, h, snr, noise_rng(4, r, start))
                ref[si, start:start + len(imgs)] += psnr_batch(imgs, rec) / 2
                if r == 0 and start == 0:
                    assert np.array_equal(res.samples[si], rec[:3])
    assert np.array_equal(res.psnr, ref)
    s = res.summary()
    assert s["kind"] == "test" and s["psnr_mean"][1] > s["psnr_mean"][0] + 10
    assert s["runs"] == [[6.0, 0.0], [6.0, 120.0]]  # counters summed over 3 batches x 2 realisations
    n_faded = sum(int(np.count_nonzero(np.abs(fading(4, "rayleigh", r, st, min(16, 40 - st))) < 1))
                  for r in range(2) for st in (0, 16, 32))
    assert s["faded_rate"] == [n_faded / 80] * 2


def test_bad_arguments(images):
    with pytest.raises(ValueError, match="channel"):
        simulate([NoisyCopy()], images, [0.0], channel="rician")
    with pytest.raises(ValueError, match="distinct names"):
        simulate([NoisyCopy(), NoisyCopy()], images, [0.0])
    with pytest.raises(ValueError, match=">= 1"):
        simulate([NoisyCopy()], images, [0.0], batch=0)
    with pytest.raises(ValueError, match="images"):
        simulate([NoisyCopy()], images[:, :, :, :2], [0.0])


def test_esc_and_pair_links_in_one_loop_equal_their_own_sweeps(images, tmp_path_factory):
    """Common random numbers: a link's results do not depend on which other links share the loop."""
    pytest.importorskip("onnx")
    from escmvq.eval.sweep import PairSet, PairSetMethod, esc_methods, sweep_esc, sweep_pairs
    from escmvq.eval.testing import colour_bundle
    from escmvq.runtime.bundle import load_bundle

    folder = tmp_path_factory.mktemp("driver")
    bundle = load_bundle(colour_bundle(folder, images))
    pairs = PairSet([colour_bundle(folder, images, "jcap", mu_base=(m,), name=f"p{i}") for i, m in enumerate((0.002, 0.1))])
    kw = dict(channel="rayleigh", realizations=2, seed=9, batch=12, keep=2)
    snrs = [-5.0, 5.0, 15.0]
    together = simulate([*esc_methods(bundle, images), PairSetMethod(pairs, "bsc-vq"), NoisyCopy()], images, snrs, **kw)
    alone = {**sweep_esc(bundle, images, snrs, **kw), "bsc-vq": sweep_pairs(pairs, images, snrs, name="bsc-vq", **kw)}
    assert list(together) == ["jcamp", "jcap", "bsc-vq", "noisy-copy"]
    for m, r in alone.items():
        a, b = r.summary(), together[m].summary()
        assert np.array_equal(r.psnr, together[m].psnr) and np.array_equal(r.samples, together[m].samples), m
        for k in ("label_error_rate", "codebook_use", "mean_codebook", "pair_use", "pair_names", "receiver"):
            assert a.get(k) == b.get(k), (m, k)
