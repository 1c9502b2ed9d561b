"""Transmitter, channel and receiver (numpy + onnxruntime)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from escmvq.core import pvq, qam
from escmvq.runtime.frame import parse
from escmvq.runtime.modem import demodulate, modulate
from escmvq.runtime.quantize import dequantize, quantize


@pytest.fixture(scope="session")
def txrx(bundle_dir):
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle_dir)
    return tx, Receiver(tx.bundle)


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
    from escmvq.runtime.alloc_adapter import gamma_of

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
    for k in ("encode", "allocate", "quantize", "modulate"):
        assert r.timings[k] >= 0
    for k in ("allocate", "demodulate", "dequantize", "decode"):
        assert o.timings[k] >= 0


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 25.0])
def test_receiver_derives_the_transmitters_plan_under_fading(txrx, tiles, snr_db):
    from escmvq.runtime.link import apply_channel, draw_h

    tx, rx = txrx
    rng = np.random.default_rng(int(snr_db) + 100)
    h = draw_h(rng, len(tiles), "rayleigh")
    r = tx.send(tiles, snr_db=snr_db, h=h)
    o = rx.receive(apply_channel(r.samples, r.h, rng, 1.0), r.h, r.p_tot)
    assert np.array_equal(o.codebooks, r.codebooks)
    assert len({tuple(c) for c in r.codebooks}) >= 1


def test_batched_equals_one_by_one(txrx, tiles):
    from escmvq.runtime.link import draw_h

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
    m["created"] = "another export"
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
