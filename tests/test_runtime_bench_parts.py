"""``escmvq bench``'s small parts, checked exactly: latency statistics, the format list, the
Jetson probes (device-tree files and tools faked), the environment record, peak RSS."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from escmvq.runtime import bench


def test_stats_in_milliseconds():
    s = bench.stats([0.001, 0.002, 0.003, 0.004, 0.010], batch=8)
    assert s == {"median_ms": pytest.approx(3.0), "p90_ms": pytest.approx(7.6), "p99_ms": pytest.approx(9.76),
                 "mean_ms": pytest.approx(4.0), "throughput_per_s": pytest.approx(8 / 0.003), "n": 5}
    assert bench.stats([0.0, 0.0], 4)["throughput_per_s"] == float("inf")
    assert type(bench.stats([0.5], 1)["n"]) is int


def test_formats():
    assert bench._formats(None, False) == ["fp32"] and bench._formats(None, True) == ["int8"]
    assert bench._formats(["int8", "fp32", "int8"], False) == ["int8", "fp32"]
    assert bench._formats(["int8"], True) == ["int8"]
    with pytest.raises(ValueError) as e:
        bench._formats([], False)
    assert str(e.value) == "formats: give one or more of fp32, int8"
    with pytest.raises(ValueError) as e:
        bench._formats(["fp32"], True)
    assert str(e.value) == "int8=True and formats disagree: give one of them"
    with pytest.raises(ValueError) as e:
        bench._formats(["fp16"], False)
    assert str(e.value) == "format: expected one of fp32, int8, got 'fp16'"


def test_detect_jetson(tmp_path):
    model, rel = tmp_path / "model", tmp_path / "nv_tegra_release"
    assert bench.detect_jetson(model, rel) == (False, f"no {model}; no {rel}")
    model.write_bytes(b"Raspberry Pi 4\x00")
    assert bench.detect_jetson(model, rel) == (False, f"device-tree model: 'Raspberry Pi 4'; no {rel}")
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00\n")
    assert bench.detect_jetson(model, rel) == (
        True, f"device-tree model: 'NVIDIA Jetson Orin Nano Developer Kit'; no {rel}")
    model.write_text("nvidia p3768")
    assert bench.detect_jetson(model, rel)[0] is True
    model.write_text("Jetson Xavier NX")  # either word, any case
    assert bench.detect_jetson(model, rel)[0] is True
    model.unlink()
    rel.write_text("# R36 (release), REVISION: 3.0\nsecond line\n")
    assert bench.detect_jetson(model, rel) == (True, f"no {model}; {rel}: '# R36 (release), REVISION: 3.0'")


def test_read_and_run(tmp_path, monkeypatch):
    p = tmp_path / "f"
    p.write_bytes(b"\x00 text \n\x00")
    assert bench._read(p) == "text"
    assert bench._read(tmp_path / "missing") is None
    p.write_bytes(b"\xffJetson X\n")  # not UTF-8: replaced, not an error; only NUL, newline and space stripped
    assert bench._read(p) == "\ufffdJetson X"
    assert bench._run(["no-such-tool-here"]) is None
    assert bench._run([sys.executable, "-c", "print(' out ')"]) == "out"
    assert bench._run([sys.executable, "-c", "import sys; sys.stderr.write('err\\n')"]) == "err"
    assert bench._run([sys.executable, "-c", "pass"]) is None
    assert bench._run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2) is None
    seen = {}
    real = subprocess.run

    def spy(cmd, **k):
        seen.update(k)
        return real(cmd, **k)

    monkeypatch.setattr(bench.subprocess, "run", spy)
    bench._run([sys.executable, "-c", "pass"])
    assert seen == {"capture_output": True, "text": True, "timeout": 5.0}


def test_jetson_info_and_environment(tmp_path, monkeypatch):
    model, rel = tmp_path / "model", tmp_path / "rel"
    model.write_text("NVIDIA Jetson AGX Orin")
    rel.write_text("# R35 (release)\nmore\n")
    monkeypatch.setattr(bench, "_DT_MODEL", model)
    monkeypatch.setattr(bench, "_TEGRA", rel)
    monkeypatch.setattr(bench, "_run", lambda cmd, timeout=5.0: {("nvpmodel", "-q"): "NV Power Mode: MAXN",
                                                                 ("jetson_clocks", "--show"): "clocks on"}[tuple(cmd)])
    monkeypatch.setitem(sys.modules, "jtop", None)  # jetson-stats absent
    info = bench.jetson_info()
    assert info == {"l4t_release": "# R35 (release)", "device_tree_model": "NVIDIA Jetson AGX Orin",
                    "nvpmodel": "NV Power Mode: MAXN", "jetson_clocks": "clocks on", "power": None}
    fake = types.ModuleType("jtop")

    class Jtop:
        power = {"tot": {"power": 7300}}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    fake.jtop = Jtop
    monkeypatch.setitem(sys.modules, "jtop", fake)  # jetson-stats present
    assert bench.jetson_info()["power"] == {"tot": {"power": 7300}}
    rel.unlink()
    assert bench.jetson_info()["l4t_release"] is None
    env = bench.environment("jetson", {"encoder": "TensorrtExecutionProvider"})
    import onnxruntime as ort

    assert env["device"] == "jetson" and env["providers_used"] == {"encoder": "TensorrtExecutionProvider"}
    assert env["onnxruntime"] == ort.__version__
    assert env["onnxruntime_available_providers"] == ort.get_available_providers()
    assert env["jetson"]["device_tree_model"] == "NVIDIA Jetson AGX Orin"
    assert "jetson" not in bench.environment("cpu", {})


def test_peak_rss_mb(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrusage", lambda who: type("R", (), {"ru_maxrss": 2048})())
    monkeypatch.setattr(bench.sys, "platform", "linux")
    assert bench._peak_rss_mb() == 2.0  # Linux reports KiB
    monkeypatch.setattr(bench.sys, "platform", "darwin")
    assert bench._peak_rss_mb() == 2048 / 2**20  # macOS reports bytes
