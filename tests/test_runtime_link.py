"""Transmitter, channel and receiver (numpy + onnxruntime)."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from escmvq.core import pvq, qam
from escmvq.runtime.frame import parse
from escmvq.runtime.modem import demodulate, modulate
from escmvq.runtime.quantize import dequantize, quantize


@pytest.fixture(scope="session")
def tiles():
    from escmvq.export.testing import KODAK
    from escmvq.runtime.images import load_image, tile

    return tile(load_image(KODAK / "kodim23.png")[:64, :128], (32, 32))[0]  # 8 real tiles


def random_plans(rng, b, T=144, L=576):
    orders = np.full((b, T), 4)
    for r in range(b):  # swap pairs 4+4 -> 2+6 / 8+0... keep sum: (2, 6) pairs
        k = rng.integers(0, T // 2)
        idx = rng.permutation(T)[: 2 * k]
        orders[r, idx[:k]] = 2
        orders[r, idx[k:]] = 6
    bit_order = np.stack([rng.permutation(L) for _ in range(b)])
    return orders, bit_order


def test_modem_rows_match_qam_frames_and_invert():
    rng = np.random.default_rng(0)
    orders, bit_order = random_plans(rng, 6)
    bits = rng.integers(0, 2, (6, 576), dtype=np.uint8)
    s = modulate(bits, orders, bit_order)
    for r in range(6):
        assert np.array_equal(s[r], qam.map_frame(bits[r:r + 1], orders[r], bit_order[r])[0])
    assert np.array_equal(demodulate(s, orders, bit_order), bits)


def test_quantize_matches_reference_search():
    rng = np.random.default_rng(1)
    cb = rng.standard_normal((5, 512, 4)).astype(np.float32)
    zs = rng.standard_normal((7, 64, 4)).astype(np.float32)
    assign = rng.integers(0, 5, (7, 64))
    got = quantize(zs, cb, assign)
    ref = np.stack([[pvq.nearest_codeword(zs[b, i], cb[assign[b, i]]) for i in range(64)] for b in range(7)])
    assert np.array_equal(got, ref)
    assert np.array_equal(quantize(zs, cb, np.full(64, 2)), pvq.nearest_codeword(zs, cb[2]))
    assert np.array_equal(dequantize(got, cb, assign), cb[assign, got])


def test_high_snr_awgn_is_error_free_and_decodes_the_sent_codewords(txrx, tiles):
    tx, rx = txrx
    r = tx.send(tiles, snr_db=40.0)
    assert r.samples.shape == (8, 144) and r.samples.dtype == np.complex64
    # the plan spends exactly the budget, and samples are unit-energy QAM points scaled by sqrt(p_t)
    from escmvq.core.channels import channel_gamma as gamma_of

    plan = tx.plans(r.p_tot, float(gamma_of(r.h[:1], 1.0)[0]))
    assert plan.powers.sum() == pytest.approx(r.p_tot) and plan.orders.sum() == 576
    s = r.samples[0] / np.sqrt(plan.powers)
    for m in qam.ORDERS:
        pts = qam.constellation(m)
        sel = s[plan.orders == m]
        assert np.all(np.min(np.abs(sel[:, None] - pts[None]), 1) < 1e-4)
    o = rx.receive(r.samples, r.h, r.p_tot)  # noiseless
    assert np.array_equal(o.labels, r.labels) and np.array_equal(o.codebooks, r.codebooks)
    zq = pvq.from_subvectors(tx.bundle.codebooks[r.codebooks, r.labels], 8, 8)
    assert np.allclose(o.tiles, rx.decode(zq), atol=1e-6)
    assert set(r.timings) == {"encode", "allocate", "quantize", "modulate"}
    assert set(o.timings) >= {"allocate", "demodulate", "dequantize", "decode"}
    for res, call in ((r, lambda: tx.send(tiles, snr_db=40.0)), (o, lambda: rx.receive(r.samples, r.h, r.p_tot))):
        t0 = time.perf_counter()
        res = call()
        wall = time.perf_counter() - t0
        assert all(v >= 0 for v in res.timings.values()) and 0 < sum(res.timings.values()) <= wall


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 25.0])
def test_receiver_derives_the_transmitters_plan_under_fading(txrx, tiles, snr_db):
    from escmvq.core.channels import apply_channel, draw_h

    tx, rx = txrx
    rng = np.random.default_rng(int(snr_db) + 100)
    h = draw_h(rng, len(tiles), "rayleigh")
    r = tx.send(tiles, snr_db=snr_db, h=h)
    o = rx.receive(apply_channel(r.samples, r.h, rng, 1.0), r.h, r.p_tot)
    assert np.array_equal(o.codebooks, r.codebooks)
    # both sides use the allocator's plan for gamma = |h|^2 (sigma^2 = 1), tile by tile
    for i in range(len(tiles)):
        assert np.array_equal(r.codebooks[i], tx.bundle.allocator.plan(r.p_tot, float(abs(complex(h[i])) ** 2)).codebooks)
    ler = float(np.mean(o.labels != r.labels))
    if snr_db == -5.0:
        assert ler > 0.5
    if snr_db == 25.0:
        assert ler < 0.02


def test_plans_get_better_as_gamma_grows(txrx):
    """Along the greedy trajectory a larger budget P_tot*gamma only moves sub-vectors to
    lower (better) codebooks: plans are elementwise non-increasing in gamma."""
    tx, _ = txrx
    gammas = np.geomspace(1e-3, 1e3, 61)
    cbs = tx.plans.batch(float(tx.bundle.n_bits) * 10.0, gammas)[0]
    assert np.all(np.diff(cbs, axis=0) <= 0)
    assert cbs[0].sum() > cbs[-1].sum() and len({tuple(c) for c in cbs}) > 2


def test_gamma_is_h_squared_over_noise_variance():
    """gamma = |h|^2 / sigma^2 in float64 from the complex64 coefficients (footnote 2)."""
    from escmvq.core.channels import channel_gamma as gamma_of

    g = gamma_of(np.array([2 + 0j, 1j, 3 - 4j], np.complex64), 4.0)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [1.0, 0.25, 6.25])
    np.testing.assert_array_equal(gamma_of(np.array([2 + 0j], np.complex64), 0.25), [16.0])
    h = np.complex64(0.1 + 0.2j)
    assert gamma_of([h], 0.5)[0] == (float(h.real) ** 2 + float(h.imag) ** 2) / 0.5


@pytest.mark.parametrize("noise_var", [0.25, 4.0])
def test_noise_variance_other_than_one(txrx, tiles, noise_var):
    """sigma^2 != 1: P_tot = L sigma^2 10^(SNR/10) (53) and gamma = |h|^2/sigma^2, so at the
    same SNR the plans equal those of sigma^2 = 1; the transmitter uses the allocator's plan
    for |h|^2/sigma^2 and the receiver derives the same one (a receiver planning
    with sigma^2 = 1 would agree with the transmitter on 40-79% of tiles)."""
    from escmvq.core.channels import apply_channel, draw_h

    tx, rx = txrx
    rng = np.random.default_rng(8)
    h = draw_h(rng, len(tiles), "rayleigh")
    r = tx.send(tiles, snr_db=10.0, h=h, noise_var=noise_var)
    assert r.p_tot == pytest.approx(576 * noise_var * 10.0, rel=1e-12) and r.noise_var == noise_var
    for i in range(len(tiles)):
        gamma = float(abs(complex(h[i])) ** 2) / noise_var
        plan = tx.bundle.allocator.plan(r.p_tot, gamma)
        assert np.array_equal(r.codebooks[i], plan.codebooks)
    r1 = tx.send(tiles, snr_db=10.0, h=h)  # sigma^2 = 1, same SNR: same budget P_tot * gamma
    assert np.array_equal(r.codebooks, r1.codebooks) and np.array_equal(r.labels, r1.labels)
    np.testing.assert_allclose(r.samples, r1.samples * np.float32(np.sqrt(noise_var)), rtol=1e-6, atol=1e-6)
    o = rx.receive(r.h[:, None] * r.samples, r.h, r.p_tot, noise_var)  # noiseless channel
    assert np.array_equal(o.codebooks, r.codebooks) and np.array_equal(o.labels, r.labels)
    o = rx.receive(apply_channel(r.samples, r.h, rng, noise_var), r.h, r.p_tot, noise_var)
    assert np.array_equal(o.codebooks, r.codebooks)


def test_run_link_with_noise_variance_four_matches_unit_noise(txrx):
    """The whole link at sigma^2 = 4 is the sigma^2 = 1 link scaled by 2 (signal and noise,
    both exact in binary floating point): same labels, same image, few label errors at 20 dB."""
    from escmvq.export.testing import KODAK
    from escmvq.runtime.images import load_image
    from escmvq.runtime.link import run_link

    tx, rx = txrx
    img = load_image(KODAK / "kodim23.png")[:70, :100]
    a = run_link(tx, rx, img, 20.0, np.random.default_rng(0), "rayleigh", noise_var=1.0)
    b = run_link(tx, rx, img, 20.0, np.random.default_rng(0), "rayleigh", noise_var=4.0)
    assert b.p_tot == 4 * a.p_tot
    assert b.label_error_rate == a.label_error_rate < 0.1
    assert np.array_equal(a.image, b.image) and np.array_equal(a.codebook_use, b.codebook_use)


def test_batched_equals_one_by_one(txrx, tiles):
    from escmvq.core.channels import draw_h

    tx, _ = txrx
    h = draw_h(np.random.default_rng(3), len(tiles), "rayleigh")
    batch = tx.send(tiles, snr_db=10.0, h=h)
    for i in range(len(tiles)):
        one = tx.send(tiles[i:i + 1], snr_db=10.0, h=h[i:i + 1])
        assert np.array_equal(one.labels[0], batch.labels[i])
        assert np.allclose(one.samples[0], batch.samples[i], atol=1e-6)


def test_image_round_trip_through_bytes_and_refusal_by_other_bundle(txrx, bundle_dir, tmp_path):
    from escmvq.runtime.images import psnr
    from escmvq.runtime.link import receive_frame, run_link, transmit_image
    from escmvq.runtime.receiver import FrameMismatch, Receiver

    tx, rx = txrx
    img = np.random.default_rng(5).integers(0, 256, (40, 70, 3), dtype=np.uint8)  # not a multiple of 32
    frame, _, cbs, sent = transmit_image(tx, img, 30.0, np.random.default_rng(0), "awgn")
    assert frame.n_tiles == 6 and frame.image_size == (40, 70)
    a, _, la = receive_frame(rx, frame, np.random.default_rng(1))
    b, _, lb = receive_frame(rx, parse(frame.to_bytes()), np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == img.shape and np.array_equal(la, lb)
    f2 = tx.send_image(img, 30.0, np.random.default_rng(0), "awgn")
    assert f2.to_bytes() == frame.to_bytes()
    assert np.array_equal(rx.receive_frame(f2, np.random.default_rng(1)), a)
    rep = run_link(tx, rx, img, 30.0, np.random.default_rng(0), "awgn")
    assert rep.label_error_rate == 0.0 and rep.channel_uses == 6 * 144 and rep.psnr_db == pytest.approx(psnr(img, rep.image))
    assert rep.codebook_use.sum() == pytest.approx(1.0)

    other = tmp_path / "other.escmvq"
    shutil.copytree(bundle_dir, other)
    m = json.loads((other / "manifest.json").read_text())
    m["created"] = "another export"  # when and where: not part of the identity
    m["source_checkpoint"] = {"name": "elsewhere.ckpt"}
    (other / "manifest.json").write_text(json.dumps(m))
    assert np.array_equal(receive_frame(Receiver(other), frame, np.random.default_rng(1))[0], a)
    m["model"]["quantizer"] = "another model"  # content: another identity
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FrameMismatch, match="refusing to decode"):
        receive_frame(Receiver(other), frame, np.random.default_rng(1))


def test_allocator_override_is_used_by_both_ends(bundle_dir, txrx):
    """``allocator=`` replaces the bundle's allocator on either side (e.g. JCAP for a JCAMP bundle)."""
    from escmvq.runtime.alloc_adapter import make_allocator
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx, _ = txrx
    b = tx.bundle
    other = "jcap" if b.model.get("allocator", {}).get("method") != "jcap" else "jcamp"
    alloc = make_allocator(b.distortion, b.mu, rate=b.rate, method=other, variant="exact")
    tx2, rx2 = Transmitter(b, allocator=alloc), Receiver(b, allocator=alloc)
    assert tx2.plans.allocator is alloc and rx2.plans.allocator is alloc
    assert tx.plans.allocator is b.allocator  # default unchanged
    p_tot, gamma = float(b.n_bits) * 10.0, np.array([0.3, 1.0, 4.0])
    want = [alloc.plan(p_tot, g) for g in gamma]
    cbs, orders, powers, bit_order = rx2.plans.batch(p_tot, gamma)
    for r, plan in enumerate(want):
        assert np.array_equal(cbs[r], plan.codebooks)
        assert np.array_equal(orders[r], plan.orders)
        np.testing.assert_array_equal(powers[r], plan.powers)
