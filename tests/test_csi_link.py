"""Estimated CSI through the runtime: the receiver estimates h from pilots and rebuilds the plan
from the CRC-checked header; a failed header is reported and its tile decoded with nothing sent;
at high SNR the link matches perfect CSI; ``--csi`` / ``--pilots`` on ``link`` and ``eval``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_error, run
from escmvq.export.testing import KODAK


@pytest.fixture(scope="module")
def ends():
    """The shipped bundle (its allocator has the erasure prefix) with both CSI modes."""
    from escmvq.runtime import Receiver, Transmitter

    tx = Transmitter(csi="pilots")
    return tx, Receiver(tx.bundle, csi="pilots"), Transmitter(tx.bundle), Receiver(tx.bundle)


@pytest.fixture(scope="module")
def crop():
    return np.ascontiguousarray(np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[100:196, 200:328])


def _tiles(tx, img):
    from escmvq.runtime.images import tile_range

    return tile_range(img, tx.bundle.tile_size, 0, 12)


def test_high_snr_link_with_pilots_matches_perfect_csi(ends, crop):
    from escmvq.runtime.link import run_link

    tx, rx, txp, rxp = ends
    for snr in (25.0, 35.0):
        a = run_link(txp, rxp, crop, snr, np.random.default_rng(1))
        b = run_link(tx, rx, crop, snr, np.random.default_rng(1))
        assert b.header_failures == 0 and b.overhead_channel_uses == b.n_tiles * (8 + 33)
        assert b.channel_uses == a.channel_uses  # data only; the overhead is counted apart
        assert abs(a.psnr_db - b.psnr_db) < 0.05, (snr, a.psnr_db, b.psnr_db)
    with pytest.raises(ValueError, match="both ends must agree"):
        run_link(tx, rxp, crop, 10.0, np.random.default_rng(1))


def test_pilots_plan_is_the_headers_and_the_estimate_is_used(ends, crop):
    from escmvq.core.channels import apply_channel, channel_gamma, draw_h

    tx, rx, _, _ = ends
    rng = np.random.default_rng(2)
    tiles = _tiles(tx, crop)
    h = draw_h(rng, len(tiles), "rayleigh")
    r = tx.send(tiles, 15.0, h)
    assert r.preamble.shape == (len(tiles), 41) and r.gamma_q.shape == (len(tiles),)
    from escmvq.core.pilots import pilot_symbols

    amp = np.sqrt(r.p_tot / tx.bundle.n_symbols)  # the default preamble power: the average data symbol's
    np.testing.assert_allclose(r.preamble[:, :8], np.broadcast_to(pilot_symbols(8) * amp, (len(tiles), 8)), rtol=1e-6)
    np.testing.assert_allclose(np.abs(r.preamble[:, 8:]), amp, rtol=1e-6)  # QPSK header symbols, same power
    assert np.all(r.gamma_q <= channel_gamma(h))  # rounded down (above the cheapest state's budget)
    y, y_pre = apply_channel(r.samples, h, rng, 1.0), apply_channel(r.preamble, h, rng, 1.0)
    q, read = rx.receive_pilots(y_pre, y, r.p_tot)
    assert read.ok.all() and read.gamma_q.tobytes() == r.gamma_q.tobytes()
    assert np.array_equal(q.codebooks, r.codebooks)  # the same plan at both ends
    assert np.max(np.abs(read.h_hat - h)) < 6 * np.sqrt(read.error_var)
    with pytest.raises(ValueError, match="csi='perfect'"):
        ends[3].receive_pilots(y_pre, y, r.p_tot)


def test_a_corrupted_header_is_reported_and_its_tile_sent_nothing(ends, crop):
    tx, rx, _, _ = ends
    V = int(tx.bundle.model["V"])
    tiles = _tiles(tx, crop)
    h = np.full(len(tiles), 0.8 + 0.3j, np.complex64)
    r = tx.send(tiles, 20.0, h)
    pre = r.preamble.copy()
    hdr = 8 + np.arange(3) * 11  # the first header symbol of each of the three copies
    for row in (1, 4):
        pre[row, hdr] *= -1  # flips both bits of symbol 0 in every copy: survives combining
    y, y_pre = h[:, None] * r.samples, h[:, None] * pre  # no noise: only the flip is wrong
    q, read = rx.receive_pilots(y_pre, y, r.p_tot)
    assert read.ok.tolist() == [i not in (1, 4) for i in range(len(tiles))]
    assert [f[0] for f in read.failures] == [1, 4] and all("CRC-8" in f[1] for f in read.failures)
    assert np.isnan(read.gamma_q[[1, 4]]).all()
    assert (q.codebooks[[1, 4]] == V).all() and (q.labels[[1, 4]] == -1).all()  # not another plan: nothing
    ok = np.array([i not in (1, 4) for i in range(len(tiles))])
    assert np.array_equal(q.codebooks[ok], r.codebooks[ok]) and np.array_equal(q.labels[ok], r.labels[ok])
    # the substitute tile is the decoder's output for every sub-vector "not sent"
    from escmvq.core import pvq
    from escmvq.runtime import soft

    zs, _ = soft.decode_hard(np.zeros((1, q.labels.shape[1]), np.int64), np.full((1, q.labels.shape[1]), V),
                             tx.bundle.codebooks, rx._subst)
    blank = rx.decode(pvq.from_subvectors(zs, *tx.bundle.latent_shape[1:]), np.full((1, q.labels.shape[1]), V))
    np.testing.assert_array_equal(q.tiles[1], blank[0])


def test_soft_receiver_with_pilots(crop):
    from escmvq.runtime import Receiver, Transmitter
    from escmvq.runtime.link import run_link

    tx = Transmitter(csi="pilots")
    rx = Receiver(tx.bundle, csi="pilots", decoding="soft")
    rep = run_link(tx, rx, crop, 30.0, np.random.default_rng(3))
    ref = run_link(Transmitter(tx.bundle), Receiver(tx.bundle, decoding="soft"), crop, 30.0, np.random.default_rng(3))
    assert abs(rep.psnr_db - ref.psnr_db) < 0.05 and rx.settings["csi"]["mode"] == "pilots"


def test_csi_config_checks():
    from escmvq.runtime.csi import CsiConfig, check_csi

    assert check_csi(None).mode == "perfect" and check_csi("pilots").pilots == 8
    for kw, msg in (({"mode": "genie"}, "^csi: expected one of perfect, pilots"), ({"pilots": 0}, "^pilots: expected"),
                    ({"repetitions": 0}, "^repetitions: expected"), ({"pilot_power": -1.0}, "^pilot_power: expected"),
                    ({"estimator": "ml"}, "^estimator: expected"), ({"scale_bits": 20}, "^scale_bits: expected")):
        with pytest.raises(ValueError, match=msg):
            CsiConfig(**kw)



def test_csi_config_bounds_power_and_description():
    from escmvq.runtime.csi import CsiConfig, check_csi

    for kw in ({"pilots": 1, "repetitions": 1, "scale_bits": 0}, {"pilots": 4096, "repetitions": 4096, "scale_bits": 16},
               {"pilot_power": 0.5}):
        CsiConfig(**kw)
    for kw, msg in (({"pilots": 4097}, r"^pilots: expected an int in 1..4096, got 4097$"),
                    ({"repetitions": 2.5}, r"^repetitions: expected an int in 1..4096, got 2.5$"),
                    ({"pilots": True}, r"^pilots: expected an int in 1..4096, got True$"),
                    ({"pilot_power": 0.0}, r"^pilot_power: expected a finite value > 0, got 0.0$"),
                    ({"estimator": "ml"}, r"^estimator: expected one of ls, lmmse, got 'ml'$"),
                    ({"scale_bits": 17}, r"^scale_bits: expected an int in 0..16, got 17$"),
                    ({"scale_bits": 2.5}, r"^scale_bits: expected an int in 0..16, got 2.5$")):
        with pytest.raises(ValueError, match=msg):
            CsiConfig(**kw)
    with pytest.raises(ValueError, match=r"^csi: expected one of perfect, pilots or a CsiConfig, got 3$"):
        check_csi(3)
    assert CsiConfig().power(10.0, 4) == 2.5 and CsiConfig(pilot_power=2.0).power(10.0, 4) == 2.0
    alloc = type("A", (), {"n_states": 288})()
    assert CsiConfig().describe(alloc, 100) == {"mode": "perfect", "overhead_channel_uses": 0, "channel_uses_per_tile": 100}
    common = {"mode": "pilots", "pilots": 8, "estimator": "ls", "header_bits": 22, "header_repetitions": 3,
              "header_channel_uses": 33, "pilot_channel_uses": 8, "overhead_channel_uses": 41, "data_channel_uses": 100,
              "channel_uses_per_tile": 141, "overhead_fraction": 0.41}
    assert CsiConfig("pilots").describe(alloc, 100) == {
        **common, "pilot_power": "P_tot/T", "header_fields": {"state": 9, "scale": 4, "crc8": 8, "pad": 1},
        "overhead_energy_fraction": 0.41}
    assert CsiConfig("pilots", pilot_power=2.0, scale_bits=5).describe(alloc, 100) == {
        **common, "pilot_power": 2.0, "header_fields": {"state": 9, "scale": 5, "crc8": 8, "pad": 0}}


def test_preamble_with_lmmse_and_a_wider_scale_field(ends):
    from escmvq.core import pilots
    from escmvq.runtime.csi import CsiConfig, PreambleRx, PreambleTx

    alloc, T, p_tot, nv = ends[0].bundle.allocator, 100, 576.0, 0.5
    cfg = CsiConfig("pilots", estimator="lmmse", scale_bits=6)
    tx, rx = PreambleTx(alloc, cfg, T), PreambleRx(alloc, cfg, T)
    assert rx.layout.scale_bits == 6 and rx.n_preamble == 8 + rx.layout.n_symbols * 3
    pre, gq = tx.make(p_tot, np.array([1.0, 40.0]))
    h = np.array([0.8 + 0.1j, -0.5 + 0.5j])
    y = h[:, None] * pre  # no noise: the estimate still shrinks by n p / (n p + sigma^2)
    got = rx.read(y, p_tot, nv)
    pp = cfg.power(p_tot, T)
    assert got.ok.all() and np.array_equal(got.gamma_q, gq)
    np.testing.assert_allclose(got.h_hat, pilots.estimate_h(y[:, :8], pilots.pilot_symbols(8), pp, "lmmse", nv), rtol=1e-6)
    assert got.error_var == pilots.estimate_error_var(8, pp, nv, "lmmse")
    with pytest.raises(ValueError, match=rf"^preamble: expected \[b, {rx.n_preamble}\] samples, got shape \(2, 5\)$"):
        rx.read(np.ones((2, 5), np.complex64), p_tot, nv)


# ---------------------------------------------------------------- the command line
@pytest.fixture
def work(tmp_path, monkeypatch, crop):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(crop).save(tmp_path / "img.png")
    return tmp_path


def test_link_csi_pilots_json(work):
    res = run("link", "--snr", "30", "img.png", "--csi", "pilots", "--pilots", "4", "--json", "-o", "o.png")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    c = doc["csi"]
    assert c["mode"] == "pilots" and c["pilots"] == 4 and c["header_channel_uses"] == 33
    assert c["overhead_channel_uses"] == 37 and c["channel_uses_per_tile"] == 144 + 37
    assert c["overhead_channel_uses_total"] == 37 * doc["tiles"] and c["header_failures"] == 0
    perfect = json.loads(run("link", "--snr", "30", "img.png", "--json", "-o", "p.png").stdout)
    assert "csi" not in perfect and "csi" not in perfect["receiver"]  # perfect CSI reads as before
    assert abs(perfect["psnr_db"] - doc["psnr_db"]) < 0.05
    res = run("link", "--snr", "10", "img.png", "--csi", "pilots", "-o", "t.png")
    assert res.exit_code == 0 and "plan header failed on" in res.stdout


@pytest.mark.parametrize("args, msg", [
    (("--csi", "genie"), "--csi: expected perfect or pilots"),
    (("--csi", "pilots", "--plot", "x.png"), "--plot: draws the perfect-CSI plans"),
])
def test_link_bad_csi_is_one_line(work, args, msg):
    assert_one_line_error(run("link", "--snr", "10", "img.png", *args), msg, code=2)
    assert not (work / "img.link.png").exists()


def test_link_pilots_must_be_positive(work):
    res = run("link", "--snr", "10", "img.png", "--csi", "pilots", "--pilots", "0")
    assert res.exit_code == 2 and "--pilots" in res.stderr


def test_eval_records_csi(tmp_path):
    pytest.importorskip("onnxruntime")
    from escmvq.eval.run import EvalConfig, run_eval

    try:
        res = run_eval(EvalConfig(methods=("jcamp",), snr_db=[10.0, 30.0], images=40, csi="pilots", pilots=16,
                                  json_out=tmp_path / "e.json"))
    except ValueError as e:  # no CIFAR-10 test set here
        pytest.skip(str(e))
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["csi"] == {"mode": "pilots", "pilots": 16, "overhead_channel_uses_per_tile": {"jcamp": 49}}
    m = doc["methods"]["jcamp"]
    assert m["receiver"]["csi"]["pilot_channel_uses"] == 16 and len(m["header_failure_rate"]) == 2
    assert res.doc == doc
    with pytest.raises(ValueError, match="^--csi pilots: supported for jcamp and jcap only"):
        EvalConfig(methods=("jcamp", "jpeg-ldpc"), csi="pilots").validate()
    with pytest.raises(ValueError, match="^--csi: expected one of perfect, pilots"):
        EvalConfig(csi="genie").validate()


def test_eval_cli_csi_flags(tmp_path):
    res = run("eval", "--methods", "jcamp,jpeg-ldpc", "--csi", "pilots", "--images", "2", "--snr", "10")
    assert_one_line_error(res, "--csi pilots: supported for jcamp and jcap only", code=2)
    assert_one_line_error(run("eval", "--csi", "genie"), "--csi: expected perfect or pilots", code=2)
    assert "--pilots" in run("eval", "--help").stdout


def test_the_transmitter_plans_with_the_headers_gamma(ends, crop):
    from escmvq.core import pvq
    from escmvq.core.channels import draw_h
    from escmvq.runtime.transmitter import send_subvectors

    tx, _, txp, _ = ends
    tiles = _tiles(tx, crop)
    h = draw_h(np.random.default_rng(4), len(tiles), "rayleigh")
    r = tx.send(tiles, 12.0, h)
    zs = pvq.to_subvectors(tx.encode(tiles))
    x, _, _ = send_subvectors(zs, tx.bundle.codebooks, tx._search, tx.plans, tx._B, r.p_tot, h, gamma=r.gamma_q)
    assert x.tobytes() == r.samples.tobytes()
    assert x.tobytes() != txp.send(tiles, 12.0, h).samples.tobytes()  # perfect CSI plans with the true gamma


def test_run_link_sends_the_preamble_through_the_channel_after_the_data(ends, crop):
    from escmvq.core.channels import apply_channel, draw_h
    from escmvq.runtime.images import tile_grid, tile_range, untile_into
    from escmvq.runtime.link import run_link

    tx, rx, _, _ = ends
    rep = run_link(tx, rx, crop, 2.0, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    n = int(np.prod(tile_grid(crop.shape[:2], tx.bundle.tile_size)))
    h = draw_h(rng, n, "rayleigh")
    r = tx.send(tile_range(crop, tx.bundle.tile_size, 0, n), 2.0, h)
    y = apply_channel(r.samples, h, rng, 1.0)
    q, read = rx.receive_pilots(apply_channel(r.preamble, h, rng, 1.0), y, r.p_tot)
    out = np.empty_like(crop)
    untile_into(out, q.tiles, 0, tile_grid(crop.shape[:2], tx.bundle.tile_size))
    assert np.array_equal(out, rep.image) and rep.header_failures == int((~read.ok).sum())
    assert np.max(np.abs(read.h_hat - h)) > 0.01  # the pilots were noisy


def test_soft_llrs_count_the_estimation_error_as_noise(ends, crop):
    from escmvq.core.channels import apply_channel, effective_noise_var, equalize
    from escmvq.runtime import Receiver
    from escmvq.runtime.modem import demodulate_llr

    tx = ends[0]
    rx = Receiver(tx.bundle, csi="pilots", decoding="soft")
    tiles = _tiles(tx, crop)
    h = np.full(len(tiles), 0.5 - 0.5j, np.complex64)
    r = tx.send(tiles, 5.0, h)
    y = apply_channel(r.samples, h, np.random.default_rng(6), 1.0)
    cbs, orders, powers, bit_order = rx.plans.batch(r.p_tot, r.gamma_q)
    e = 0.01
    got = rx._llrs(y, h, powers, orders, bit_order, 1.0, e)
    nv = effective_noise_var(h, powers, 1.0) + e / np.abs(h.astype(np.complex128))[:, None] ** 2
    want = demodulate_llr(equalize(y, h, powers), orders, bit_order, nv).reshape(got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.abs(got).sum() < np.abs(rx._llrs(y, h, powers, orders, bit_order, 1.0)).sum()
