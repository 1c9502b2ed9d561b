"""The JPEG + LDPC baseline (escmvq.eval.jpeg_ldpc): needs Sionna (the eval extra)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sionna.phy")

from escmvq.eval.datasets import load_cifar10_test  # noqa: E402
from escmvq.eval.jpeg_ldpc import JpegCodec, JpegLdpc, qam_llr, sweep_jpeg_ldpc  # noqa: E402
from escmvq.eval.stats import psnr_batch  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return load_cifar10_test(12)


@pytest.fixture(scope="module")
def link():
    # two orders keep the setup short; the default has 2..10
    return JpegLdpc(n_bits=576, n_symbols=144, orders=(4, 8), thresholds_db={4: 10.0, 8: 21.0}, threads=1)


@pytest.mark.parametrize("headers", ["stripped", "full"])
def test_jpeg_fits_budget_and_round_trips(images, headers):
    codec = JpegCodec(headers)
    for img in images[:4]:
        q, data = codec.fit(img, 400)
        assert len(data) <= 400 and 1 <= q <= 100
        if q < 100:  # the next quality would not fit
            assert len(codec.encode(img, q + 1)) > 400
        out = codec.decode(data, q, (32, 32))
        assert out is not None and out.shape == (32, 32, 3)
    assert codec.fit(images[0], 20) is None  # nothing fits in 20 bytes
    assert codec.decode(b"\x00garbage", 50, (32, 32)) is None


def test_stripped_headers_cost_less_than_full(images):
    s, f = JpegCodec("stripped"), JpegCodec("full")
    assert len(s.encode(images[0], 50)) + 250 < len(f.encode(images[0], 50))


def test_pam_split_llrs_equal_sionna_qam_maxlog():
    import torch
    from sionna.phy.mapping import Demapper, Mapper

    rng = np.random.default_rng(0)
    for m in (2, 4, 8):
        bits = torch.from_numpy(rng.integers(0, 2, (2, m * 40)).astype(np.float32))
        s = Mapper("qam", m)(bits)
        no = np.array([0.05, 0.7])
        n = (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape)) * np.sqrt(no[:, None] / 2)
        y = s + torch.from_numpy(n.astype(np.complex64))
        ref = Demapper("maxlog", "qam", m)(y, no=torch.from_numpy(no[:, None].astype(np.float32)))
        got = qam_llr(y, m, torch.from_numpy(no.astype(np.float32)))
        assert torch.allclose(ref, got, atol=1e-3, rtol=1e-4)


def test_error_free_at_high_snr_equals_plain_jpeg(images, link):
    res = sweep_jpeg_ldpc(images, [40.0], channel="awgn", seed=0, link=link, keep=len(images))
    s = res.summary()
    assert s["fail_rate"] == [0.0] and s["mean_order"] == [8.0]
    # the reconstruction is exactly the JPEG at the fitted quality (no residual bit errors)
    for i, img in enumerate(images):
        q, data = link.codec.fit(img, link.codes[8].capacity - 7)
        assert len(data) + 7 <= link.codes[8].capacity
        assert np.array_equal(res.samples[0, i], link.codec.decode(data, q, (32, 32)))
    assert np.allclose(res.psnr[0], psnr_batch(images, res.samples[0]))


def test_low_snr_fails_to_mean_image_and_is_reported(images, link):
    res = sweep_jpeg_ldpc(images, [-10.0, 40.0], channel="awgn", seed=0, link=link, keep=2)
    s = res.summary()
    assert s["fail_rate"][0] == 1.0 and s["outage_rate"][0] == 1.0  # far below every threshold: outage
    link.outage_margin_db = None  # send anyway: every CRC fails
    try:
        s2 = sweep_jpeg_ldpc(images[:4], [-10.0], channel="awgn", seed=0, link=link).summary()
    finally:
        link.outage_margin_db = 2.0
    assert s2["fail_rate"] == [1.0] and s2["crc_fail_rate"] == [1.0] and s2["mean_bp_iterations"] == [20.0]
    mean_img = np.clip(np.rint(images.reshape(len(images), -1).mean(0)), 0, 255).astype(np.uint8)
    assert np.array_equal(res.samples[0, 0], mean_img.reshape(32, 32, 3))
    assert s["psnr_mean"][1] > s["psnr_mean"][0] + 10


def test_reproducible(images, link):
    a = sweep_jpeg_ldpc(images[:6], [14.0], channel="rayleigh", seed=3, link=link, batch=4)
    b = sweep_jpeg_ldpc(images[:6], [14.0], channel="rayleigh", seed=3, link=link, batch=4)
    assert np.array_equal(a.psnr, b.psnr)
