"""``escmvq eval-merge``: sweeps of the same points become one table, JSON and figure;
sweeps of different points, clashing names and bad files are one-line errors with no output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from escmvq.cli.main import app
from escmvq.eval.merge import markdown_table, merge_sweeps

PNG = b"\x89PNG\r\n\x1a\n"


def _sweep(path: Path, methods: dict, **over) -> Path:
    """An eval result as `escmvq eval --json` writes it (3 SNR points, 100 images)."""
    doc = {"format": "escmvq-eval", "version": 1, "command": f"escmvq eval ... {path.name}",
           "dataset": "cifar10", "channel": "rayleigh", "snr_db": [0.0, 10.0, 20.0], "n_images": 100,
           "realizations": 1, "seed": 0, "batch": 256, "methods": {}}
    doc.update(over)
    for name, (means, pairs) in methods.items():
        doc["methods"][name] = {"psnr_mean": means, "psnr_ci95": [0.2, 0.2, 0.2], "n_images": 100,
                                "pairs": pairs, "parameter_bytes": 2_000_000 * pairs if pairs else None,
                                "transmissions_per_s": 1000.0, "seconds": 0.3}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def two(tmp_path):
    a = _sweep(tmp_path / "a.json", {"jcamp": ([12.0, 21.0, 24.0], 1), "esc-svq": ([14.0, 22.0, 25.0], 2)})
    b = _sweep(tmp_path / "b.json", {"jcamp": ([13.0, 21.5, 24.5], 1), "jcap": ([13.0, 21.0, 24.4], 1)})
    return a, b


def test_merge_keeps_values_and_sources(two):
    a, b = two
    doc = merge_sweeps([(None, a), ("mu6", b)])
    assert list(doc["methods"]) == ["jcamp", "esc-svq", "mu6:jcamp", "mu6:jcap"]
    assert doc["methods"]["mu6:jcamp"]["psnr_mean"] == [13.0, 21.5, 24.5]
    assert doc["methods"]["esc-svq"]["psnr_mean"] == [14.0, 22.0, 25.0]
    assert [s["label"] for s in doc["merged_from"]] == [None, "mu6"]
    assert len(doc["merged_from"][1]["sha256"]) == 64 and doc["snr_db"] == [0.0, 10.0, 20.0]
    kept = merge_sweeps([(None, a), ("mu6", b)], keep=["mu6:jcap", "jcamp"])
    assert list(kept["methods"]) == ["mu6:jcap", "jcamp"]
    md = markdown_table(kept).splitlines()
    assert md[0] == "| SNR (dB) | mu6:jcap | jcamp |"
    assert md[2] == "| 0 | **13.00** | 12.00 |" and md[4] == "| 20 | **24.40** | 24.00 |"
    assert md[5] == "| pairs / MB | 1 / 2.00 | 1 / 2.00 |"
    renamed = merge_sweeps([(None, a), ("mu6", b)], keep=["mu6:jcap", "esc-svq"], rename={"mu6:jcap": "jcap"})
    assert list(renamed["methods"]) == ["jcap", "esc-svq"]
    assert renamed["methods"]["jcap"]["psnr_mean"] == [13.0, 21.0, 24.4]
    with pytest.raises(ValueError, match="already a method"):
        merge_sweeps([(None, a), ("mu6", b)], rename={"mu6:jcap": "jcamp"})


def test_cli_writes_json_markdown_and_figures(two, tmp_path):
    a, b = two
    out = {k: tmp_path / f"m.{k}" for k in ("json", "markdown", "plot", "bars")}
    args = ["eval-merge", str(a), f"mu6={b}", "--methods", "jcamp,mu6:jcamp,esc-svq"] + \
           [x for k, p in out.items() for x in (f"--{k}", str(p))]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(out["json"].read_text())
    assert list(doc["methods"]) == ["jcamp", "mu6:jcamp", "esc-svq"]
    assert "**25.00**" in out["markdown"].read_text()
    assert out["plot"].read_bytes()[:8] == PNG and out["bars"].read_bytes()[:8] == PNG
    # nothing is overwritten without --force
    before = out["json"].read_bytes()
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0 and "exists" in r.output
    assert out["json"].read_bytes() == before


@pytest.mark.parametrize("change, msg", [
    ({"snr_db": [0.0, 10.0, 25.0]}, "snr_db"),
    ({"seed": 1}, "seed"),
    ({"channel": "awgn"}, "channel"),
    ({"n_images": 50}, "n_images"),
])
def test_different_points_refused_without_output(two, tmp_path, change, msg):
    a, _ = two
    c = _sweep(tmp_path / "c.json", {"jcap": ([1.0, 2.0, 3.0], 1)}, **change)
    out = tmp_path / "x.json"
    r = CliRunner().invoke(app, ["eval-merge", str(a), str(c), "--json", str(out)])
    assert r.exit_code != 0 and msg in r.output and "differs" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_clashes_and_bad_files_are_one_line_errors(two, tmp_path):
    a, b = two
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    cases = [([str(a), str(b)], "prefix one file as LABEL=PATH"),  # jcamp twice
             ([str(a), "--methods", "jcamp,nope"], "nope"),
             ([str(a), "--rename", "nope=x"], "nope"),
             ([str(a), "--rename", "jcamp"], "OLD=NEW"),
             ([str(a), str(bad)], "not an `escmvq eval` result"),
             ([str(tmp_path / "missing.json")], "missing.json")]
    for args, msg in cases:
        r = CliRunner().invoke(app, ["eval-merge", *args, "--json", str(tmp_path / "y.json")])
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "y.json").exists()


def test_each_method_keeps_the_csi_of_its_sweep(tmp_path):
    """A perfect-CSI and a pilot sweep may be merged to compare them; each merged method says how
    its receiver knew the channel."""
    a = _sweep(tmp_path / "a.json", {"jcamp": ([12.0, 21.0, 24.0], 1)}, csi={"mode": "perfect", "pilots": None})
    b = _sweep(tmp_path / "b.json", {"jcamp": ([11.5, 20.7, 24.0], 1)}, csi={"mode": "pilots", "pilots": 8})
    old = _sweep(tmp_path / "c.json", {"jcamp": ([12.0, 21.0, 24.0], 1)})  # before CSI modes existed
    doc = merge_sweeps([(None, a), ("p8", b), ("old", old)])
    assert doc["methods"]["jcamp"]["csi"]["mode"] == "perfect"
    assert doc["methods"]["p8:jcamp"]["csi"] == {"mode": "pilots", "pilots": 8}
    assert "csi" not in doc["methods"]["old:jcamp"]
