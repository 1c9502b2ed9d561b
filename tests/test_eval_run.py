"""escmvq.eval.run.run_eval: ``escmvq eval`` as one Python call, and the merge entry point."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pytest
from typer.testing import CliRunner

from escmvq.eval.run import EvalConfig, parse_pair_spec, run_eval

VOLATILE = {"elapsed_s", "seconds", "transmissions_per_s", "command"}


def _numbers(doc):
    if isinstance(doc, dict):
        return {k: _numbers(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_numbers(v) for v in doc]
    return doc


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.eval.testing import colour_bundle

    folder = tmp_path_factory.mktemp("evalrun")
    imgs = load_cifar10_test(96)
    for i, m in enumerate((0.003, 0.2)):
        colour_bundle(folder, imgs, "jcap", mu_base=(m,), name=f"vq{i}")
    return colour_bundle(folder, imgs)


def test_run_eval_is_the_command(bundle, tmp_path):
    pairs = f"{bundle.parent}/vq*.escmvq"
    told = []
    cfg = EvalConfig(bundle=bundle, methods=("jcap", "jcamp"), channel="awgn", snr_db=[0.0, 20.0], images=20,
                     realizations=2, batch=8, seed=3, pairs=dict([parse_pair_spec(f"bsc-vq={pairs}")]),
                     json_out=tmp_path / "lib.json", heatmap=tmp_path / "hm.png")
    res = run_eval(cfg, progress=lambda d, k, total: told.append((d, k, total)))
    assert list(res.doc["methods"]) == ["jcap", "jcamp", "bsc-vq"] and res.written == [cfg.json_out, cfg.heatmap]
    assert json.loads(cfg.json_out.read_text()) == res.doc and cfg.heatmap.read_bytes()[:4] == b"\x89PNG"
    assert [d for d, k, _ in told if k == 0] == ["jcap+jcamp", "bsc-vq"]
    assert sum(k for _, k, _ in told) == told[0][2] == 20 * 2 * 2 * 3
    assert res.doc["command"] == "escmvq.eval.run.run_eval" and res.results["bsc-vq"].psnr.shape == (2, 20)
    T, L = res.doc["bundle"]["T"], res.doc["bundle"]["N"] * res.doc["bundle"]["B"]
    assert res.doc["eb_n0_db"] == [0.0, 20.0]
    assert res.doc["es_n0_db"] == pytest.approx([10 * np.log10(L / T), 20 + 10 * np.log10(L / T)])
    from escmvq.eval.figures import snr_axis_label

    assert snr_axis_label(res.doc).endswith(f"Es/N0 = SNR + {10 * np.log10(L / T):.2f} dB")
    assert snr_axis_label({"snr_db": [0.0]}) == "SNR (dB), eq. (53)"
    from escmvq.cli.main import app

    r = CliRunner().invoke(app, ["eval", "--bundle", str(bundle), "--methods", "jcap,jcamp", "--channel", "awgn",
                                 "--snr", "0,20", "--images", "20", "--realizations", "2", "--batch", "8", "--seed",
                                 "3", "--pairs", f"bsc-vq={pairs}", "--quiet", "--json", str(tmp_path / "cli.json")])
    assert r.exit_code == 0, r.output
    assert _numbers(json.loads((tmp_path / "cli.json").read_text())) == _numbers(res.doc)


@pytest.mark.parametrize("over, msg", [
    ({"methods": ("jcamp", "jpeg")}, "methods"),
    ({"channel": "rician"}, "--channel"),
    ({"dataset": "stl10"}, "--dataset"),
    ({"batch": 0}, ">= 1"),
    ({"jpeg_energy": "half"}, "--jpeg-energy"),
    ({"pairs": {"jcap": ["x"]}}, "new method NAME"),
    ({"json_out": Path("a"), "plot": Path("a")}, "must differ"),
    ({"methods": ("jpeg-ldpc",), "heatmap": Path("h.png")}, "--heatmap needs"),
])
def test_bad_config_refused_before_any_work(tmp_path, over, msg):
    cfg = EvalConfig(bundle=tmp_path / "missing", **over)
    with pytest.raises(ValueError, match=msg):
        run_eval(cfg)


def test_pair_spec():
    with pytest.raises(ValueError, match="new NAME"):
        parse_pair_spec("jcamp=*")
    with pytest.raises(ValueError, match="no bundle folder"):
        parse_pair_spec("x=/nonexistent/*.escmvq")


def test_merge_results_records_the_common_receiver(tmp_path):
    from escmvq.eval.merge import merge_results, parse_source

    soft = {"decoding": "soft", "estimate": "mmse", "llr": "exact", "prior": True}

    def sweep(name, kind, **over):
        doc = {"format": "escmvq-eval", "version": 1, "dataset": "cifar10", "channel": "awgn", "snr_db": [0.0],
               "n_images": 4, "realizations": 1, "seed": 0, "batch": 256,
               "methods": {name: {"psnr_mean": [20.0], "psnr_ci95": [0.1], "kind": kind, "pairs": 1}}, **over}
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        return str(tmp_path / f"{name}.json")

    a, b = sweep("jcamp", "esc-mvq", receiver=soft), sweep("jpeg-ldpc", "jpeg+ldpc", receiver={"decoding": "ldpc"})
    assert parse_source(f"old={a}") == ("old", Path(a)) and parse_source(a) == (None, Path(a))
    doc = merge_results([parse_source(a), parse_source(b)])
    assert doc["receiver"] == soft and list(doc["methods"]) == ["jcamp", "jpeg-ldpc"]
    c = sweep("jcap", "esc-mvq")  # written before receivers were recorded: hard decisions
    with pytest.raises(ValueError, match="differs"):
        merge_results([parse_source(a), parse_source(c)])
