"""Estimated CSI through ``escmvq tx`` / ``rx`` / ``stream`` and SigMF: frame version 3 (pilots and
plan header before each tile's data), read by a receiver that is never handed ``h``; the same
decode as ``link --csi pilots``; header failures reported; bad input refused in one line."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_error, run

REPO = Path(__file__).resolve().parents[1]
N_TILES = 12  # the `work` fixture's 100x70 crop in 32x32 tiles
HEADER_CU = 33  # the shipped allocator's plan header: 11 QPSK symbols x 3 copies


@pytest.fixture(scope="module")
def ends():
    """The shipped bundle: a transmitter with 4 pilots, a receiver built for perfect CSI (frames
    tell it their mode) and the image ``work`` holds."""
    from escmvq.export.testing import KODAK
    from escmvq.runtime import Receiver, Transmitter
    from escmvq.runtime.csi import CsiConfig

    tx = Transmitter(csi=CsiConfig(mode="pilots", pilots=4))
    img = np.ascontiguousarray(np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[:70, :100])
    return tx, Receiver(tx.bundle), img


def _frames(ends, snr=10.0, seed=3):
    """(transmitted frame, received frame) as ``tx`` and ``tx --through-channel`` make them."""
    from escmvq.runtime.link import through_channel, transmit_image

    tx, _, img = ends
    rng = np.random.default_rng(seed)
    sent = transmit_image(tx, img, snr, rng)[0]
    return sent, through_channel(sent, rng)[0]


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ---------------------------------------------------------------- tx -> rx is link --csi pilots
def test_tx_rx_with_pilots_writes_the_png_of_link(work):
    for args in (["--through-channel", "-o", "a.tx"], ["-o", "t.tx"]):
        res = run("tx", "--snr", "10", "img.png", "--csi", "pilots", "--pilots", "4", "--seed", "3", *args)
        assert res.exit_code == 0, res.stderr
    assert "(4 pilots + 33 plan header + 144 data) channel uses" in res.stdout
    res = run("rx", "a.tx", "-o", "a.png", "-r", "img.png")  # no --csi: the frame says it
    assert res.exit_code == 0, res.stderr
    assert f"plan header failed on 0 of {N_TILES} tiles" in res.stdout
    link = run("link", "--snr", "10", "img.png", "--csi", "pilots", "--pilots", "4", "--seed", "3", "-o", "l.png",
               "--json")
    assert link.exit_code == 0, link.stderr
    out = _png(work / "a.png")
    assert np.array_equal(out, _png(work / "l.png")[:, 100 + 4:])  # the output half of the side-by-side PNG
    assert float(res.stdout.split("PSNR ")[1].split(" dB")[0]) == pytest.approx(json.loads(link.stdout)["psnr_db"],
                                                                              abs=0.006)
    assert run("link", "--snr", "10", "img.png", "--seed", "3", "-o", "p.png").exit_code == 0
    assert not np.array_equal(out, _png(work / "p.png")[:, 104:])  # perfect CSI: another decode of that image
    for name, kind in (("a.tx", 1), ("t.tx", 0)):
        data = (work / name).read_bytes()
        assert struct.unpack_from("<HB", data, 8) == (3, kind)
        assert data[92] == 1 and struct.unpack_from("<BHII", data, 93) == (4, 3, 4, 11)  # scale bits, r, N, k
    assert run("rx", "t.tx", "-o", "t.png", "--seed", "4").exit_code == 0  # transmitted: rx applies the channel


def test_perfect_csi_tx_still_writes_version_2(work):
    assert run("tx", "--snr", "10", "img.png", "-o", "p.tx", "--seed", "3").exit_code == 0
    data = (work / "p.tx").read_bytes()
    assert struct.unpack_from("<H", data, 8) == (2,)
    assert len(data) == 92 + 8 * N_TILES + 8 * N_TILES * 144 + 4  # header, h, samples, CRC: no CSI block


def test_the_transmitted_frame_decodes_as_link_does(ends):
    """Python: a transmitted v3 frame through ``receive_frame`` is ``run_link`` with csi="pilots"."""
    from escmvq.runtime import Receiver
    from escmvq.runtime.link import receive_frame, run_link

    tx, rx, img = ends
    rep = run_link(tx, Receiver(tx.bundle, csi=tx.csi), img, 10.0, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    from escmvq.runtime.link import transmit_image

    sent = transmit_image(tx, img, 10.0, rng)[0]
    failed = []
    out = receive_frame(rx, sent, rng, header_failures=failed)[0]  # rng goes on after the h draws, as in link
    assert np.array_equal(out, rep.image) and len(failed) == rep.header_failures


# ---------------------------------------------------------------- the receiver is never handed h
def test_a_received_pilots_frame_carries_no_h(ends):
    from escmvq.runtime.frame import FrameError, parse, validate
    from escmvq.runtime.link import receive_frame

    sent, got = _frames(ends)
    _, rx, _ = ends
    assert got.h is None and got.preamble.shape == (N_TILES, 4 + HEADER_CU)
    data = got.to_bytes()
    assert len(data) == 92 + 20 + 8 * N_TILES * (4 + HEADER_CU + 144) + 4  # no h section at all
    assert parse(data).h is None
    with pytest.raises(FrameError, match="carries no h"):
        validate(replace(got, h=sent.h))
    # the transmitted frame's h is the channel rx applies, nothing more: decoding it equals
    # applying the channel by hand and decoding the samples alone
    a = receive_frame(rx, sent, np.random.default_rng(8))[0]
    from escmvq.runtime.link import through_channel

    b = receive_frame(rx, through_channel(sent, np.random.default_rng(8))[0], np.random.default_rng(0))[0]
    assert np.array_equal(a, b)


def test_the_plan_comes_from_the_header_not_from_h(ends):
    """A transmitted frame whose h is changed after the transmitter planned: the receiver must
    still follow the header (the plan the samples were made with), which perfect CSI cannot."""
    from escmvq.runtime.link import receive_frame

    sent, _ = _frames(ends, snr=30.0)
    _, rx, _ = ends
    V = int(rx.bundle.model["V"])
    moved = replace(sent, h=(sent.h * np.float32(0.3)).astype(np.complex64))  # a weaker channel than planned for
    failed = []
    _, _, labels = receive_frame(rx, moved, np.random.default_rng(1), header_failures=failed)
    from escmvq.runtime.transmitter import transmit_image

    _, _, cbs, sent_labels = transmit_image(ends[0], ends[2], 30.0, np.random.default_rng(3))
    ok = np.array([i not in {f[0] for f in failed} for i in range(N_TILES)])
    assert ok.sum() >= N_TILES - 2
    match = (labels == sent_labels) | (cbs == V)
    assert match[ok].mean() > 0.97  # decoded with the transmitter's plans (the true-gamma plans would misalign)


# ---------------------------------------------------------------- a failed plan header
def test_a_corrupted_header_is_reported_and_that_tile_not_decoded(ends, work):
    from escmvq.runtime.link import receive_frame

    _, got = _frames(ends, snr=30.0)
    _, rx, _ = ends
    V = int(rx.bundle.model["V"])
    pre = got.preamble.copy()
    pre[5, 4 + np.arange(3) * 11] *= -1  # both bits of header symbol 0, in every copy: survives combining
    bad = replace(got, preamble=pre)
    failed = []
    img, _, labels = receive_frame(rx, bad, np.random.default_rng(0), header_failures=failed)
    assert [f[0] for f in failed] == [5] and "CRC-8" in failed[0][1]
    ref, _, ref_labels = receive_frame(rx, got, np.random.default_rng(0))
    assert (labels[5] == -1).all() and (ref_labels[5] != -1).any()  # nothing decoded, not another plan
    keep = np.arange(N_TILES) != 5
    assert np.array_equal(labels[keep], ref_labels[keep])
    r, c = divmod(5, 4)  # 3 rows x 4 columns of tiles
    assert not np.array_equal(img[32 * r:32 * r + 32, 32 * c:32 * c + 32], ref[32 * r:32 * r + 32, 32 * c:32 * c + 32])
    # the not-sent decode of that tile: the decoder's output for every sub-vector on codebook V
    from escmvq.core import pvq
    from escmvq.runtime import soft

    N = labels.shape[1]
    zs, _ = soft.decode_hard(np.zeros((1, N), np.int64), np.full((1, N), V), rx.bundle.codebooks, rx._subst)
    blank = rx.decode(pvq.from_subvectors(zs, *rx.bundle.latent_shape[1:]), np.full((1, N), V))[0]
    want = np.clip(np.round(blank.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    assert np.abs(img[32 * r:32 * r + 32, 32 * c:32 * c + 32].astype(int) - want.astype(int)).max() <= 1
    # on the command line: counted in the summary, the output written
    (work / "bad.tx").write_bytes(bad.to_bytes())
    res = run("rx", "bad.tx", "-o", "bad.png")
    assert res.exit_code == 0, res.stderr
    assert f"plan header failed on 1 of {N_TILES} tiles (decoded as not sent)" in res.stdout
    assert np.array_equal(_png(work / "bad.png"), img)


# ---------------------------------------------------------------- SigMF
@pytest.mark.parametrize("through", [False, True])
def test_sigmf_round_trip_with_pilots(ends, work, through):
    pytest.importorskip("sigmf")
    from escmvq.runtime.sigmf import read_sigmf, write_sigmf

    sent, got = _frames(ends)
    f = got if through else sent
    data, meta = write_sigmf(f, work / "py", seed=3)
    g = json.loads(meta.read_text())["global"]
    assert g["escmvq:frame_version"] == 3 and g["escmvq:csi"] == "pilots" and g["escmvq:pilots"] == 4
    assert (g["escmvq:header_symbols"], g["escmvq:header_repetitions"], g["escmvq:samples_per_tile"]) == \
        (11, 3, 4 + HEADER_CU + 144)
    assert ("escmvq:h" in g) == (not through)  # a received recording carries no h
    per_tile = data.read_bytes()[:8 * (4 + HEADER_CU + 144)]  # tile 0: pilots, header copies, data
    assert per_tile == np.concatenate([f.preamble[0], f.samples[0]]).astype("<c8").tobytes()
    back = read_sigmf(work / "py")
    assert back.csi == f.csi and back.version == 3 and np.array_equal(back.preamble, f.preamble)
    assert np.array_equal(back.samples, f.samples) and (back.h is None) == through
    if not through:
        assert np.array_equal(back.h, f.h)
    # tx --sigmf --csi pilots, then rx NAME.sigmf-meta: the PNG of the .tx frame
    extra = ["--through-channel"] if through else []
    for out in (["-o", "a.tx"], ["--sigmf", "-o", "rec"]):
        res = run("tx", "--snr", "10", "img.png", "--csi", "pilots", "--pilots", "4", "--seed", "3", *out, *extra)
        assert res.exit_code == 0, res.stderr
    for src, out in (("a.tx", "a.png"), ("rec.sigmf-meta", "r.png")):
        res = run("rx", src, "-o", out, "--seed", "5")
        assert res.exit_code == 0 and "plan header failed on" in res.stdout, res.stderr
    assert (work / "a.png").read_bytes() == (work / "r.png").read_bytes()


def test_bad_pilots_recordings_are_one_line_errors(work):
    pytest.importorskip("sigmf")
    assert run("tx", "--snr", "10", "img.png", "--csi", "pilots", "--sigmf", "-o", "rec").exit_code == 0
    meta, data = (work / "rec.sigmf-meta").read_text(), (work / "rec.sigmf-data").read_bytes()
    (work / "cut.sigmf-meta").write_text(meta)
    (work / "cut.sigmf-data").write_bytes(data[:8 * 144 * N_TILES])  # the data without any preamble
    doc = json.loads(meta)
    doc["global"]["escmvq:samples_per_tile"] = 144
    doc["global"]["core:sha512"] = hashlib.sha512(data[:8 * 144 * N_TILES]).hexdigest()
    (work / "spt.sigmf-meta").write_text(json.dumps(doc))
    (work / "spt.sigmf-data").write_bytes(data[:8 * 144 * N_TILES])
    before = {p.name for p in work.iterdir()}
    assert_one_line_error(run("rx", "cut.sigmf-meta", "-o", "o.png"), f"{N_TILES} tiles x {8 + 33 + 144}")
    assert_one_line_error(run("rx", "spt.sigmf-meta", "-o", "o.png"), "escmvq:samples_per_tile = 144 is not 8 pilots")
    assert {p.name for p in work.iterdir()} == before


# ---------------------------------------------------------------- stream
def test_stream_with_pilots(work, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (work / "out").mkdir()
    r = subprocess.run([sys.executable, "-m", "escmvq.cli.main", "stream", "--snr", "10", "img.png", "--csi",
                        "pilots", "--pilots", "4", "--seed", "3", "-o", "out"], capture_output=True, text=True,
                       cwd=work, timeout=180)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    rx = [x for x in recs if x["side"] == "rx"]
    tx = [x for x in recs if x["side"] == "tx"]
    assert rx[0]["ok"] and rx[0]["csi"] == "pilots" and rx[0]["pilots"] == 4 and rx[0]["tiles"] == N_TILES
    assert rx[0]["header_failures"] == tx[0]["rx_header_failures"] and "preamble" in tx[0]["stages_ms"]
    # the same frame and channel as tx --seed 3, then rx --seed 4 (the stream's receiver seeds with seed + 1)
    res = run("tx", "--snr", "10", "img.png", "--csi", "pilots", "--pilots", "4", "--seed", "3", "-o", "s.tx")
    assert res.exit_code == 0, res.stderr
    res = run("rx", "s.tx", "-o", "s.png", "--seed", "4")
    assert f"plan header failed on {rx[0]['header_failures']} of" in res.stdout
    assert np.array_equal(_png(work / "s.png"), _png(work / "out/img.rx.png"))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("cmd", ["tx", "stream", "stream-tx"])
def test_zero_pilots_is_a_usage_error(work, cmd):
    (work / "out").mkdir()
    where = {"tx": ["-o", "a.tx"], "stream": ["-o", "out"], "stream-tx": ["--socket", "s.sock"]}[cmd]
    res = run(cmd, "--snr", "10", "img.png", "--csi", "pilots", "--pilots", "0", *where)
    assert_one_line_error(res, "--pilots", code=2)
    assert not (work / "a.tx").exists() and not list((work / "out").iterdir())


def test_bad_v3_frames_are_one_line_errors_with_no_output(work, ends):
    from escmvq.runtime.frame import CSI_SIZE, HEADER_SIZE

    _, got = _frames(ends)
    data = got.to_bytes()

    def crc(body: bytes) -> bytes:
        return body + struct.pack("<I", zlib.crc32(body))

    (work / "cut.tx").write_bytes(data[:-100])
    (work / "short.tx").write_bytes(data[:HEADER_SIZE + 10])
    mode = bytearray(data[:-4])
    mode[HEADER_SIZE] = 0
    (work / "mode.tx").write_bytes(crc(bytes(mode)))
    zero = bytearray(data[:-4])
    struct.pack_into("<I", zero, HEADER_SIZE + 4, 0)  # no pilots
    (work / "zero.tx").write_bytes(crc(bytes(zero)))
    k = bytearray(data[:-4])
    struct.pack_into("<II", k, HEADER_SIZE + 4, 1, 12)  # 1 pilot + 3 x 12: the same preamble length, k = 12
    (work / "k.tx").write_bytes(crc(bytes(k)))
    before = {p.name for p in work.iterdir()}
    for name, msg in (("cut", "truncated frame"), ("short", f"header alone needs {HEADER_SIZE + CSI_SIZE + 4}"),
                      ("mode", "CSI mode 0 unknown"), ("zero", "pilots: expected an int in 1..4096"),
                      ("k", "plan header has 12 QPSK symbols per copy, this bundle's allocator needs 11")):
        assert_one_line_error(run("rx", f"{name}.tx", "-o", "o.png"), msg, code=1)
    assert {p.name for p in work.iterdir()} == before
