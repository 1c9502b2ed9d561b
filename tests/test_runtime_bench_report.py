"""escmvq.runtime.bench.report: ``escmvq bench`` as one call."""
from __future__ import annotations

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
                 log=said.append)
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
