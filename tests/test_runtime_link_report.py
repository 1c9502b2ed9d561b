"""What :func:`escmvq.runtime.link.run_link` reports, checked against the two link ends run
apart (``transmit_image`` then ``receive_frame`` with the same generator draw the same
numbers), its capture against the plans the receiver derives, its timings against a fake
clock, and ``link_summary``'s document field by field; ``through_channel``."""
from __future__ import annotations

import dataclasses
import itertools
import types

import numpy as np
import pytest
from PIL import Image

from escmvq.core.channels import channel_gamma, snr_db_to_es_eb
from escmvq.export.testing import KODAK
from escmvq.runtime import link
from escmvq.runtime.frame import KIND_RX, KIND_TX
from escmvq.runtime.link import (LINK_FORMAT, LINK_VERSION, STAGES, link_summary, run_link, through_channel,
                                 transmit_image)
from escmvq.runtime.receiver import Receiver, receive_frame
from escmvq.runtime.transmitter import Transmitter


@pytest.fixture(scope="module")
def img():
    """70 x 100 pixels: a 3 x 4 grid of 32 x 32 tiles, the last row and column cropped."""
    return np.ascontiguousarray(np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[:70, :100])


@pytest.fixture(scope="module")
def shipped():
    """The shipped bundle: its allocator leaves sub-vectors unsent in deep fades (the tiny
    test bundle sends every one)."""
    tx = Transmitter()
    return tx, Receiver(tx.bundle)


@pytest.fixture(scope="module")
def pilots(bundle_dir):
    tx = Transmitter(bundle_dir, csi="pilots")
    return tx, Receiver(tx.bundle, csi="pilots")


def _apart(tx, rx, img, snr_db, seed, failures=None, **kw):
    """The link ends run apart: transmit_image, then receive_frame, one generator."""
    rng = np.random.default_rng(seed)
    frame, _, cbs, sent = transmit_image(tx, img, snr_db, rng, **kw)
    out, _, labels = receive_frame(rx, frame, rng, max_batch=kw.get("max_batch", 256), header_failures=failures)
    return frame, cbs, sent, out, labels


@pytest.mark.parametrize("max_batch", [256, 5, 1])
def test_run_link_is_the_two_ends_run_apart(shipped, img, max_batch):
    tx, rx = shipped
    frame, cbs, sent, out, labels = _apart(tx, rx, img, -3.0, 7, noise_var=2.0, max_batch=max_batch)
    rep = run_link(tx, rx, img, -3.0, np.random.default_rng(7), noise_var=2.0, max_batch=max_batch, capture=True)
    assert rep.image.dtype == np.uint8 and np.array_equal(rep.image, out)
    assert rep.psnr_db == link.psnr(img, out)
    assert rep.n_tiles == 12 and rep.channel_uses == 12 * tx.bundle.n_symbols
    assert rep.p_tot == frame.p_tot > 0
    V = tx.bundle.codebooks.shape[0]
    assert rep.codebook_use.shape == (V,)
    assert np.allclose(rep.codebook_use, [(cbs == v).mean() for v in range(V)])
    sent_mask = cbs < V
    assert 0 < sent_mask.sum() < cbs.size  # some sent, some not at -3 dB: both parts of the counts matter
    wrong = ((sent != labels) & sent_mask).sum()
    assert wrong > 0 and rep.label_error_rate == wrong / sent_mask.sum()
    c = rep.capture
    assert np.array_equal(c.h, frame.h) and c.h.dtype == np.complex64
    assert np.array_equal(c.gamma, channel_gamma(frame.h, 2.0))
    assert np.array_equal(c.codebooks, cbs) and c.codebooks.dtype == np.int64
    plan_cbs, orders, powers, _ = rx.plans.batch(frame.p_tot, c.gamma)
    assert np.array_equal(c.orders, orders) and np.array_equal(c.powers, powers) and c.powers.dtype == np.float64
    assert np.array_equal(c.label_errors, (sent != labels) & sent_mask)
    assert (c.grid, c.n_codebooks, c.p_tot, c.noise_var) == ((3, 4), V, frame.p_tot, 2.0)
    assert c.latent_hw == tuple(rx.bundle.latent_shape[1:]) and c.n_tiles == 12
    # the received samples: the frame through its channel with the same generator state
    rng = np.random.default_rng(7)
    f2 = transmit_image(tx, img, -3.0, rng, noise_var=2.0)[0]
    assert np.array_equal(c.y, through_channel(f2, rng, max_batch)[0].samples)
    eq = c.equalized()
    used = c.powers > 0
    hp = c.h[:, None] * np.sqrt(c.powers)  # [n, T]
    assert np.allclose(eq[used], c.y[used] / hp[used], rtol=1e-5)
    assert (eq[~used] == 0).all()


def test_run_link_with_pilots_is_the_two_ends_run_apart(pilots, img):
    tx, rx = pilots
    failures = []
    frame, cbs, sent, out, labels = _apart(tx, rx, img, 6.0, 3, failures, noise_var=2.0, max_batch=5)
    rep = run_link(tx, rx, img, 6.0, np.random.default_rng(3), noise_var=2.0, max_batch=5)
    assert np.array_equal(rep.image, out) and rep.capture is None
    per_tile = frame.preamble.shape[1]
    assert per_tile > 0 and rep.overhead_channel_uses == 12 * per_tile
    assert rep.header_failures == len(failures)


def test_header_failures_are_counted_over_every_batch(pilots, img, monkeypatch):
    tx, rx = pilots
    real = rx.receive_pilots

    def fail_all(*a, **k):
        q, read = real(*a, **k)
        return q, dataclasses.replace(read, ok=np.zeros_like(read.ok))

    monkeypatch.setattr(rx, "receive_pilots", fail_all)
    rep = run_link(tx, rx, img, 6.0, np.random.default_rng(3), max_batch=5)
    assert rep.header_failures == 12


def test_nothing_sent_means_no_label_errors(txrx, img, monkeypatch):
    """When no sub-vector is sent the rate is 0, not 0 / 0, and no codebook is used."""
    tx, rx = txrx
    V = tx.bundle.codebooks.shape[0]
    real = tx.send
    monkeypatch.setattr(tx, "send", lambda *a, **k: dataclasses.replace(r := real(*a, **k),
                                                                         codebooks=np.full_like(r.codebooks, V)))
    rep = run_link(tx, rx, img[:32, :32], 10.0, np.random.default_rng(0))
    assert rep.label_error_rate == 0.0 and rep.codebook_use.shape == (V,) and (rep.codebook_use == 0).all()


def test_defaults_one_tile_and_no_capture(txrx, img):
    tx, rx = txrx
    a = run_link(tx, rx, img[:32, :32], 8.0, np.random.default_rng(1))
    b = run_link(tx, rx, img[:32, :32], 8.0, np.random.default_rng(1), "rayleigh", False, 1.0, False, 256)
    assert a.n_tiles == 1 and a.capture is None and np.array_equal(a.image, b.image)
    assert a.label_error_rate == b.label_error_rate and a.p_tot == b.p_tot


def test_default_batches_of_256(txrx):
    tx, rx = txrx
    big = np.zeros((32, 32 * 300, 3), np.uint8)
    done = []
    run_link(tx, rx, big, 10.0, np.random.default_rng(0), "awgn", progress=done.append)
    assert done == [256, 44]


def test_progress_per_batch(txrx, img):
    tx, rx = txrx
    done = []
    run_link(tx, rx, img, 10.0, np.random.default_rng(0), max_batch=5, progress=done.append)
    assert done == [5, 5, 2]


def test_the_receiver_checks_the_links_header(txrx, img, monkeypatch):
    tx, rx = txrx
    seen = []
    monkeypatch.setattr(rx, "check_frame", seen.append)
    rep = run_link(tx, rx, img, 3.0, np.random.default_rng(2), "awgn", noise_var=0.5, capture=True)
    (f,) = seen
    assert (f.kind, f.channel, f.bundle_hash, f.snr_db, f.p_tot, f.noise_var) == (
        KIND_TX, "awgn", tx.bundle.hash, 3.0, 0.0, 0.5)
    assert f.image_size == (70, 100) and f.tile_size == tx.bundle.tile_size and f.n_bits == tx.bundle.n_bits
    assert np.array_equal(f.h, rep.capture.h)
    assert f.samples.shape == (12, tx.bundle.n_symbols) and not f.samples.any() and f.samples.dtype == np.complex64


def test_timings_add_up_per_batch(txrx, img, monkeypatch):
    """With a clock that ticks 1 s per reading (link.py's only), the channel takes 1 s per
    batch and the whole link 2 per batch + 1; each end's stages are summed over the batches."""
    tx, rx = txrx
    tick = itertools.count(100)
    monkeypatch.setattr(link, "time", types.SimpleNamespace(perf_counter=lambda: float(next(tick))))
    sends, recvs = [], []
    real_send, real_recv = tx.send, rx.receive
    monkeypatch.setattr(tx, "send", lambda *a, **k: sends.append(real_send(*a, **k)) or sends[-1])
    monkeypatch.setattr(rx, "receive", lambda *a, **k: recvs.append(real_recv(*a, **k)) or recvs[-1])
    rep = run_link(tx, rx, img, 10.0, np.random.default_rng(0), max_batch=5)
    t = rep.timings
    assert t["channel"] == 3.0 and t["end_to_end"] == 7.0
    assert set(t) == set(STAGES) | {"end_to_end"}
    assert len(sends) == len(recvs) == 3
    for k in recvs[0].timings:  # a stage both ends time (e.g. allocate) reports the receiver's
        assert t[k] == pytest.approx(sum(r.timings[k] for r in recvs), rel=1e-12)
    for k in set(sends[0].timings) - set(recvs[0].timings):
        assert t[k] == pytest.approx(sum(s.timings[k] for s in sends), rel=1e-12)


def test_add():
    t = {"a": 1.5}
    link._add(t, {"a": 2.0, "b": 3.0})
    assert t == {"a": 3.5, "b": 3.0}


def test_link_errors_are_exact(txrx, pilots, img):
    tx, rx = txrx
    ptx, prx = pilots
    with pytest.raises(ValueError) as e:
        run_link(ptx, prx, img, 10.0, np.random.default_rng(0), capture=True)
    assert str(e.value) == "capture: the link plot shows perfect-CSI plans; use csi='perfect'"
    with pytest.raises(ValueError) as e:
        run_link(tx, prx, img, 10.0, np.random.default_rng(0))
    assert str(e.value).startswith("csi: the transmitter uses ") and str(e.value).endswith(": both ends must agree")


def test_through_channel(txrx, pilots, img):
    tx, rx = txrx
    rng = np.random.default_rng(4)
    f = transmit_image(tx, img, 5.0, rng, noise_var=2.0)[0]
    state = rng.bit_generator.state
    g, dt = through_channel(f, rng, max_batch=5)
    assert g.kind == KIND_RX and 0 <= dt < 60 and g.samples.dtype == np.complex64
    assert np.array_equal(g.h, f.h) and g.image_size == f.image_size and g.p_tot == f.p_tot
    assert g.noise_var == 2.0 and g.bundle_hash == f.bundle_hash
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = state
    want, _, _ = receive_frame(rx, f, rng2)
    assert np.array_equal(receive_frame(rx, g, np.random.default_rng(99))[0], want)  # no more draws
    assert not np.array_equal(g.samples, f.samples)
    same, dt0 = through_channel(g, rng)
    assert same is g and dt0 == 0.0
    ptx, prx = pilots
    fp = transmit_image(ptx, img, 5.0, np.random.default_rng(4))[0]
    gp, _ = through_channel(fp, np.random.default_rng(5))
    assert gp.h is None and gp.preamble.shape == fp.preamble.shape and gp.preamble.dtype == np.complex64
    assert not np.array_equal(gp.preamble, fp.preamble) and np.isfinite(gp.preamble).all()


def test_link_summary_document(shipped, img):
    tx, rx = shipped
    snr = 4.123456  # digits past the 4 kept
    rep = run_link(tx, rx, img, snr, np.random.default_rng(7), "awgn", per_image=True)
    d = link_summary(rep, tx, rx, "kodim.png", (100, 70), snr, "awgn", True, 7)
    es, eb = snr_db_to_es_eb(snr, tx.bundle.n_bits, tx.bundle.n_symbols)
    assert d["format"] == LINK_FORMAT and d["version"] == LINK_VERSION and "environment" in d
    want = {
        "image": "kodim.png", "size": [100, 70], "snr_db": snr, "es_n0_db": round(es, 4), "eb_n0_db": round(eb, 4),
        "channel": "awgn", "fading": "per image", "seed": 7, "psnr_db": round(rep.psnr_db, 3), "tiles": 12,
        "channel_uses": rep.channel_uses, "channel_uses_per_tile": tx.bundle.n_symbols,
        "bits_per_tile": tx.bundle.n_bits, "p_tot": rep.p_tot, "label_error_rate": rep.label_error_rate,
        "codebook_use": [round(float(u), 4) for u in rep.codebook_use],
        "latency_ms": {k: round(1e3 * rep.timings[k], 3) for k in (*STAGES, "end_to_end")},
        "bundle": tx.bundle.hash_hex, "receiver": rx.settings,
    }
    assert {k: d[k] for k in want} == want
    assert set(d) == set(want) | {"format", "version", "created_utc", "environment"}
    assert es != eb and list(d["latency_ms"]) == [*STAGES, "end_to_end"]
    assert d["eb_n0_db"] == 4.1235 and any(0 < u < 1 and u != round(u, 3) for u in d["codebook_use"])
    d2 = link_summary(rep, tx, rx, "kodim.png", (100, 70), snr, "awgn", False, 7)
    assert d2["fading"] == "per tile"


def test_link_summary_with_pilots(pilots, img):
    tx, rx = pilots
    rep = run_link(tx, rx, img, 6.0, np.random.default_rng(3), max_batch=5)
    d = link_summary(rep, tx, rx, "x.png", (100, 70), 6.0, "rayleigh", False, 3)
    assert d["csi"] == {**rx.settings["csi"], "overhead_channel_uses_total": rep.overhead_channel_uses,
                        "header_failures": rep.header_failures}
    assert rep.overhead_channel_uses > 0 and rep.header_failures > 0
