"""``escmvq eval`` and the figures (torch-free for the ESC-MVQ methods)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from escmvq.cli.main import app
from escmvq.eval import figures

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.eval.testing import colour_bundle

    return colour_bundle(tmp_path_factory.mktemp("evalcli"), load_cifar10_test(96))


def _valid_png(p: Path):
    from PIL import Image

    assert p.read_bytes()[:8] == PNG
    with Image.open(p) as im:
        im.verify()


def test_eval_writes_json_and_figures(bundle, tmp_path):
    out = {k: tmp_path / f"{k}.{'json' if k == 'json' else 'png'}" for k in ("json", "plot", "bars", "grid", "heatmap", "mu-cdf")}
    args = ["eval", "--bundle", str(bundle), "--methods", "jcamp,jcap", "--channel", "awgn", "--snr", "0:20:10",
            "--images", "24", "--seed", "1", "--quiet"] + [a for k, p in out.items() for a in (f"--{k}", str(p))]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(out["json"].read_text())
    assert doc["snr_db"] == [0.0, 10.0, 20.0] and doc["n_images"] == 24
    for m in ("jcamp", "jcap"):
        s = doc["methods"][m]
        assert len(s["psnr_mean"]) == 3 and all(c > 0 for c in s["psnr_ci95"])
        assert s["psnr_mean"][2] > s["psnr_mean"][0] and s["pairs"] == 1 and s["parameter_bytes"] > 0
        assert len(s["mean_codebook"]) == 3 and len(s["mean_codebook"][0]) == 64
    for k in ("plot", "bars", "grid", "heatmap", "mu-cdf"):
        _valid_png(out[k])
    # same seed -> same numbers
    again = tmp_path / "again.json"
    r = CliRunner().invoke(app, args[:13] + ["--json", str(again)])
    assert r.exit_code == 0, r.output
    assert json.loads(again.read_text())["methods"]["jcap"]["psnr_mean"] == doc["methods"]["jcap"]["psnr_mean"]


@pytest.mark.parametrize("bad, msg", [
    (["--methods", "jcamp,foo"], "--methods"),
    (["--channel", "rician"], "--channel"),
    (["--snr", "10:0:1"], "--snr"),
    (["--dataset", "stl10"], "--dataset"),
    (["--images", "0"], ">= 1"),
    (["--data-dir", "/nonexistent"], "not found"),
])
def test_bad_input_one_line_error_no_output(bundle, tmp_path, bad, msg):
    js = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["eval", "--bundle", str(bundle), "--images", "4", "--snr", "0", "--quiet",
                                 "--json", str(js)] + bad)
    assert r.exit_code != 0
    assert msg in r.output and r.output.count("error:") == 1
    assert not js.exists() and not list(tmp_path.iterdir())


def test_existing_output_refused_before_work(bundle, tmp_path):
    js = tmp_path / "o.json"
    js.write_text("keep")
    r = CliRunner().invoke(app, ["eval", "--bundle", str(bundle), "--images", "4", "--snr", "0", "--json", str(js)])
    assert r.exit_code != 0 and "exists" in r.output and js.read_text() == "keep"


def test_figures_are_valid_pngs(tmp_path):
    rng = np.random.default_rng(0)
    figures.fig3_mu_cdf(rng.uniform(1e-4, 0.5, (5, 64, 9)), tmp_path / "f3.png")
    doc = {"snr_db": [0, 5], "channel": "awgn", "dataset": "x",
           "methods": {"jcamp": {"psnr_mean": [10, 12], "psnr_ci95": [0.5, None], "n_images": 3}}}
    figures.fig5_psnr_snr(doc, tmp_path / "f5.png")
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    figures.fig6_grid(imgs, {"jcamp": imgs[::-1]}, tmp_path / "f6.png", "t")
    figures.fig8_codebook_heatmap(rng.uniform(1, 5, (2, 64)), [0, 5], tmp_path / "f8.png")
    for n in ("f3", "f5", "f6", "f8"):
        _valid_png(tmp_path / f"{n}.png")
    with pytest.raises(FileNotFoundError):
        figures.fig3_mu_cdf(np.full((1, 2, 2), 0.1), tmp_path / "missing" / "x.png")
    with pytest.raises(ValueError):
        figures.fig8_codebook_heatmap(np.ones((3, 4)), [0, 5], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f3.png", "f5.png", "f6.png", "f8.png"]


def test_eval_with_a_pair_set(bundle, tmp_path):
    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.eval.testing import colour_bundle

    imgs = load_cifar10_test(96)
    for i, m in enumerate((0.003, 0.2)):
        colour_bundle(tmp_path, imgs, "jcap", mu_base=(m,), name=f"vq{i}")
    js = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["eval", "--bundle", str(bundle), "--methods", "jcap", "--snr", "0,20", "--images", "16",
                                 "--quiet", "--pairs", f"bsc-vq={tmp_path}/vq*.escmvq", "--json", str(js),
                                 "--decoding", "soft"])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    assert set(doc["methods"]) == {"jcap", "bsc-vq"}
    assert doc["methods"]["bsc-vq"]["pairs"] == 2 and doc["methods"]["jcap"]["pairs"] == 1
    # one receiver setting for every learned method, recorded
    assert doc["receiver"]["decoding"] == "soft"
    assert doc["methods"]["jcap"]["receiver"]["decoding"] == doc["methods"]["bsc-vq"]["receiver"]["decoding"] == "soft"
    r = CliRunner().invoke(app, ["eval", "--bundle", str(bundle), "--pairs", f"x={tmp_path}/none*", "--quiet"])
    assert r.exit_code == 2 and "no bundle folder" in r.output
