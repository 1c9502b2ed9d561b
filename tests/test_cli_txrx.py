"""``escmvq tx/rx/link/export/bench`` from the command line: results, and every bad
input giving one line on stderr, a non-zero exit and no output file."""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_error, run
from escmvq.export.testing import KODAK

REPO = Path(__file__).resolve().parents[1]


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_link_prints_report_and_saves_side_by_side(work, bundle_dir):
    res = run("link", "--snr", "10", "img.png", "--bundle", bundle_dir)
    assert res.exit_code == 0, res.stderr
    for word in ("PSNR", "channel uses", "codebook use", "encode", "decode", "end to end"):
        assert word in res.stdout
    out = Image.open(work / "img.link.png")
    assert out.size == (2 * 100 + 4, 70)
    # a second run never overwrites the first output
    assert run("link", "--snr", "10", "img.png", "-b", bundle_dir).exit_code == 0
    assert (work / "img.link-1.png").exists()


def test_link_json(work, bundle_dir):
    res = run("link", "--snr", "30", "img.png", "-b", bundle_dir, "--channel", "awgn", "--json", "-o", "o.png")
    rep = json.loads(res.stdout)
    assert rep["channel_uses"] == 12 * 144 and rep["tiles"] == 12 and rep["label_error_rate"] == 0.0
    assert sum(rep["codebook_use"]) == pytest.approx(1.0, abs=1e-3)
    assert set(rep["latency_ms"]) >= {"encode", "allocate", "quantize", "modulate", "channel", "demodulate",
                                      "dequantize", "decode", "end_to_end"}
    # a versioned, self-describing document: the SNR of (53) is Eb/N0 per label bit; T = L / 4 here
    assert (rep["format"], rep["version"]) == ("escmvq-link", 1) and rep["created_utc"].endswith("+00:00")
    assert rep["environment"]["python"] and rep["environment"]["numpy"]
    assert rep["eb_n0_db"] == 30.0 and rep["es_n0_db"] == pytest.approx(30.0 + 10 * math.log10(4), abs=1e-4)


def test_tx_rx_round_trip(work, bundle_dir):
    res = run("tx", "--snr", "20", "img.png", "-o", "a.tx", "-b", bundle_dir, "--seed", "3")
    assert res.exit_code == 0, res.stderr
    res = run("rx", "a.tx", "-o", "a.png", "-b", bundle_dir, "-r", "img.png")
    assert res.exit_code == 0, res.stderr
    from escmvq.runtime.images import psnr

    dec, ref = np.asarray(Image.open(work / "a.png")), np.asarray(Image.open(work / "img.png"))
    assert dec.shape == (70, 100, 3)
    shown = float(res.stdout.split("PSNR ")[1].split(" dB")[0])  # "..., PSNR 12.34 dB"
    assert shown == pytest.approx(psnr(ref, dec), abs=0.005)
    # same seeds -> same bytes
    run("tx", "--snr", "20", "img.png", "-o", "b.tx", "-b", bundle_dir, "--seed", "3")
    assert (work / "a.tx").read_bytes() == (work / "b.tx").read_bytes()
    # received samples (channel applied at tx time): kind byte 1, rx only decodes
    assert run("tx", "--snr", "20", "img.png", "-o", "c.tx", "-b", bundle_dir, "--through-channel").exit_code == 0
    assert (work / "c.tx").read_bytes()[10] == 1 and (work / "a.tx").read_bytes()[10] == 0
    assert run("rx", "c.tx", "-o", "c.png", "-b", bundle_dir).exit_code == 0


def test_rx_decodes_frames_with_noise_variance_other_than_one(work):
    """A frame made with sigma^2 = 4 (P_tot four times larger at the same SNR): ``rx`` must
    plan with the frame's sigma^2 and decode exactly what a sigma^2 = 1 frame decodes (the
    channel at sigma^2 = 4 is the unit one scaled by 2: signal and noise). The colour-quantiser
    bundle is used because its decoder output depends on the labels (the untrained tiny
    bundle's barely does)."""
    pytest.importorskip("onnx")
    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.eval.testing import colour_bundle
    from escmvq.runtime.frame import parse
    from escmvq.runtime.images import load_image
    from escmvq.runtime.link import transmit_image
    from escmvq.runtime.transmitter import Transmitter

    bundle_dir = colour_bundle(work / "cb", load_cifar10_test(96))
    tx = Transmitter(bundle_dir)
    img = load_image(work / "img.png")
    for nv in (1.0, 4.0):
        frame = transmit_image(tx, img, 20.0, np.random.default_rng(3), "rayleigh", noise_var=nv)[0]
        (work / f"n{nv:g}.tx").write_bytes(frame.to_bytes())
        assert parse((work / f"n{nv:g}.tx").read_bytes()).noise_var == nv
        res = run("rx", f"n{nv:g}.tx", "-o", f"n{nv:g}.png", "-b", bundle_dir, "--seed", "5", "-r", "img.png")
        assert res.exit_code == 0, res.stderr
        assert float(res.stdout.split("PSNR ")[1].split(" dB")[0]) > 20.0
    one, four = (np.asarray(Image.open(work / f"n{nv}.png")) for nv in ("1", "4"))
    assert np.array_equal(one, four)


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "I;16", "L"])
def test_modes_and_small_images_accepted(work, bundle_dir, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (9, 13), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).convert(mode)  # smaller than a tile
    im.save(work / "m.png")
    res = run("link", "--snr", "10", "m.png", "-b", bundle_dir, "-o", "m_out.png")
    assert res.exit_code == 0, res.stderr
    assert Image.open(work / "m_out.png").size == (2 * 13 + 4, 9)


def test_bad_images(work, bundle_dir):
    (work / "notes.txt").write_text("not an image")
    data = (work / "img.png").read_bytes()
    (work / "cut.png").write_bytes(data[: len(data) // 2])
    before = files(work)
    assert_one_line_error(run("link", "--snr", "10", "notes.txt", "-b", bundle_dir), "not an image file")
    assert_one_line_error(run("tx", "--snr", "10", "cut.png", "-o", "c.tx", "-b", bundle_dir), "truncated")
    assert_one_line_error(run("tx", "--snr", "10", "missing.png", "-o", "c.tx", "-b", bundle_dir), "no such file")
    assert files(work) == before


@pytest.mark.parametrize("snr", ["abc", "nan", "1e9", ""])
def test_snr_not_a_number(work, bundle_dir, snr):
    assert_one_line_error(run("link", "--snr", snr, "img.png", "-b", bundle_dir), "--snr")
    assert not (work / "img.link.png").exists()


def test_bad_frames(work, bundle_dir):
    assert run("tx", "--snr", "10", "img.png", "-o", "a.tx", "-b", bundle_dir).exit_code == 0
    data = (work / "a.tx").read_bytes()
    (work / "cut.tx").write_bytes(data[:-100])
    bad = bytearray(data)
    bad[200] ^= 0xFF
    (work / "bad.tx").write_bytes(bytes(bad))
    (work / "png.tx").write_bytes((work / "img.png").read_bytes())
    old = bytearray(data[:-4])  # the same frame stamped version 1 (the earlier QAM labelling), CRC valid
    struct.pack_into("<H", old, 8, 1)
    (work / "v1.tx").write_bytes(bytes(old) + struct.pack("<I", zlib.crc32(bytes(old))))
    before = files(work)
    assert_one_line_error(run("rx", "v1.tx", "-o", "o.png", "-b", bundle_dir), "version 1 not supported: its samples use the earlier QAM labelling")
    assert_one_line_error(run("rx", "cut.tx", "-o", "o.png", "-b", bundle_dir), "truncated frame")
    assert_one_line_error(run("rx", "bad.tx", "-o", "o.png", "-b", bundle_dir), "CRC")
    assert_one_line_error(run("rx", "png.tx", "-o", "o.png", "-b", bundle_dir), "bad magic")
    assert_one_line_error(run("rx", "none.tx", "-o", "o.png", "-b", bundle_dir), "no such file")
    assert files(work) == before


def test_frame_from_another_bundle_and_corrupt_bundle(work, bundle_dir):
    other = work / "other.escmvq"
    shutil.copytree(bundle_dir, other)
    m = json.loads((other / "manifest.json").read_text())
    m["model"]["quantizer"] = "another model"  # content enters the identity (the export time does not)
    (other / "manifest.json").write_text(json.dumps(m))
    assert run("tx", "--snr", "10", "img.png", "-o", "a.tx", "-b", bundle_dir).exit_code == 0
    assert_one_line_error(run("rx", "a.tx", "-o", "o.png", "-b", other), "refusing to decode")
    enc = other / "encoder.onnx"
    enc.write_bytes(enc.read_bytes()[:-1] + b"\0")
    assert_one_line_error(run("link", "--snr", "10", "img.png", "-b", other), "sha256 does not match")
    assert_one_line_error(run("link", "--snr", "10", "img.png", "-b", work), "not a bundle")
    assert not (work / "o.png").exists() and not (work / "img.link.png").exists()


def test_existing_output_needs_force(work, bundle_dir):
    (work / "a.tx").write_bytes(b"precious")
    assert_one_line_error(run("tx", "--snr", "10", "img.png", "-o", "a.tx", "-b", bundle_dir), "--force")
    assert (work / "a.tx").read_bytes() == b"precious"
    assert run("tx", "--snr", "10", "img.png", "-o", "a.tx", "-b", bundle_dir, "--force").exit_code == 0
    assert (work / "a.tx").read_bytes()[:8] == b"ESCMVQTX"
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temp files left


def test_bench_json_and_devices(work, bundle_dir):
    res = run("bench", "-b", bundle_dir, "--batch", "1,4", "--iters", "3", "--warmup", "1", "--json",
              "--min-duration", "0")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)  # stdout holds only the JSON
    assert (rep["format"], rep["version"]) == ("escmvq-bench", 2) and rep["environment"]["python"]
    assert rep["environment"]["providers_used"] == {"encoder": "CPUExecutionProvider", "decoder": "CPUExecutionProvider"}
    assert [r["batch"] for r in rep["results"]] == [1, 4]
    st = rep["results"][1]["stages"]
    assert {"encode", "quantize", "allocate", "modulate", "channel", "demodulate", "dequantize", "decode",
            "end_to_end"} <= set(st)
    assert st["end_to_end"]["p99_ms"] >= st["end_to_end"]["median_ms"] > 0
    assert "bench: batch 1" in res.stderr
    from escmvq.runtime.bench import detect_jetson

    if not detect_jetson()[0]:
        assert_one_line_error(run("bench", "--device", "jetson", "-b", bundle_dir), "not a Jetson")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert_one_line_error(run("bench", "--device", "cuda", "-b", bundle_dir), "CUDAExecutionProvider is not available")
    assert_one_line_error(run("bench", "--device", "tpu", "-b", bundle_dir), "--device")


def test_bench_formats_table_and_validity_flags(work, bundle_dir, monkeypatch):
    res = run("bench", "-b", bundle_dir, "--batch", "1", "--iters", "2", "--warmup", "0", "--formats", "fp32,int8",
              "--min-duration", "0", "--image", "img.png", "--channel", "awgn", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert [r["format"] for r in rep["formats"]] == ["fp32", "int8"] and rep["settings"]["formats"] == ["fp32", "int8"]
    assert [(r["format"], r["batch"]) for r in rep["results"]] == [("fp32", 1), ("int8", 1)]
    assert all(r["valid"] and r["timed"]["queries"] == 2 for r in rep["results"]) and rep["valid"]
    assert rep["headline"]["format"] == "fp32" and "over the tiles of img.png" in rep["settings"]["psnr"]
    assert rep["bundle"]["model_bytes_per_format"]["int8"] != rep["bundle"]["model_bytes_per_format"]["fp32"]
    # the table: one row per format with latency and PSNR, and the SingleStream headline
    res = run("bench", "-b", bundle_dir, "--batch", "1", "--iters", "1", "--warmup", "0", "--formats", "int8,fp32",
              "--min-duration", "0")
    assert res.exit_code == 0, res.stderr
    table = res.stdout[res.stdout.index("formats ("):]
    assert "PSNR" in table and "p90 ms" in table and table.index("int8") < table.index("fp32")
    assert "SingleStream p90" in res.stdout and "random tiles" in res.stdout
    # a cap shorter than the minimum duration: refused before any work; a loop stopped by the cap is not valid
    assert_one_line_error(run("bench", "-b", bundle_dir, "--min-duration", "2", "--max-duration", "1"),
                          "--min-duration", code=2)
    res = run("bench", "-b", bundle_dir, "--batch", "1", "--iters", "100000", "--warmup", "0", "--min-duration", "0",
              "--max-duration", "0", "--json")
    rep = json.loads(res.stdout)
    assert rep["valid"] is False and rep["headline"]["valid"] is False and rep["formats"][0]["valid"] is False
    assert "timed queries < the minimum 100000" in rep["results"][0]["invalid_reasons"][0]
    assert_one_line_error(run("bench", "-b", bundle_dir, "--formats", "fp32,fp16"), "--formats", code=2)
    assert_one_line_error(run("bench", "-b", bundle_dir, "--formats", "fp32", "--int8"), "--int8", code=2)
    monkeypatch.setitem(sys.modules, "jtop", None)
    assert_one_line_error(run("bench", "-b", bundle_dir, "--power", "--batch", "1"), "jetson-stats")


def test_detect_jetson_from_files(tmp_path):
    from escmvq.runtime.bench import detect_jetson

    (tmp_path / "model").write_text("NVIDIA Jetson AGX Orin Developer Kit\0")
    (tmp_path / "rel").write_text("# R36 (release), REVISION: 3.0\n")
    ok, found = detect_jetson(tmp_path / "model", tmp_path / "rel")
    assert ok and "Orin" in found and "R36" in found
    ok, found = detect_jetson(tmp_path / "none", tmp_path / "none2")
    assert not ok and "no " in found


def test_export_cli(tmp_path, bundle_dir):
    res = run("export", bundle_dir.parent / "tiny.ckpt", "-o", tmp_path / "e.escmvq", "--calib", KODAK / "kodim01.png",
              "--n-check", "16", "--n-calib", "16")
    assert res.exit_code == 0, res.stderr
    assert "self-check" in res.stdout and "FAIL" not in res.stdout and (tmp_path / "e.escmvq/manifest.json").exists()
    assert_one_line_error(run("export", bundle_dir.parent / "tiny.ckpt", "-o", tmp_path / "e.escmvq"), "--force")
    assert_one_line_error(run("export", tmp_path / "nothing.ckpt", "-o", tmp_path / "f.escmvq"), "not found")
    res = run("export", bundle_dir.parent / "tiny.ckpt", "-o", tmp_path / "t.escmvq", "--trt")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert_one_line_error(res, "TensorRT is not installed")
        assert not (tmp_path / "t.escmvq").exists()


BLOCK_TORCH = """
import sys
import zlib
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name.startswith("escmvq.training"):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
sys.argv = ["escmvq"] + sys.argv[1:]
from escmvq.cli.main import app
try:
    app()
finally:
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
"""


def test_tx_rx_link_never_import_torch(work, bundle_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def cli(*args):
        r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *map(str, args)], capture_output=True, text=True,
                           env=env, cwd=work, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    cli("tx", "--snr", "10", "img.png", "-o", "a.tx", "-b", bundle_dir)
    cli("rx", "a.tx", "-o", "a.png", "-b", bundle_dir)
    assert "PSNR" in cli("link", "--snr", "10", "img.png", "-b", bundle_dir).stdout
    cli("bench", "-b", bundle_dir, "--batch", "2", "--iters", "2", "--warmup", "0", "--json")


def test_stream_two_processes(work, bundle_dir, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    Image.open(work / "img.png").crop((0, 0, 40, 30)).save(work / "small.png")
    (work / "out").mkdir()
    env = {**os.environ}
    r = subprocess.run([sys.executable, "-m", "escmvq.cli.main", "stream", "--snr", "10", "img.png", "small.png",
                        "-b", str(bundle_dir), "-o", "out"], capture_output=True, text=True, cwd=work, env=env,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    rx = [x for x in recs if x["side"] == "rx"]
    tx = [x for x in recs if x["side"] == "tx"]
    assert [x["image"] for x in rx] == ["img.png", "small.png"] and all(x["ok"] for x in rx + tx)
    assert all(x["latency_ms"] > 0 for x in rx) and all(x["round_trip_ms"] >= x["tx_ms"] > 0 for x in tx)
    assert Image.open(work / "out/small.rx.png").size == (40, 30)
