"""The receiver's and transmitter's edges that the link tests do not reach: frames cut into
batches, received frames and frames with pilots through ``receive_frame``, the preamble a frame
asks for, the pixel limit, every refusal's message, the plan from ``sigma^2`` on both ends.

On the shipped default bundle (no export), a few tiles at a time."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from escmvq.runtime import receiver as receiver_mod
from escmvq.runtime.frame import KIND_RX, KIND_TX, Frame, FrameError


@pytest.fixture(scope="module")
def ends():
    """The shipped bundle: a transmitter and a hard-decision receiver (perfect CSI), and a
    transmitter with 4 pilots."""
    from escmvq.runtime import Receiver, Transmitter
    from escmvq.runtime.csi import CsiConfig

    tx = Transmitter(threads=1)
    return tx, Receiver(tx.bundle, threads=1, decoding="hard"), Transmitter(tx.bundle, threads=1,
                                                                             csi=CsiConfig(mode="pilots", pilots=4))


@pytest.fixture(scope="module")
def img():
    """A 40x70 random image: 6 tiles of 32x32, cropped at two edges."""
    return np.random.default_rng(5).integers(0, 256, (40, 70, 3), dtype=np.uint8)


def _header(bundle, image_size, n_tiles, kind=KIND_RX) -> Frame:
    """A frame of ``bundle``'s shapes holding zero samples."""
    return Frame(kind=kind, channel="awgn", bundle_hash=bundle.hash, snr_db=10.0, p_tot=float(bundle.n_bits),
                 noise_var=1.0, image_size=image_size, tile_size=bundle.tile_size, n_bits=bundle.n_bits,
                 h=np.ones(n_tiles, np.complex64), samples=np.zeros((n_tiles, bundle.n_symbols), np.complex64))


# ------------------------------------------------------------------------ received_batches
def test_received_batches_apply_the_channel_batch_by_batch_as_at_once(ends, img):
    from escmvq.core.channels import apply_channel
    from escmvq.runtime.receiver import received_batches
    from escmvq.runtime.transmitter import transmit_image

    tx, _, _ = ends
    frame = transmit_image(tx, img, 10.0, np.random.default_rng(0), "rayleigh")[0]
    t0 = time.perf_counter()
    got = list(received_batches(frame, np.random.default_rng(1), max_batch=4))
    wall = time.perf_counter() - t0
    assert [(i, j) for i, j, *_ in got] == [(0, 4), (4, 6)]
    assert all(y_pre is None for *_, y_pre, _ in got)
    assert all(0.0 < dt <= wall for *_, dt in got)  # the channel's time, each batch its own
    y = np.concatenate([g[2] for g in got])
    np.testing.assert_array_equal(y, apply_channel(frame.samples, frame.h, np.random.default_rng(1), frame.noise_var))
    # a received frame is passed through as it is: no draw, no time
    rng = np.random.default_rng(2)
    rx_frame = replace(frame, kind=KIND_RX, samples=y)
    (i, j, y2, y_pre, dt), = received_batches(rx_frame, rng)
    assert (i, j, y_pre) == (0, 6, None) and np.array_equal(y2, y) and dt == 0.0 and isinstance(dt, float)
    assert rng.random() == np.random.default_rng(2).random()


def test_received_batches_default_is_256_tiles(ends):
    from escmvq.runtime.receiver import received_batches

    frame = _header(ends[0].bundle, (32, 32 * 257), 257)
    assert [(i, j) for i, j, *_ in received_batches(frame, np.random.default_rng(0))] == [(0, 256), (256, 257)]



# ------------------------------------------------------------------------ receive_frame
def test_receive_frame_in_batches_is_the_frame_at_once(ends, img, monkeypatch):
    from escmvq.core.channels import apply_channel
    from escmvq.runtime.receiver import receive_frame
    from escmvq.runtime.transmitter import transmit_image

    tx, rx, _ = ends
    N = int(tx.bundle.model["N"])
    frame = transmit_image(tx, img, 10.0, np.random.default_rng(0), "rayleigh", noise_var=4.0)[0]
    calls = []
    out, timings, labels = receive_frame(rx, frame, np.random.default_rng(1), max_batch=4, progress=calls.append)
    assert calls == [4, 2]
    assert out.dtype == np.uint8 and out.shape == img.shape and labels.shape == (6, N) and labels.dtype == np.int64
    whole, _, whole_labels = receive_frame(rx, frame, np.random.default_rng(1))
    np.testing.assert_array_equal(out, whole)
    np.testing.assert_array_equal(labels, whole_labels)
    y = apply_channel(frame.samples, frame.h, np.random.default_rng(1), 4.0)
    np.testing.assert_array_equal(labels, rx.receive(y, frame.h, frame.p_tot, 4.0).labels)
    assert set(timings) == {"channel", "allocate", "demodulate", "dequantize", "decode"}
    # the channel time is every batch's
    real = receiver_mod.received_batches

    batches = []

    def timed(frame, rng, max_batch):
        batches.append(max_batch)
        for k, (i, j, y, y_pre, _) in enumerate(real(frame, rng, max_batch)):
            yield i, j, y, y_pre, (0.25, 0.5)[k]

    receive = rx.receive
    monkeypatch.setattr(receiver_mod, "received_batches", timed)
    monkeypatch.setattr(rx, "receive", lambda *a: replace(receive(*a), timings={"decode": 0.125}))
    timings = receive_frame(rx, frame, np.random.default_rng(1), max_batch=4)[1]
    assert timings == {"channel": 0.75, "decode": 0.25}
    receive_frame(rx, frame, np.random.default_rng(1))
    assert batches == [4, 256]  # the default batch
    monkeypatch.undo()
    # a received frame took no time in the channel
    rx_frame = replace(frame, kind=KIND_RX, samples=y)
    out2, timings, labels2 = receive_frame(rx, rx_frame, np.random.default_rng(7))
    assert timings["channel"] == 0.0
    np.testing.assert_array_equal(out2, whole)
    np.testing.assert_array_equal(labels2, whole_labels)


def test_receive_frame_refuses_more_than_the_pixel_limit(ends):
    from escmvq.runtime.images import MAX_PIXELS
    from escmvq.runtime.receiver import receive_frame

    tx, rx, _ = ends
    assert MAX_PIXELS == 8000 * 8000
    with pytest.raises(FrameError, match=r"^frame holds a 8001x8000 image, more than the 64000000 pixel limit$"):
        receive_frame(rx, _header(tx.bundle, (8000, 8001), 1), np.random.default_rng(0))
    out, _, labels = receive_frame(rx, _header(tx.bundle, (8000, 8000), 1), np.random.default_rng(0))  # at the limit
    assert out.shape == (8000, 8000, 3) and labels.shape == (1, int(tx.bundle.model["N"]))


def test_receive_frame_reads_a_pilots_frame_with_its_settings_batch_by_batch(ends, img):
    """A version-3 frame: each batch's preamble read with the frame's settings and this
    receiver's estimator (here LMMSE), header failures reported by tile."""
    from escmvq.runtime import Receiver
    from escmvq.runtime.csi import CsiConfig, apply_channel_csi
    from escmvq.runtime.images import untile_into
    from escmvq.runtime.receiver import receive_frame
    from escmvq.runtime.transmitter import transmit_image

    txp = ends[2]
    frame = transmit_image(txp, img, 8.0, np.random.default_rng(3), noise_var=4.0)[0]
    pre = frame.preamble.copy()
    hdr = 4 + np.arange(3) * 11  # the first header symbol of each of the three copies
    for row in (1, 4):
        pre[row, hdr] *= -1  # flips both bits of symbol 0 in every copy: fails the CRC
    frame = replace(frame, preamble=pre)
    rx = Receiver(txp.bundle, threads=1, decoding="soft", csi=CsiConfig(estimator="lmmse"))  # perfect CSI itself
    failed = []
    out, _, labels = receive_frame(rx, frame, np.random.default_rng(4), max_batch=4, header_failures=failed)
    assert [f[0] for f in failed] == [1, 4] and all("CRC-8" in why for _, why in failed)
    by_hand = Receiver(txp.bundle, threads=1, decoding="soft", csi=replace(frame.csi, estimator="lmmse"))
    rng = np.random.default_rng(4)
    want = np.empty_like(out)
    for i, j in ((0, 4), (4, 6)):
        y, y_pre = apply_channel_csi(frame.samples[i:j], frame.preamble[i:j], frame.h[i:j], rng, 4.0)
        q, read = by_hand.receive_pilots(y_pre, y, frame.p_tot, 4.0)
        np.testing.assert_array_equal(labels[i:j], q.labels)
        untile_into(want, q.tiles, i, frame.grid)
    np.testing.assert_array_equal(out, want)  # the frame's sigma^2 (not 1) in the LLRs and the estimate
    assert (labels[[1, 4]] == -1).all() and (labels[[0, 2, 3, 5]] >= 0).any()


def test_preamble_for_takes_the_frames_settings_with_the_receivers_estimator(ends):
    from escmvq.runtime import Receiver
    from escmvq.runtime.csi import CsiConfig

    bundle = ends[0].bundle
    rx = Receiver(bundle, threads=1, decoding="hard", csi=CsiConfig(estimator="lmmse"))
    assert rx.preamble is None and rx._preambles == {}
    cfg = CsiConfig(mode="pilots", pilots=4, repetitions=2)
    pre = rx.preamble_for(cfg)
    assert pre.cfg == replace(cfg, estimator="lmmse") and pre.allocator is rx.plans.allocator
    assert pre.T == bundle.n_symbols and pre.n_preamble == 4 + 2 * pre.layout.n_symbols
    assert rx.preamble_for(replace(cfg)) is pre and rx.preamble_for(replace(cfg, estimator="ls")) is pre  # kept
    assert list(rx._preambles) == [pre.cfg]


# ------------------------------------------------------------------------ check_frame
def test_check_frame_refusals_and_their_messages(ends, img):
    import re

    from escmvq.runtime.receiver import FrameMismatch
    from escmvq.runtime.transmitter import transmit_image

    tx, rx, txp = ends
    b = tx.bundle
    frame = _header(b, (32, 32), 1)
    rx.check_frame(frame)
    other = bytes(range(32))
    with pytest.raises(FrameMismatch, match="^" + re.escape(f"frame was made with bundle 0001020304050607, "
                                                            f"this receiver has {b.hash_hex[:16]}: refusing to decode") + "$"):
        rx.check_frame(replace(frame, bundle_hash=other))
    T, L = b.n_symbols, b.n_bits
    for change, shapes in (({"tile_size": (32, 64)}, f"tile (32, 64), T={T}, L={L}"),
                           ({"samples": np.zeros((1, T - 1), np.complex64)}, f"tile {b.tile_size}, T={T - 1}, L={L}"),
                           ({"n_bits": L + 2}, f"tile {b.tile_size}, T={T}, L={L + 2}")):
        with pytest.raises(FrameMismatch, match="^" + re.escape(f"frame shapes ({shapes}) do not match the bundle") + "$"):
            rx.check_frame(replace(frame, **change))
    # a pilots frame: its plan header must have the length this bundle's allocator reads
    sent = transmit_image(txp, img[:32, :32], 10.0, np.random.default_rng(0))[0]
    rx.check_frame(sent)
    need = rx.preamble_for(sent.csi).layout.n_symbols
    short = replace(sent, preamble=sent.preamble[:, :-sent.csi.repetitions])
    with pytest.raises(FrameMismatch, match="^" + re.escape(f"frame's plan header has {need - 1} QPSK symbols per copy, "
                                                            f"this bundle's allocator needs {need}") + "$"):
        rx.check_frame(short)


# ------------------------------------------------------------------------ planning, LLRs
class _Recorder:
    """A plan cache that records what it is asked for."""

    def __init__(self, plans):
        self.plans, self.calls = plans, []
        self.allocator = plans.allocator

    def batch(self, p_tot, gammas):
        self.calls.append((p_tot, np.array(gammas, copy=True)))
        return self.plans.batch(p_tot, gammas)


def test_the_receiver_plans_from_p_tot_and_sigma2_and_rounds_h_as_the_transmitter(ends, monkeypatch):
    """Both ends plan from ``(P_tot, |h|^2 / sigma^2)``; ``h`` is taken as the complex64 a frame
    holds, so a receiver handed complex128 coefficients decodes as from the frame's."""
    from escmvq.core.channels import channel_gamma
    from escmvq.runtime import Receiver

    tx = ends[0]
    rx = Receiver(tx.bundle, threads=1, decoding="soft")
    h = np.array([0.1 + 0.2j, -0.7 + 0.3j])  # complex128, not exact in complex64
    h64 = h.astype(np.complex64)
    rng = np.random.default_rng(2)
    y = (rng.standard_normal((2, tx.bundle.n_symbols)) + 1j * rng.standard_normal((2, tx.bundle.n_symbols))) * 3
    a, b = rx.receive(y, h, 3000.0, 4.0), rx.receive(y, h64, 3000.0, 4.0)
    assert a.tiles.tobytes() == b.tiles.tobytes() and np.array_equal(a.labels, b.labels)
    assert rx.bit_llrs(y, h, 3000.0, 4.0)[0].tobytes() == rx.bit_llrs(y, h64, 3000.0, 4.0)[0].tobytes()
    rec = _Recorder(rx.plans)
    monkeypatch.setattr(rx, "plans", rec)
    rx.receive(y, h, 300.0, 4.0)
    rx.bit_llrs(y, h, 300.0, 4.0)
    rx.bit_llrs(y, h, 300.0)  # sigma^2 = 1 by default
    want = [(300.0, channel_gamma(h64, 4.0)), (300.0, channel_gamma(h64, 4.0)), (300.0, channel_gamma(h64, 1.0))]
    assert [(p, g.tobytes()) for p, g in rec.calls] == [(p, g.tobytes()) for p, g in want]
    # the transmitter asks its plans the same
    rec = _Recorder(tx.plans)
    monkeypatch.setattr(tx, "plans", rec)
    tiles = np.random.default_rng(0).random((2, 3, *tx.bundle.tile_size), dtype=np.float32)
    tx.send(tiles, p_tot=300.0, h=h, noise_var=4.0)
    assert [(p, g.tobytes()) for p, g in rec.calls] == [(300.0, channel_gamma(h64, 4.0).tobytes())]


def test_maxlog_receivers_give_maxlog_llrs(ends):
    from escmvq.core.channels import effective_noise_var, equalize
    from escmvq.runtime import Receiver
    from escmvq.runtime.modem import demodulate_llr

    b = ends[0].bundle
    rng = np.random.default_rng(3)
    h = np.array([0.9 - 0.4j, 0.3 + 1.1j], np.complex64)
    y = (rng.standard_normal((2, b.n_symbols)) + 1j * rng.standard_normal((2, b.n_symbols))).astype(np.complex64)
    rx = Receiver(b, threads=1, decoding="soft", llr="maxlog")
    got, cbs = rx.bit_llrs(y, h, 2000.0, 2.0)
    _, orders, powers, bit_order = rx.plans.batch(2000.0, np.abs(h.astype(np.complex128)) ** 2 / 2.0)
    assert (orders > 2).any()  # for QPSK max-log is exact
    nv = effective_noise_var(h, powers, 2.0)
    for mode, llr in (("maxlog", got), ("exact", Receiver(b, threads=1, decoding="soft").bit_llrs(y, h, 2000.0, 2.0)[0])):
        want = demodulate_llr(equalize(y, h, powers), orders, bit_order, nv, mode).reshape(got.shape)
        np.testing.assert_array_equal(llr, want)
    assert not np.array_equal(got, want)


def test_estimation_error_llrs_exactly_and_at_a_zero_estimate(ends):
    """``_llrs`` adds ``error_var / |h_hat|^2`` (in float64) to each symbol's noise; a row whose
    estimate is exactly 0 carries no evidence (LLRs 0), without a warning."""
    import warnings

    from escmvq.core.channels import effective_noise_var, equalize
    from escmvq.runtime import Receiver
    from escmvq.runtime.modem import demodulate_llr

    b = ends[0].bundle
    rx = Receiver(b, threads=1, decoding="soft")
    rng = np.random.default_rng(4)
    h = np.array([0.0, 0.5 - 0.5j, 1.3 + 0.1j], np.complex64)
    y = (rng.standard_normal((3, b.n_symbols)) + 1j * rng.standard_normal((3, b.n_symbols))).astype(np.complex64)
    _, orders, powers, bit_order = rx.plans.batch(200.0, np.array([0.5, 0.5, 1.7]))
    e = 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = rx._llrs(y, h, powers, orders, bit_order, 1.0, e)
    assert np.all(got[0] == 0) and np.all(np.any(got[1:] != 0, axis=(1, 2)))
    h2 = np.abs(h[1:].astype(np.complex128)) ** 2
    nv = effective_noise_var(h[1:], powers[1:], 1.0) + (e / h2)[:, None]
    want = demodulate_llr(equalize(y[1:], h[1:], powers[1:]), orders[1:], bit_order[1:], nv).reshape(got[1:].shape)
    np.testing.assert_array_equal(got[1:], want)


def test_pilots_llrs_get_the_estimation_error(ends, img, monkeypatch):
    """``receive_pilots`` passes the estimate's error variance on to the soft LLRs, and times the estimate."""
    from escmvq.core.channels import apply_channel
    from escmvq.runtime import Receiver
    from escmvq.runtime.images import tile_range

    txp = ends[2]
    rx = Receiver(txp.bundle, threads=1, decoding="soft", csi=txp.csi)
    seen = []
    llrs = rx._llrs
    monkeypatch.setattr(rx, "_llrs", lambda *a: (seen.append(a[-1]), llrs(*a))[1])
    h = np.array([0.8 + 0.3j, -0.2 + 0.9j], np.complex64)
    r = txp.send(tile_range(img, txp.bundle.tile_size, 0, 2), 5.0, h)
    rng = np.random.default_rng(6)
    y, y_pre = apply_channel(r.samples, h, rng, 1.0), apply_channel(r.preamble, h, rng, 1.0)
    t0 = time.perf_counter()
    q, read = rx.receive_pilots(y_pre, y, r.p_tot)
    wall = time.perf_counter() - t0
    assert read.error_var > 0 and len(seen) == 1 and seen[0] == read.error_var
    assert set(q.timings) == {"estimate", "allocate", "demodulate", "dequantize", "decode"}
    assert 0 < q.timings["estimate"] <= wall and 0 < sum(q.timings.values()) <= wall


def test_receive_pilots_on_a_perfect_csi_receiver_is_refused(ends):
    _, rx, _ = ends
    with pytest.raises(ValueError, match=r"^receive_pilots: this receiver was built with csi='perfect'$"):
        rx.receive_pilots(np.zeros((1, 41), np.complex64), np.zeros((1, 144), np.complex64), 100.0)


def test_decode_defaults_to_codebook_zero(ends):
    """``decode(z)``: every sub-vector on codebook 0, for a decoder that takes the codebook map."""
    _, rx, _ = ends
    b = rx.bundle
    assert b.decoder_cond is not None
    z = np.random.default_rng(0).standard_normal((1, *b.latent_shape)).astype(np.float32)
    x = rx.decode(z)
    np.testing.assert_array_equal(x, rx.decode(z, 0))
    assert not np.array_equal(x, rx.decode(z, 1))


def test_the_missing_prior_message_only_when_a_prior_is_wanted_and_missing(ends, capsys):
    import dataclasses

    from escmvq.runtime import Receiver

    shipped = ends[0].bundle
    receiver_mod._PRIOR_WARNED.discard(shipped.hash)
    Receiver(shipped, threads=1, decoding="soft")  # the bundle has a prior
    b = dataclasses.replace(shipped, label_prior=None)
    receiver_mod._PRIOR_WARNED.discard(b.hash)
    Receiver(b, threads=1, decoding="soft", prior=False)  # none wanted
    assert capsys.readouterr().err == ""
    Receiver(b, threads=1, decoding="soft")
    assert capsys.readouterr().err == (f"escmvq: bundle {b.hash_hex[:12]} has no label_prior (exported before it "
                                       "existed): soft decoding uses a uniform label prior\n")


# ------------------------------------------------------------------------ settings
def test_settings_as_recorded_and_their_messages(ends):
    from escmvq.runtime import Receiver
    from escmvq.runtime.receiver import receiver_settings, resolve_decoding

    assert receiver_settings("hard", "map", "maxlog", False) == {"decoding": "hard", "estimate": None, "llr": None,
                                                                 "prior": None}
    assert receiver_settings("soft", prior=1) == {"decoding": "soft", "estimate": "mmse", "llr": "exact", "prior": True}
    assert receiver_settings()["prior"] is True and receiver_settings(prior=0)["prior"] is False
    for kw, msg in (({"decoding": "bogus"}, "decoding: expected one of auto, hard, soft, got 'bogus'"),
                    ({"soft_estimate": "mean"}, "soft_estimate: expected one of mmse, map, got 'mean'"),
                    ({"llr": "approx"}, "llr: expected one of exact, maxlog, got 'approx'")):
        with pytest.raises(ValueError, match=f"^{msg}$"):
            receiver_settings(**kw)
    with pytest.raises(ValueError, match="^decoding: expected one of auto, hard, soft, got 'HARD'$"):
        resolve_decoding("HARD", ends[0].bundle)
    rx = Receiver(ends[0].bundle, threads=1, decoding="soft", prior=False)
    assert rx.requested["prior"] is False and rx.settings["prior"] == "off"


# ------------------------------------------------------------------------ transmitter
def test_transmit_image_and_send_image_defaults_and_settings(ends, img):
    from escmvq.runtime.transmitter import transmit_image

    tx = ends[0]
    frame, _, cbs, labels = transmit_image(tx, img, 10.0, np.random.default_rng(0))
    assert frame.channel == "rayleigh" and frame.noise_var == 1.0 and len(set(frame.h.tolist())) == 6  # a draw per tile
    assert frame.to_bytes() == transmit_image(tx, img, 10.0, np.random.default_rng(0), "rayleigh", False, 1.0)[0].to_bytes()
    assert tx.send_image(img, 10.0, np.random.default_rng(0)).to_bytes() == frame.to_bytes()
    one = tx.send_image(img, 10.0, np.random.default_rng(0), "rayleigh", True, 4.0)
    want = transmit_image(tx, img, 10.0, np.random.default_rng(0), per_image=True, noise_var=4.0)[0]
    assert one.to_bytes() == want.to_bytes()
    assert len(set(one.h.tolist())) == 1 and one.noise_var == 4.0 and one.p_tot == 4 * frame.p_tot
    awgn = tx.send_image(img, 10.0, np.random.default_rng(0), "awgn")
    assert awgn.channel == "awgn" and np.all(awgn.h == 1)


def test_transmit_image_batches(ends, img, monkeypatch):
    """``max_batch`` tiles per ``send`` (256 by default), progress per batch, the results in
    tile order, with every buffer in the batch's dtypes."""
    from escmvq.runtime.frame import KIND_TX
    from escmvq.runtime.transmitter import TxResult, transmit_image

    tx = ends[0]
    whole, t_whole, cbs, labels = transmit_image(tx, img, 10.0, np.random.default_rng(0))
    calls = []
    frame, timings, cbs4, labels4 = transmit_image(tx, img, 10.0, np.random.default_rng(0), max_batch=4,
                                                   progress=calls.append)
    assert calls == [4, 2] and frame.kind == KIND_TX
    assert frame.to_bytes() == whole.to_bytes()
    np.testing.assert_array_equal(cbs4, cbs)
    np.testing.assert_array_equal(labels4, labels)
    assert cbs4.dtype == labels4.dtype == np.int64 and frame.samples.dtype == np.complex64
    assert set(timings) == set(t_whole) == {"encode", "allocate", "quantize", "modulate"}
    # each batch's times are added up; the default batch is 256 tiles
    T, N = tx.bundle.n_symbols, int(tx.bundle.model["N"])
    sizes = []

    def send(tiles, snr_db, h, noise_var):
        b = len(tiles)
        sizes.append(b)
        return TxResult(samples=np.zeros((b, T), np.complex64), h=h, p_tot=123.0, noise_var=noise_var,
                        codebooks=np.zeros((b, N), np.int64), labels=np.zeros((b, N), np.int64),
                        timings={"encode": 0.125})

    monkeypatch.setattr(tx, "send", send)
    frame, timings, _, _ = transmit_image(tx, np.zeros((32, 32 * 257, 3), np.uint8), 10.0, np.random.default_rng(0))
    assert sizes == [256, 1] and timings == {"encode": 0.25} and frame.p_tot == 123.0 and frame.n_tiles == 257


def test_a_pilots_frame_holds_every_batchs_preamble(ends, img):
    from escmvq.runtime.images import tile_range
    from escmvq.runtime.transmitter import transmit_image

    txp = ends[2]
    frame, timings, _, _ = transmit_image(txp, img, 10.0, np.random.default_rng(0), max_batch=4)
    assert frame.csi == txp.csi and frame.preamble.dtype == np.complex64 and "preamble" in timings
    r = txp.send(tile_range(img, txp.bundle.tile_size, 4, 6), 10.0, frame.h[4:])
    np.testing.assert_array_equal(frame.preamble[4:], r.preamble)
    np.testing.assert_array_equal(frame.samples[4:], r.samples)
    assert transmit_image(ends[0], img, 10.0, np.random.default_rng(0))[0].csi is None


def test_send_refusals_defaults_and_results(ends):
    from escmvq.core.channels import channel_gamma
    from escmvq.runtime.transmitter import snr_to_ptot

    tx = ends[0]
    b = tx.bundle
    tiles = np.random.default_rng(1).random((2, 3, *b.tile_size), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^tiles: empty batch$"):
        tx.send(tiles[:0], 10.0)
    with pytest.raises(ValueError, match=r"^tiles: expected \[b, 3, 32, 32\], got \(2, 3, 32, 16\)$"):
        tx.send(tiles[..., :16], 10.0)
    with pytest.raises(ValueError, match=r"^give snr_db or p_tot$"):
        tx.send(tiles)
    assert snr_to_ptot(10, 576) == 5760.0 and snr_to_ptot(10.0, 576.0, 4) == 4 * 5760.0
    r = tx.send(tiles.astype(np.float64), 10, noise_var=4)
    assert r.h.dtype == np.complex64 and np.all(r.h == 1) and r.p_tot == snr_to_ptot(10.0, b.n_bits, 4.0)
    assert type(r.p_tot) is float and type(r.noise_var) is float and r.noise_var == 4.0
    assert r.preamble is None and r.gamma_q is None
    same = tx.send(tiles, p_tot=r.p_tot, h=np.ones((2, 1)), noise_var=4.0)  # h as [b, 1]; p_tot given
    assert same.samples.tobytes() == r.samples.tobytes() and np.array_equal(same.labels, r.labels)
    assert same.h.dtype == np.complex64
    assert tx.send(tiles, snr_db=-50.0, p_tot=r.p_tot, noise_var=4.0).samples.tobytes() == r.samples.tobytes()
    t0 = time.perf_counter()
    r = tx.send(tiles, 10.0)
    wall = time.perf_counter() - t0
    assert set(r.timings) == {"encode", "allocate", "quantize", "modulate"}
    assert all(v >= 0 for v in r.timings.values()) and 0 < sum(r.timings.values()) <= wall
    assert channel_gamma(r.h).tolist() == [1.0, 1.0]


def test_not_sent_sub_vectors_are_labelled_on_the_last_codebook(ends):
    """Erasure plans: a sub-vector not sent (codebook V) is quantized with codebook V-1; its
    bits come after every sent bit, so no symbol carries them."""
    from escmvq.core import pvq
    from escmvq.runtime.quantize import quantize

    tx = ends[0]
    b = tx.bundle
    V, N = b.codebooks.shape[0], int(b.model["N"])
    tiles = np.random.default_rng(0).random((4, 3, *b.tile_size), dtype=np.float32)
    c_first, c0 = b.allocator.prefix_cost_range()
    r = tx.send(tiles, p_tot=float(np.sqrt(c_first * c0)), h=np.ones(4, np.complex64))
    gone = r.codebooks == V
    assert gone.any() and (~gone).any()
    last = quantize(pvq.to_subvectors(tx.encode(tiles)), b.codebooks, np.full(N, V - 1))
    np.testing.assert_array_equal(r.labels[gone], last[gone])


def test_send_subvectors_plans_from_sigma2_one_by_default_or_the_given_gamma(ends):
    from escmvq.core import pvq
    from escmvq.core.channels import channel_gamma
    from escmvq.runtime.transmitter import send_subvectors

    tx = ends[0]
    b = tx.bundle
    tiles = np.random.default_rng(2).random((2, 3, *b.tile_size), dtype=np.float32)
    zs = pvq.to_subvectors(tx.encode(tiles))
    h = np.array([0.6 + 0.1j, 1.2 - 0.5j], np.complex64)
    rec = _Recorder(tx.plans)
    send_subvectors(zs, b.codebooks, tx._search, rec, tx._B, 500.0, h)
    send_subvectors(zs, b.codebooks, tx._search, rec, tx._B, 500.0, h, 4.0, gamma=np.array([0.25, 3.0]))
    assert [(p, g.tolist()) for p, g in rec.calls] == [(500.0, channel_gamma(h, 1.0).tolist()), (500.0, [0.25, 3.0])]


def test_a_pilots_transmitter_plans_with_the_headers_gamma_of_h2_over_sigma2(ends, monkeypatch):
    from escmvq.runtime.transmitter import Transmitter

    txp = ends[2]
    tiles = np.random.default_rng(3).random((2, 3, *txp.bundle.tile_size), dtype=np.float32)
    h = np.array([0.6 + 0.2j, 1.4 - 0.8j], np.complex64)
    rec = _Recorder(txp.plans)
    monkeypatch.setattr(txp, "plans", rec)
    t0 = time.perf_counter()
    r = txp.send(tiles, p_tot=900.0, h=h, noise_var=4.0)
    wall = time.perf_counter() - t0
    assert r.gamma_q is not None and [g.tolist() for _, g in rec.calls] == [r.gamma_q.tolist()]
    assert 0 <= r.timings["preamble"] and sum(r.timings.values()) <= wall
    half = txp.send(tiles, p_tot=900.0, h=h / 2, noise_var=1.0)  # the same |h|^2 / sigma^2, exactly
    unit = txp.send(tiles, p_tot=900.0, h=h, noise_var=1.0)
    assert r.gamma_q.tolist() == half.gamma_q.tolist() != unit.gamma_q.tolist()
    # the bundle object given, not the default one; encode takes any float tiles
    other = replace(txp.bundle, manifest=dict(txp.bundle.manifest))  # another object, the same tables
    tx = Transmitter(other, threads=1)
    assert tx.bundle is other
    np.testing.assert_array_equal(tx.encode(tiles.astype(np.float64)), tx.encode(tiles))


def test_search_matrices_are_float32_whatever_the_codebooks_dtype():
    """The search matrix ``[-2 C^T; ||c||^2]`` is float32 (the BLAS product the transmitter runs per
    frame), also from float64 codebooks; its rows are what the docstring says."""
    from escmvq.runtime.quantize import search_matrices

    cb = np.random.default_rng(3).normal(size=(2, 8, 4))  # float64
    s = search_matrices(cb)
    assert s.dtype == np.float32 and s.shape == (2, 5, 8) and s.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(s[:, :4], -2 * cb.transpose(0, 2, 1), rtol=1e-6)
    np.testing.assert_allclose(s[:, 4], (cb ** 2).sum(-1), rtol=1e-6)
