"""``escmvq bench``'s timed loop and report, checked exactly: the transmitter, channel and
receivers are stand-ins that advance a fake clock by set amounts, so every statistic, ratio,
stopping rule and document field has one right value."""
from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from escmvq.core.channels import draw_h
from escmvq.runtime import bench

TX_STAGES = ("encode", "allocate", "quantize", "modulate")
RX_STAGES = ("demodulate", "dequantize", "decode")


class Clock:
    def __init__(self, t: float = 1.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeTx:
    """``send`` takes ``tx_dt[i]`` seconds of the fake clock in call ``i`` and reports its stages."""

    def __init__(self, clock, tx_dt, log):
        self.clock, self.tx_dt, self.log, self.calls = clock, tx_dt, log, []

    def send(self, x, *, snr_db, h):
        i = len(self.calls)
        self.calls.append({"x": np.array(x), "contiguous": x.flags["C_CONTIGUOUS"], "snr_db": snr_db, "h": h})
        self.log.append(("send", i))
        self.clock.t += self.tx_dt(i)
        return types.SimpleNamespace(samples=("samples", i), h=h, p_tot=7.0 + i, noise_var=0.5 + i,
                                     timings={s: (k + 1) * 1e-3 * (i + 1) for k, s in enumerate(TX_STAGES)})


class FakeRx:
    """``receive`` takes ``dt(i)`` seconds in its call ``i``; its own "channel" timing is
    ignored by the bench (the bench times the channel itself)."""

    def __init__(self, name, clock, dt, log, settings=None):
        self.name, self.clock, self.dt, self.log, self.calls = name, clock, dt, log, []
        if settings is not None:
            self.settings = settings

    def receive(self, y, h, p_tot, noise_var):
        i = len(self.calls)
        self.calls.append((y, h, p_tot, noise_var))
        self.log.append((self.name, i))
        self.clock.t += self.dt(i)
        return types.SimpleNamespace(timings={"channel": 99.0, "demodulate": 1e-4, "dequantize": 2e-4,
                                              "decode": self.dt(i) / 2})


class FakeSampler:
    def __init__(self, log):
        self.log, self.items = log, None

    def start(self):
        self.log.append(("start",))

    def stop(self):
        self.log.append(("stop",))

    def summary(self, items):
        self.items = items
        return {"mean_w": 3.0, "mj_per_tile": 1.5}


@pytest.fixture
def fake(monkeypatch):
    """A fake clock for the bench and a channel that takes ``ch_dt`` (1 ms) of it and draws nothing."""
    clock = Clock()
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=clock))
    seen = {"channel": [], "draw_h": []}
    state = types.SimpleNamespace(clock=clock, seen=seen, log=[], ch_dt=1e-3)

    def apply_channel(samples, h, rng, noise_var):
        seen["channel"].append((samples, h, noise_var))
        clock.t += state.ch_dt
        return ("y", samples[1])

    def draw(rng, n, channel):
        seen["draw_h"].append((n, channel))
        return draw_h(rng, n, channel)

    monkeypatch.setattr(bench, "apply_channel", apply_channel)
    monkeypatch.setattr(bench, "draw_h", draw)
    return state


def test_compare_receivers_times_each_receiver_on_the_same_transmissions(fake):
    log, clock = fake.log, fake.clock
    tx = FakeTx(clock, lambda i: 0.010 * (i + 1), log)
    rx_dt = {"a": lambda i: 0.002 * (i + 1), "b": lambda i: [0.3, 0.3, 0.020, 0.001, 0.005][i],
             "c": lambda i: 0.004}
    rxs = {k: FakeRx(k, clock, rx_dt[k], log, settings={"who": k} if k != "c" else None) for k in "abc"}
    tiles = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    sampler = FakeSampler(log)
    out = bench.compare_receivers(tx, rxs, tiles, 5, 7.5, np.random.default_rng(3), iters=3, warmup=2,
                                  channel="rayleigh", sampler=sampler)

    # batch 5 from 2 tiles: the tiles repeated, cut, contiguous; a fresh fading draw per run
    assert len(tx.calls) == 5
    want_x = tiles[[0, 1, 0, 1, 0]]
    hs = np.random.default_rng(3)
    for c in tx.calls:
        assert np.array_equal(c["x"], want_x) and c["contiguous"] and c["snr_db"] == 7.5
        assert np.array_equal(c["h"], draw_h(hs, 5, "rayleigh"))
    assert fake.seen["draw_h"] == [(5, "rayleigh")] * 5
    assert [(s, nv) for s, _, nv in fake.seen["channel"]] == [(("samples", i), 0.5 + i) for i in range(5)]
    for k, rx in rxs.items():  # every receiver decodes the same samples with the transmitter's h, p, sigma^2
        assert [(y, p, nv) for y, _, p, nv in rx.calls] == [(("y", i), 7.0 + i, 0.5 + i) for i in range(5)]
        assert all(h is tx.calls[i]["h"] for i, (_, h, _, _) in enumerate(rx.calls))
    # the order is rotated from run to run; the sampler brackets the timed runs only
    sends = [e for e in log if e[0] not in ("send", "start", "stop")]
    assert [e[0] for e in sends] == list("abc" "bca" "cab" "abc" "bca")
    assert log.index(("start",)) == log.index(("send", 2)) - 1 and log[-1] == ("stop",) and log.count(("stop",)) == 1

    assert out["batch"] == 5 and out["valid"] and out["invalid_reasons"] == []
    assert out["timed"] == {"queries": 3, "duration_s": pytest.approx(0.12 + 0.003 + 0.024 + 0.026 + 0.012),
                            "min_queries": 3, "min_duration_s": 0.0, "max_duration_s": None}
    runs = [2, 3, 4]  # the timed runs
    e2e = {k: [0.010 * (i + 1) + 1e-3 + rx_dt[k](i) for i in runs] for k in "abc"}
    for k in "abc":
        r = out["receivers"][k]
        assert r["settings"] == ({"who": k} if k != "c" else None)
        st = r["stages"]
        assert set(st) == {*TX_STAGES, "channel", *RX_STAGES, "end_to_end", "encode+decode"}
        assert st["end_to_end"] == pytest.approx(bench.stats(e2e[k], 5))
        assert st["channel"]["median_ms"] == pytest.approx(1.0) and st["channel"]["n"] == 3
        for j, s in enumerate(TX_STAGES):
            assert st[s] == pytest.approx(bench.stats([(j + 1) * 1e-3 * (i + 1) for i in runs], 5))
        decode = [rx_dt[k](i) / 2 for i in runs]
        assert st["decode"] == pytest.approx(bench.stats(decode, 5))
        assert st["demodulate"]["mean_ms"] == pytest.approx(0.1) and st["dequantize"]["p99_ms"] == pytest.approx(0.2)
        nets = [1e-3 * (i + 1) + d for i, d in zip(runs, decode)]
        assert st["encode+decode"] == pytest.approx(bench.stats(nets, 5))
        assert r["radio_share_of_throughput"] == pytest.approx(np.median(np.divide(nets, e2e[k])))
    # b against a: the medians' difference (+2 ms) and the paired runs' median difference (-5 ms) differ
    assert set(out) == {"batch", "timed", "valid", "invalid_reasons", "receivers", "vs_a"}
    vs = out["vs_a"]
    assert set(vs) == {"b", "c"}
    assert vs["b"] == pytest.approx({"e2e_median_ms_added": 2.0, "e2e_median_ratio": 51 / 49,
                                     "throughput_ratio": 49 / 51, "paired_added_ms_median": -5.0})
    assert vs["c"]["e2e_median_ms_added"] == pytest.approx(-4.0)
    assert vs["c"]["paired_added_ms_median"] == pytest.approx(-4.0)


def _steady(fake, dt=0.25):
    """One receiver; every run takes exactly ``dt`` s of the fake clock (a power of two: exact sums)."""
    fake.ch_dt = 0.0
    tx = FakeTx(fake.clock, lambda i: dt, fake.log)
    return tx, FakeRx("rx", fake.clock, lambda i: 0.0, fake.log)


def _loop(fake, **kw):
    tx, rx = _steady(fake)
    tiles = np.zeros((1, 3, 2, 2), np.float32)
    r = bench.compare_receivers(tx, {"rx": rx}, tiles, 1, 0.0, np.random.default_rng(0), channel="awgn", **kw)
    return r["timed"], r["valid"], r["invalid_reasons"], len(tx.calls)


def test_the_timed_loop_stops_on_its_minimums_or_its_cap(fake):
    # at least iters runs and min_duration seconds; reaching a minimum exactly is enough
    assert _loop(fake, iters=1, warmup=1, min_duration=0.5)[0]["queries"] == 2
    timed, ok, why, sent = _loop(fake, iters=3, warmup=2, min_duration=0.5)
    assert (timed["queries"], timed["duration_s"], ok, why, sent) == (3, 0.75, True, [], 5)
    timed, ok, why, sent = _loop(fake, iters=1, warmup=0, min_duration=1.0)
    assert (timed["queries"], timed["duration_s"], sent) == (4, 1.0, 4)
    # the cap stops the loop at the first run that reaches it, and the result says why it is not valid
    timed, ok, why, _ = _loop(fake, iters=100, warmup=1, min_duration=2.0, max_duration=0.5)
    assert (timed["queries"], timed["duration_s"], ok) == (2, 0.5, False)
    assert why == ["2 timed queries < the minimum 100", "timed loop ran 0.5 s < the minimum 2 s"]
    assert timed["max_duration_s"] == 0.5 and timed["min_duration_s"] == 2.0 and timed["min_queries"] == 100
    assert _loop(fake, iters=5, warmup=0, max_duration=0.0)[0]["queries"] == 1  # always one timed run
    # a cap above what the minimums need changes nothing
    assert _loop(fake, iters=2, warmup=0, min_duration=0.25, max_duration=0.5)[0]["queries"] == 2


def test_the_sampler_is_stopped_when_a_receiver_fails(fake):
    tx = FakeTx(fake.clock, lambda i: 0.01, fake.log)

    def dt(i):
        if i == 2:
            raise RuntimeError("decoder died")
        return 0.0

    sampler = FakeSampler(fake.log)
    with pytest.raises(RuntimeError, match="decoder died"):
        bench.compare_receivers(tx, {"rx": FakeRx("rx", fake.clock, dt, fake.log)}, np.zeros((1, 3, 2, 2), np.float32),
                                1, 0.0, np.random.default_rng(0), iters=5, warmup=1, sampler=sampler)
    assert fake.log[-1] == ("stop",) and fake.log.count(("start",)) == 1
    assert fake.seen["draw_h"] == [(1, "rayleigh")] * 3  # the default channel


def test_run_bench_is_compare_receivers_with_one_receiver(fake):
    tx = FakeTx(fake.clock, lambda i: 0.010 * (i + 1), fake.log)
    rx = FakeRx("rx", fake.clock, lambda i: 0.002 * (i + 1), fake.log, settings={"decoding": "soft"})
    sampler = FakeSampler(fake.log)
    r = bench.run_bench(tx, rx, np.zeros((2, 3, 2, 2), np.float32), 3, 4.0, np.random.default_rng(0), iters=4,
                        warmup=1, sampler=sampler)
    assert fake.seen["draw_h"] == [(3, "rayleigh")] * 5  # the default channel
    assert set(r) == {"batch", "stages", "peak_rss_mb", "radio_share_of_throughput", "ratio_of_median_throughputs",
                      "timed", "valid", "invalid_reasons", "power"}
    assert r["batch"] == 3 and r["timed"]["queries"] == 4 and r["valid"] and r["invalid_reasons"] == []
    assert r["peak_rss_mb"] > 1.0
    runs = [1, 2, 3, 4]
    e2e = [0.012 * (i + 1) + 1e-3 for i in runs]
    nets = [0.002 * (i + 1) for i in runs]  # encode 1 ms x (i + 1), decode half the receiver's 2 ms x (i + 1)
    assert r["stages"]["end_to_end"] == pytest.approx(bench.stats(e2e, 3))
    assert r["radio_share_of_throughput"] == pytest.approx(np.median(np.divide(nets, e2e)))
    assert r["ratio_of_median_throughputs"] == pytest.approx(np.median(nets) / np.median(e2e))
    assert r["power"] == {"mean_w": 3.0, "mj_per_tile": 1.5} and sampler.items == 4 * 3  # tiles over the timed runs
    # the cap reaches compare_receivers; no sampler, no power
    r = bench.run_bench(tx, rx, np.zeros((2, 3, 2, 2), np.float32), 1, 4.0, np.random.default_rng(0), iters=10,
                        warmup=0, channel="awgn", min_duration=0.0, max_duration=0.0)
    assert r["timed"]["queries"] == 1 and r["timed"]["max_duration_s"] == 0.0 and "power" not in r
    assert fake.seen["draw_h"][-1] == (1, "awgn")


def test_tiles_u8_rounds_and_clips():
    t = np.array([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 127.5 / 255 + 1e-9, 254.6 / 255, 1.0, 1.02], np.float32)
    u = bench._tiles_u8(t)
    assert u.dtype == np.uint8 and u.tolist() == [0, 0, 0, 1, 128, 255, 255, 255]
    # scaled in float64: this float32 value is 155.49999... levels (155), in float32 arithmetic 155.5 (156)
    assert bench._tiles_u8(np.array([0.6098039150238037], np.float32)).tolist() == [155]


class EchoTx:
    """Sends a tile batch as its pixel values (one channel use per value)."""

    def __init__(self):
        self.sizes, self.hs = [], []

    def send(self, t, *, snr_db, h):
        self.sizes.append(len(t))
        self.hs.append(h)
        return types.SimpleNamespace(samples=t.reshape(len(t), -1).astype(np.complex64), h=h, p_tot=1.0,
                                     noise_var=10 ** (-snr_db / 10))


class EchoRx:
    """Equalises and adds two levels (so a clean link scores 20 log10(255 / 2) dB)."""

    def __init__(self, shape):
        self.shape = shape

    def receive(self, y, h, p_tot, noise_var):
        assert p_tot == 1.0 and noise_var > 0
        x = (y / h[:, None]).real.reshape(len(y), *self.shape)
        return types.SimpleNamespace(tiles=x + 2 / 255)


def test_tile_psnr_scores_the_channel_and_the_clean_path_over_all_tiles():
    tiles = (np.arange(70 * 3 * 2 * 2) % 200).reshape(70, 3, 2, 2).astype(np.float64) / 255
    tx, rx = EchoTx(), EchoRx((3, 2, 2))
    s = bench.tile_psnr(tx, rx, tiles, 20.0, "rayleigh", seed=5)
    assert tx.sizes == [64, 6] and s["tiles"] == 70  # the default batch of 64
    assert np.array_equal(tx.hs[0], draw_h(np.random.default_rng(5), 64, "rayleigh"))  # drawn from the seed
    assert s["psnr_clean_db"] == pytest.approx(20 * np.log10(255 / 2))
    assert 10.0 < s["psnr_db"] < s["psnr_clean_db"] - 3.0
    assert bench.tile_psnr(EchoTx(), rx, tiles, 20.0, "rayleigh", seed=5) == s
    assert bench.tile_psnr(EchoTx(), rx, tiles, 20.0, "rayleigh", seed=6)["psnr_db"] != s["psnr_db"]
    tx = EchoTx()
    assert bench.tile_psnr(tx, rx, tiles[:5], 20.0, "awgn", seed=5, batch=2)["tiles"] == 5 and tx.sizes == [2, 2, 1]
    assert all(np.array_equal(h, np.ones(len(h))) for h in tx.hs)


def test_power_summary_fields():
    assert bench.power_summary([], 2.0, 5) == {"samples": 0, "duration_s": 2.0, "mean_w": None, "energy_j": None,
                                               "mj_per_tile": None}
    assert bench.power_summary([1.0, 2.0], 2.0, 0)["samples"] == 2
    assert bench.power_summary([3.0, 5.0], 0.5, 1) == {"samples": 2, "duration_s": 0.5, "mean_w": 4.0,
                                                       "energy_j": 2.0, "mj_per_tile": 2000.0}


def test_power_sampler_before_during_and_after():
    reads = []
    s = bench.PowerSampler(lambda: reads.append(1) or 2.0)
    assert s.interval_s == 0.05 and s.watts == [] and s.errors == []
    s.stop()  # not started: nothing to stop
    assert s.summary(4) == {"samples": 0, "duration_s": 0.0, "mean_w": None, "energy_j": None, "mj_per_tile": None,
                            "interval_s": 0.05}
    ticks = iter([10.0, 12.0])
    s = bench.PowerSampler(lambda: reads.append(1) or 2.0, interval_s=0.001, clock=lambda: next(ticks))
    s.start()
    assert s._thread.daemon is True
    deadline = threading.Event()
    for _ in range(5000):  # the thread reads on its own
        if len(s.watts) >= 3:
            break
        deadline.wait(0.001)
    assert len(s.watts) >= 3
    assert s.summary(1)["duration_s"] == 0.0  # still running: no duration yet
    s.stop()
    n = len(s.watts)
    s.stop()  # a second stop reads nothing more
    assert len(s.watts) == n and s.summary(2)["duration_s"] == 2.0 and s.summary(2)["interval_s"] == 0.001
    assert "read_errors" not in s.summary(2)


def test_power_sampler_loop_reads_until_stopped():
    s = bench.PowerSampler(lambda: 1.0, interval_s=0.0)

    def source():
        if len(s.watts) == 2:
            s._stop.set()
        return 5.0

    s.source = source
    s._loop()  # in this thread: returns once stopped
    assert s.watts == [5.0, 5.0, 5.0]
    s._read()
    s.source = lambda: 1 / 0
    s._read()
    assert s.watts[-1] == 5.0 and s.errors == ["ZeroDivisionError: division by zero"]


def test_jtop_power_source_reads_total_board_power(monkeypatch):
    events = []

    class Jtop:
        fail = None

        def __init__(self):
            self.power = {"tot": {"power": 5250}, "rail": {"power": 1}}

        def start(self):
            events.append("start")
            if Jtop.fail:
                raise Jtop.fail

        def close(self):
            events.append("close")

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=Jtop))
    source, close = bench.jtop_power_source()
    assert source() == 5.25 and events == ["start"]
    close()
    assert events == ["start", "close"]
    Jtop.fail = OSError("no socket")
    with pytest.raises(RuntimeError) as e:
        bench.jtop_power_source()
    assert str(e.value) == f"jtop did not start (no socket): is the jtop service running? ({bench._JTOP_MISSING})"
    monkeypatch.setitem(sys.modules, "jtop", None)
    with pytest.raises(RuntimeError) as e:
        bench.jtop_power_source()
    assert str(e.value) == bench._JTOP_MISSING and "jetson-stats" in str(e.value)


# --- report(), with the engines, the loop and the scoring replaced by recorders ---------------


@pytest.fixture
def recorded(monkeypatch, bundle_dir):
    rec = types.SimpleNamespace(tx=[], rx=[], bench=[], psnr=[], blas=[], env=[], closed=[])

    class Tx:
        def __init__(self, b, device="cpu", precision="fp32", threads=None):
            rec.tx.append({"device": device, "precision": precision, "threads": threads})
            self.session = f"enc-{precision}"

    class Rx:
        def __init__(self, b, device="cpu", precision="fp32", threads=None, decoding="hard"):
            rec.rx.append({"device": device, "precision": precision, "threads": threads, "decoding": decoding})
            self.session, self.settings = f"dec-{precision}", {"decoding": decoding}

    def run_bench(tx, rx, tiles, n, snr_db, rng, iters, warmup, channel, min_duration, max_duration, sampler):
        rec.bench.append({"tx": tx, "tiles": tiles, "n": n, "snr_db": snr_db, "rng": rng.bit_generator.state,
                          "iters": iters, "warmup": warmup, "channel": channel, "min_duration": min_duration,
                          "max_duration": max_duration, "sampler": sampler})
        k = len(rec.bench)
        out = {"batch": n, "stages": {"end_to_end": {"p90_ms": 10.0 * k, "median_ms": 5.0 * k,
                                                     "throughput_per_s": 100.0 * k}},
               "valid": k != 4}
        if sampler is not None:
            sampler.start()
            sampler.stop()
            out["power"] = sampler.summary(n)
        return out

    def tile_psnr(tx, rx, tiles, snr_db, channel, seed):
        rec.psnr.append({"tiles": tiles, "snr_db": snr_db, "channel": channel, "seed": seed})
        return {"psnr_db": 20.0 + len(rec.psnr), "psnr_clean_db": 30.0 + len(rec.psnr), "tiles": len(tiles)}

    import escmvq.runtime.backends as backends
    import escmvq.runtime.receiver as receiver
    import escmvq.runtime.threads as threads_mod
    import escmvq.runtime.transmitter as transmitter

    monkeypatch.setattr(transmitter, "Transmitter", Tx)
    monkeypatch.setattr(receiver, "Receiver", Rx)
    monkeypatch.setattr(backends, "used_provider", lambda s: "Fake:" + s)
    monkeypatch.setattr(threads_mod, "limit_blas_threads", rec.blas.append)
    monkeypatch.setattr(bench, "run_bench", run_bench)
    monkeypatch.setattr(bench, "tile_psnr", tile_psnr)
    monkeypatch.setattr(bench, "environment", lambda device, used: rec.env.append((device, used)) or {"env": 1})
    rec.bundle = bundle_dir
    return rec


def test_report_with_its_defaults(recorded):
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.receiver import DEFAULT_DECODING

    rep = bench.report(recorded.bundle)
    b = load_bundle(recorded.bundle)
    assert recorded.blas == [1] and recorded.env == [("cpu", {"encoder": "Fake:enc-fp32", "decoder": "Fake:dec-fp32"})]
    assert recorded.tx == [{"device": "cpu", "precision": "fp32", "threads": None}]
    assert recorded.rx == [{"device": "cpu", "precision": "fp32", "threads": None, "decoding": DEFAULT_DECODING}]
    want_tiles = np.random.default_rng(0).random((64, 3, *b.tile_size), dtype=np.float32)
    after = np.random.default_rng(0)
    after.random((64, 3, *b.tile_size), dtype=np.float32)
    (p,) = recorded.psnr
    assert np.array_equal(p["tiles"], want_tiles) and p["tiles"].dtype == np.float32
    assert (p["snr_db"], p["channel"], p["seed"]) == (10.0, "rayleigh", 0)
    assert [c["n"] for c in recorded.bench] == [1, 64]
    for c in recorded.bench:
        assert c["tiles"] is p["tiles"] and c["snr_db"] == 10.0 and c["channel"] == "rayleigh"
        assert (c["iters"], c["warmup"], c["min_duration"], c["max_duration"]) == (100, 10, 1.0, 600.0)
        assert c["sampler"] is None
    assert recorded.bench[0]["rng"] == after.bit_generator.state  # the tiles' generator goes on to the channel
    files = b.manifest["files"]
    model = files["encoder.onnx"]["bytes"] + files["decoder.onnx"]["bytes"]
    assert set(rep) == {"format", "version", "created_utc", "environment", "bundle", "settings", "headline",
                        "formats", "valid", "power", "results"}
    assert (rep["format"], rep["version"], rep["environment"]) == ("escmvq-bench", 2, {"env": 1})
    assert rep["bundle"] == {"path": str(b.path), "sha256": b.hash_hex, "precision": "fp32",
                             "bytes": sum(f["bytes"] for f in files.values()), "model_bytes": model,
                             "model_bytes_per_format": {"fp32": model}}
    assert rep["settings"] == {
        "snr_db": 10.0, "channel": "rayleigh", "iters": 100, "min_queries": 100, "min_duration_s": 1.0,
        "max_duration_s": 600.0, "warmup": 10, "tiles": "random", "seed": 0, "formats": ["fp32"],
        "receiver": {"decoding": DEFAULT_DECODING},
        "psnr": "over 64 random tiles (uniform noise: compares formats, says nothing of image quality); psnr_db at "
                "10 dB through the rayleigh channel (draws from the seed, the same for every format), psnr_clean_db "
                "with no channel errors"}
    assert rep["headline"] == {"scenario": "SingleStream", "metric": "end-to-end latency p90 at batch 1 (ms)",
                               "format": "fp32", "p90_ms": 10.0, "median_ms": 5.0, "valid": True}
    assert rep["formats"] == [{"format": "fp32", "latency_batch": 1, "singlestream": True, "p90_ms": 10.0,
                               "median_ms": 5.0, "throughput_batch": 64, "throughput_per_s": 200.0,
                               "psnr_db": 21.0, "psnr_clean_db": 31.0, "valid": True}]
    assert rep["valid"] is True and [r["format"] for r in rep["results"]] == ["fp32", "fp32"]
    assert rep["results"][1] == {"format": "fp32", "batch": 64, "valid": True,
                                 "stages": {"end_to_end": {"p90_ms": 20.0, "median_ms": 10.0,
                                                           "throughput_per_s": 200.0}}}
    assert rep["power"] == {"source": None, "note": "not sampled (only on a Jetson, or with power=True)"}


def test_report_formats_image_tiles_and_power(recorded, monkeypatch, tmp_path):
    from PIL import Image

    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.images import load_image, tile

    b = load_bundle(recorded.bundle)
    th, tw = b.tile_size
    img = tmp_path / "in.png"
    Image.fromarray((np.arange(2 * th * 3 * tw * 3) % 251).astype(np.uint8).reshape(2 * th, 3 * tw, 3)).save(img)
    monkeypatch.setattr(bench, "graph_file", lambda part, prec: f"{part}.onnx")  # the tiny bundle has no int8
    watts, said = iter(range(1, 100)), []
    rep = bench.report(recorded.bundle, batches=(2, 1), iters=3, warmup=2, snr_db=4.0, channel="awgn", image=img,
                       threads=2, seed=9, decoding="hard", log=said.append, formats=["int8", "fp32"],
                       min_duration=0.5, max_duration=0.5,
                       power_source=(lambda: float(next(watts)), lambda: recorded.closed.append(1)))
    assert [t["precision"] for t in recorded.tx] == ["int8", "fp32"] and recorded.tx[0]["threads"] == 2
    assert [(r["precision"], r["decoding"]) for r in recorded.rx] == [("int8", "hard"), ("fp32", "hard")]
    assert recorded.rx[1]["threads"] == 2
    want = tile(load_image(img), b.tile_size)[0]
    assert recorded.psnr[0]["tiles"].shape == (6, 3, th, tw) and np.array_equal(recorded.psnr[0]["tiles"], want)
    assert [(p["snr_db"], p["channel"], p["seed"]) for p in recorded.psnr] == [(4.0, "awgn", 9)] * 2
    assert [(c["n"], c["iters"], c["warmup"], c["min_duration"], c["max_duration"]) for c in recorded.bench] == \
        [(2, 3, 2, 0.5, 0.5), (1, 3, 2, 0.5, 0.5)] * 2
    assert all(c["sampler"] is not None for c in recorded.bench) and recorded.closed == [1]
    assert said[0] == "bench: batch 2 (int8), 2 warm-up + at least 3 timed runs and 0.5 s on Fake:enc-int8 ..."
    assert len(said) == 4 and said[3].startswith("bench: batch 1 (fp32)")
    assert rep["settings"]["tiles"] == f"image {img}" and rep["settings"]["formats"] == ["int8", "fp32"]
    assert rep["settings"]["psnr"].startswith(f"over the tiles of {img}; psnr_db at 4 dB through the awgn channel")
    assert rep["settings"]["receiver"] == {"decoding": "hard"} and rep["settings"]["seed"] == 9
    assert rep["bundle"]["precision"] == "int8" and set(rep["bundle"]["model_bytes_per_format"]) == {"int8", "fp32"}
    # one row per format: latency of the smallest batch, throughput of the largest; the fourth run is not valid
    assert [(r["format"], r["latency_batch"], r["p90_ms"], r["throughput_batch"], r["throughput_per_s"],
             r["psnr_db"], r["valid"]) for r in rep["formats"]] == [("int8", 1, 20.0, 2, 100.0, 21.0, True),
                                                                   ("fp32", 1, 40.0, 2, 300.0, 22.0, False)]
    assert rep["headline"]["format"] == "int8" and rep["headline"]["p90_ms"] == 20.0 and rep["valid"] is False
    assert [r["format"] for r in rep["results"]] == ["int8", "int8", "fp32", "fp32"]
    row = rep["formats"][0]
    small = rep["results"][1]["power"]
    assert row["mean_w"] == small["mean_w"] and row["mj_per_tile"] == small["mj_per_tile"] == pytest.approx(
        1e3 * small["energy_j"])
    assert rep["power"] == {"source": "given power_source"}
    assert rep["formats"][0]["psnr_clean_db"] == 31.0


def test_report_power_on_a_jetson_and_its_refusals(recorded, monkeypatch):
    monkeypatch.setattr(bench, "detect_jetson", lambda: (True, "NVIDIA Jetson fake"))

    def no_jtop():
        raise RuntimeError("no jtop here")

    monkeypatch.setattr(bench, "jtop_power_source", no_jtop)
    rep = bench.report(recorded.bundle, device="jetson", batches=(1,), iters=1, warmup=0)
    assert rep["power"] == {"source": None, "note": "no jtop here"} and recorded.bench[-1]["sampler"] is None
    assert recorded.tx[-1]["device"] == "jetson" and recorded.rx[-1]["device"] == "jetson"
    with pytest.raises(RuntimeError, match="no jtop here"):
        bench.report(recorded.bundle, device="jetson", power=True, batches=(1,), iters=1, warmup=0)
    monkeypatch.setattr(bench, "jtop_power_source", lambda: (lambda: 4.0, lambda: recorded.closed.append("jtop")))
    rep = bench.report(recorded.bundle, device="jetson", batches=(1,), iters=1, warmup=0)
    assert rep["power"] == {"source": "jtop (jetson-stats): total board power"} and recorded.closed == ["jtop"]
    assert rep["results"][0]["power"]["mean_w"] == 4.0
    # not on a Jetson, jtop is not asked unless power=True; power=False drops a given source
    rep = bench.report(recorded.bundle, device="cpu", batches=(1,), iters=1, warmup=0)
    assert rep["power"]["source"] is None and recorded.closed == ["jtop"]
    rep = bench.report(recorded.bundle, batches=(1,), iters=1, warmup=0, power=False,
                       power_source=(lambda: 1.0, lambda: recorded.closed.append("x")))
    assert rep["power"]["source"] is None and recorded.closed == ["jtop"] and recorded.bench[-1]["sampler"] is None
    rep = bench.report(recorded.bundle, batches=(1,), iters=1, warmup=0, power=True)
    assert rep["power"] == {"source": "jtop (jetson-stats): total board power"}
    monkeypatch.setattr(bench, "detect_jetson", lambda: (False, "model: PC"))
    with pytest.raises(ValueError) as e:
        bench.report(recorded.bundle, device="jetson")
    assert str(e.value) == "--device jetson: this host is not a Jetson (model: PC)"


def test_report_refuses_bad_loop_settings(recorded):
    for kw, got in (({"iters": 0}, "0, 1.0, 600.0"), ({"min_duration": -0.5}, "100, -0.5, 600.0"),
                    ({"min_duration": 2.0, "max_duration": 1.0}, "100, 2.0, 1.0")):
        with pytest.raises(ValueError) as e:
            bench.report(recorded.bundle, **kw)
        assert str(e.value) == f"iters >= 1 and 0 <= min_duration <= max_duration, got {got}"
    with pytest.raises(ValueError) as e:
        bench.report(recorded.bundle, device="tpu")
    assert str(e.value).startswith("device: expected one of cpu")
    assert recorded.tx == []  # refused before any engine is built
    bench.report(recorded.bundle, batches=(1,), min_duration=2.0, max_duration=2.0)  # equal is allowed
    bench.report(recorded.bundle, batches=(1,), min_duration=2.0, max_duration=None)  # no cap
    assert recorded.bench[-1]["max_duration"] is None


def test_environment_names_the_imported_onnxruntime(monkeypatch):
    """A Jetson's wheel is the distribution onnxruntime-gpu: the record still has the version of
    the onnxruntime module that runs."""
    import onnxruntime as ort

    monkeypatch.setattr(bench.provenance, "environment", lambda: {"onnxruntime-gpu": "1.0"})
    env = bench.environment("cpu", {"encoder": "CPUExecutionProvider"})
    assert env == {"onnxruntime-gpu": "1.0", "device": "cpu", "providers_used": {"encoder": "CPUExecutionProvider"},
                   "onnxruntime": ort.__version__, "onnxruntime_available_providers": ort.get_available_providers()}
