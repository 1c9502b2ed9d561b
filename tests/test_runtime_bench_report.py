"""escmvq.runtime.bench.report: ``escmvq bench`` as one call."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("onnx")
    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.eval.testing import colour_bundle

    return colour_bundle(tmp_path_factory.mktemp("bench"), load_cifar10_test(32))


def test_report_times_every_batch_size_and_sizes_the_graphs(bundle):
    from escmvq.runtime.bench import BENCH_STAGES, report
    from escmvq.runtime.bundle import load_bundle

    said = []
    rep = report(bundle, batches=(1, 3), iters=2, warmup=1, snr_db=5.0, channel="awgn", threads=1, decoding="soft",
                 log=said.append, min_duration=0.0)
    assert [r["batch"] for r in rep["results"]] == [1, 3] and len(said) == 2
    for r in rep["results"]:
        assert set(BENCH_STAGES) <= set(r["stages"]) and r["stages"]["end_to_end"]["n"] == 2
    files = load_bundle(bundle).manifest["files"]
    assert rep["bundle"]["model_bytes"] == files["encoder.onnx"]["bytes"] + files["decoder.onnx"]["bytes"]
    assert rep["bundle"]["precision"] == "fp32" and rep["settings"]["receiver"]["decoding"] == "soft"
    assert rep["settings"]["tiles"] == "random" and rep["settings"]["channel"] == "awgn"
    assert rep["environment"]["device"] == "cpu"


def test_report_refuses_bad_devices(bundle):
    from escmvq.runtime.bench import detect_jetson, report

    with pytest.raises(ValueError, match="device"):
        report(bundle, device="tpu")
    if not detect_jetson()[0]:
        with pytest.raises(ValueError, match="not a Jetson"):
            report(bundle, device="jetson")
    with pytest.raises(Exception, match="int8"):  # the colour bundle has no int8 graphs
        report(bundle, int8=True, batches=(1,), iters=1, warmup=0)


def test_validity_needs_both_minimums():
    from escmvq.runtime.bench import validity

    assert validity(100, 1.0, 100, 1.0) == (True, [])
    ok, why = validity(99, 1.0, 100, 1.0)
    assert not ok and why == ["99 timed queries < the minimum 100"]
    ok, why = validity(100, 0.5, 100, 1.0)
    assert not ok and why == ["timed loop ran 0.5 s < the minimum 1 s"]
    assert len(validity(0, 0.0, 1, 1.0)[1]) == 2


def test_timed_loop_runs_min_duration_past_iters_and_a_cap_makes_it_invalid(bundle):
    from escmvq.runtime.bench import run_bench
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle, threads=1)
    rx = Receiver(tx.bundle, threads=1)
    tiles = np.random.default_rng(0).random((4, 3, *tx.bundle.tile_size), dtype=np.float32)
    rng = np.random.default_rng(1)
    r = run_bench(tx, rx, tiles, 1, 10.0, rng, iters=2, warmup=1, channel="awgn", min_duration=0.3)
    tm = r["timed"]
    assert tm["duration_s"] >= 0.3 and tm["queries"] >= 2 and r["valid"] and r["invalid_reasons"] == []
    assert r["stages"]["end_to_end"]["n"] == tm["queries"]  # every timed query is in the statistics
    # no minimum duration: exactly iters queries, as before
    r = run_bench(tx, rx, tiles, 1, 10.0, rng, iters=3, warmup=0, channel="awgn")
    assert r["timed"]["queries"] == 3 and r["stages"]["end_to_end"]["n"] == 3 and r["valid"]
    # a cap stops the loop short of both minimums: at least one query, marked not valid with the reasons
    r = run_bench(tx, rx, tiles, 2, 10.0, rng, iters=10**6, warmup=0, channel="awgn", min_duration=50.0,
                  max_duration=0.0)
    assert r["timed"]["queries"] == 1 and not r["valid"]
    assert "1 timed queries < the minimum 1000000" in r["invalid_reasons"][0]
    assert "< the minimum 50 s" in r["invalid_reasons"][1]


def test_power_summary_arithmetic():
    from escmvq.runtime.bench import power_summary

    s = power_summary([2.0, 4.0, 6.0], duration_s=3.0, items=6)
    assert s["mean_w"] == 4.0 and s["energy_j"] == 12.0 and s["mj_per_tile"] == 2000.0 and s["samples"] == 3
    assert power_summary([], 1.0, 5)["mean_w"] is None and power_summary([1.0], 1.0, 0)["mj_per_tile"] is None


def test_power_sampler_reads_a_source_in_a_thread_with_its_clock():
    import threading

    from escmvq.runtime.bench import PowerSampler

    ticks = iter([100.0, 102.5])
    seen = []

    def source():
        seen.append(threading.current_thread().name)
        if len(seen) == 2:
            raise OSError("sensor busy")  # one failed read is counted, not fatal
        return 8.0

    s = PowerSampler(source, interval_s=0.001, clock=lambda: next(ticks))
    s.start()
    while len(seen) < 5:  # the thread keeps reading
        pass
    s.stop()
    n = len(s.watts)
    assert n == len(seen) - 1 and "escmvq-power" in seen[1:-1]
    out = s.summary(items=10)
    assert out["duration_s"] == 2.5 and out["mean_w"] == 8.0 and out["energy_j"] == 20.0
    assert out["mj_per_tile"] == 2000.0 and out["read_errors"] == 1 and "sensor busy" in out["first_error"]
    assert len(s.watts) == n  # stopped: nothing more is read


def test_report_formats_headline_power_and_psnr(bundle, tmp_path):
    from escmvq.runtime.bench import report

    watts = iter(range(1, 10**6))
    closed = []
    rep = report(bundle, batches=(1, 2), iters=2, warmup=0, snr_db=10.0, channel="awgn", threads=1,
                 min_duration=0.0, power_source=(lambda: float(next(watts)), lambda: closed.append(1)))
    assert (rep["format"], rep["version"]) == ("escmvq-bench", 2) and rep["valid"] is True
    assert [(r["format"], r["batch"]) for r in rep["results"]] == [("fp32", 1), ("fp32", 2)]
    (row,) = rep["formats"]
    one = rep["results"][0]
    assert row["format"] == "fp32" and row["singlestream"] and row["p90_ms"] == one["stages"]["end_to_end"]["p90_ms"]
    assert rep["headline"]["p90_ms"] == row["p90_ms"] and rep["headline"]["scenario"] == "SingleStream"
    assert row["throughput_batch"] == 2 and 0 < row["psnr_db"] < 100 and row["psnr_clean_db"] >= row["psnr_db"] - 1e-9
    assert "random tiles" in rep["settings"]["psnr"]
    assert one["power"]["samples"] >= 2 and row["mean_w"] == one["power"]["mean_w"] and closed == [1]
    assert rep["power"]["source"] == "given power_source"
    # no batch 1: no SingleStream headline; the latency row is of the smallest batch
    rep = report(bundle, batches=(3,), iters=1, warmup=0, channel="awgn", min_duration=0.0, power=False)
    assert rep["headline"] is None and rep["formats"][0]["latency_batch"] == 3
    assert rep["power"]["source"] is None and "power" not in rep["results"][0]
    with pytest.raises(ValueError, match="format"):
        report(bundle, formats=["fp16"])
    with pytest.raises(ValueError, match="min_duration"):
        report(bundle, min_duration=2.0, max_duration=1.0)


def test_power_without_jetson_stats_is_one_clear_error(bundle, monkeypatch):
    import sys

    from escmvq.runtime.bench import jtop_power_source, report

    monkeypatch.setitem(sys.modules, "jtop", None)
    with pytest.raises(RuntimeError, match="jetson-stats"):
        jtop_power_source()
    with pytest.raises(RuntimeError, match="jetson-stats"):
        report(bundle, power=True, batches=(1,), iters=1, warmup=0)


def test_tile_psnr_through_the_channel_and_without_errors(bundle):
    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.runtime.bench import tile_psnr
    from escmvq.runtime.images import tile
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle, threads=1)
    rx = Receiver(tx.bundle, threads=1, decoding="hard")  # hard decisions: label errors cost the most
    tiles = np.concatenate([tile(im, tx.bundle.tile_size)[0] for im in load_cifar10_test(8)])
    hi = tile_psnr(tx, rx, tiles, 60.0, "awgn", seed=0, batch=3)
    lo = tile_psnr(tx, rx, tiles, -10.0, "rayleigh", seed=0, batch=3)
    assert hi["tiles"] == 8 and hi["psnr_db"] == hi["psnr_clean_db"]  # no channel errors at 60 dB
    assert lo["psnr_db"] < lo["psnr_clean_db"] - 1.0  # errors at -10 dB cost PSNR; the clean path has none
    assert 15.0 < hi["psnr_clean_db"] < 60.0
    assert tile_psnr(tx, rx, tiles, -10.0, "rayleigh", seed=0, batch=3) == lo  # the same draws for every format
