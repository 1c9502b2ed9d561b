"""ONNX Runtime sessions (backends.py), the endpoints' shared setup (endpoint.py) and the
single-threaded BLAS of the runtime processes (threads.py).

The GPU paths are checked against a recording stand-in for ``onnxruntime.InferenceSession``:
this machine has no GPU build, and what matters is what the runtime asks onnxruntime for.
"""
from __future__ import annotations

import ctypes
import sys
import types

import onnxruntime as ort
import pytest

from escmvq.runtime import backends, endpoint, threads
from escmvq.runtime.alloc_adapter import PlanCache
from escmvq.runtime.backends import BackendError, make_session, trt_cache_dir, used_provider
from escmvq.runtime.bundle import BundleError, load_bundle


class Recorder:
    """Stands in for ``ort.InferenceSession``: keeps its arguments, runs on the provider
    asked for first (or on ``runs_on`` when set)."""

    calls: list = []
    runs_on: str | None = None

    def __init__(self, path, sess_options=None, providers=None):
        self.path, self.so, self.providers = path, sess_options, providers
        Recorder.calls.append(self)

    def get_providers(self):
        p = self.providers[0]
        return [Recorder.runs_on or (p[0] if isinstance(p, tuple) else p), "CPUExecutionProvider"]


@pytest.fixture
def recorder(monkeypatch):
    Recorder.calls, Recorder.runs_on = [], None
    monkeypatch.setattr(ort, "InferenceSession", Recorder)
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    return Recorder


# ------------------------------- make_session -------------------------------
def test_cpu_session_options(bundle_dir):
    s = make_session(bundle_dir / "encoder.onnx")
    assert used_provider(s) == "CPUExecutionProvider"


def test_session_options_reach_onnxruntime(recorder, tmp_path):
    s = make_session(tmp_path / "m.onnx", device="cpu", threads=3)
    assert isinstance(s, Recorder) and s.path == str(tmp_path / "m.onnx")
    assert s.providers == ["CPUExecutionProvider"]
    so = s.so
    assert so.intra_op_num_threads == 3
    assert so.log_severity_level == 3
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert make_session("m.onnx").so.intra_op_num_threads == 0  # threads=None: onnxruntime's default


@pytest.mark.parametrize("optimize,level", [
    ("all", "ORT_ENABLE_ALL"), ("extended", "ORT_ENABLE_EXTENDED"),
    ("basic", "ORT_ENABLE_BASIC"), ("none", "ORT_DISABLE_ALL")])
def test_optimize_levels(recorder, optimize, level):
    s = make_session("m.onnx", optimize=optimize)
    assert s.so.graph_optimization_level == getattr(ort.GraphOptimizationLevel, level)


def test_cuda_asks_for_cuda_only(recorder):
    s = make_session("m.onnx", device="cuda")
    assert s.providers == ["CUDAExecutionProvider"]


@pytest.mark.parametrize("device,fp16,want_fp16", [
    ("tensorrt", False, False), ("tensorrt", True, True), ("jetson", False, True)])
def test_tensorrt_options(recorder, tmp_path, device, fp16, want_fp16):
    cache = tmp_path / "a" / "b"
    s = make_session("m.onnx", device=device, fp16=fp16, cache_dir=cache)
    assert s.providers == [("TensorrtExecutionProvider", {
        "trt_fp16_enable": want_fp16, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)})]
    assert cache.is_dir()  # made, parents too
    make_session("m.onnx", device=device, fp16=fp16, cache_dir=cache)  # a second time: the folder exists
    s = make_session("m.onnx", device=device, fp16=fp16)
    assert s.providers == [("TensorrtExecutionProvider", {"trt_fp16_enable": want_fp16})]
    if not fp16:  # the default
        assert make_session("m.onnx", device=device).providers == s.providers


def test_unknown_device_refused(recorder):
    with pytest.raises(BackendError) as e:
        make_session("m.onnx", device="tpu")
    assert str(e.value) == "unknown device 'tpu' (expected one of cpu, cuda, tensorrt, jetson)"
    assert recorder.calls == []


def test_absent_provider_message(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendError) as e:
        make_session("m.onnx", device="jetson")
    assert str(e.value) == ("TensorrtExecutionProvider is not available in this onnxruntime build (available: "
                            "CPUExecutionProvider); install JetPack's TensorRT and NVIDIA's Jetson "
                            "onnxruntime-gpu wheel")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider", "AzureExecutionProvider"])
    with pytest.raises(BackendError) as e:
        make_session("m.onnx", device="cuda")
    assert str(e.value).startswith("CUDAExecutionProvider is not available in this onnxruntime build (available: "
                                   "CPUExecutionProvider, AzureExecutionProvider); install onnxruntime-gpu")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider"])
    with pytest.raises(BackendError) as e:  # no hint to add: the message ends at the list
        make_session("m.onnx", device="cpu")
    assert str(e.value) == ("CPUExecutionProvider is not available in this onnxruntime build (available: "
                            "AzureExecutionProvider)")


def test_fallback_refused_with_both_names(recorder):
    recorder.runs_on = "CPUExecutionProvider"
    with pytest.raises(BackendError) as e:
        make_session("m.onnx", device="tensorrt")
    assert str(e.value) == ("asked onnxruntime for TensorrtExecutionProvider but the session runs on "
                            "CPUExecutionProvider (no usable GPU?); refusing to report it as tensorrt")


def test_session_errors_become_one_line(monkeypatch, tmp_path):
    def boom(msg):
        def make(*a, **k):
            raise RuntimeError(msg)
        return make

    monkeypatch.setattr(ort, "InferenceSession", boom("  [ONNXRuntimeError] bad graph\nsecond line\n"))
    with pytest.raises(BackendError) as e:
        make_session(tmp_path / "m.onnx")
    assert str(e.value) == ("cannot create an onnxruntime session for m.onnx on CPUExecutionProvider: "
                            "[ONNXRuntimeError] bad graph")
    assert e.value.__cause__ is None and e.value.__suppress_context__
    monkeypatch.setattr(ort, "InferenceSession", boom(""))
    with pytest.raises(BackendError) as e:
        make_session(tmp_path / "m.onnx")
    assert str(e.value).endswith("on CPUExecutionProvider: RuntimeError")


def test_a_real_bad_file_is_a_backend_error(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="^cannot create an onnxruntime session for bad.onnx on CPUExecutionProvider: "):
        make_session(p)


def test_trt_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ESCMVQ_CACHE", str(tmp_path))
    assert trt_cache_dir("0123456789abcdef" * 4) == tmp_path / "trt" / "0123456789abcdef"
    monkeypatch.delenv("ESCMVQ_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert trt_cache_dir("ab" * 32) == tmp_path / "home" / ".cache" / "escmvq" / "trt" / ("ab" * 8)


def test_ort_version():
    assert backends.ort_version() == ort.__version__


# ------------------------------- open_endpoint -------------------------------
@pytest.fixture
def made(monkeypatch):
    seen = []

    def fake(model, device="cpu", threads=None, cache_dir=None):
        seen.append(dict(model=model, device=device, threads=threads, cache_dir=cache_dir))
        return "session"

    monkeypatch.setattr(endpoint, "make_session", fake)
    return seen


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_open_endpoint_sets_up_one_half(bundle_dir, made, part):
    b, sess, plans = endpoint.open_endpoint(str(bundle_dir), part, "cpu", "fp32", 2)
    assert sess == "session" and b.hash == load_bundle(bundle_dir).hash
    assert made == [dict(model=b.file(f"{part}.onnx"), device="cpu", threads=2, cache_dir=None)]
    assert isinstance(plans, PlanCache) and plans.allocator is b.allocator
    assert (plans.n_symbols, plans.n_bits) == (b.n_symbols, b.n_bits) == (144, 576)


def test_open_endpoint_keeps_a_loaded_bundle_and_an_allocator(bundle_dir, made):
    b = load_bundle(bundle_dir)
    other = object()
    b2, _, plans = endpoint.open_endpoint(b, "decoder", "cpu", "fp32", None, allocator=other)
    assert b2 is b and plans.allocator is other
    assert made[0]["threads"] is None


@pytest.mark.parametrize("device", ["tensorrt", "jetson"])
def test_open_endpoint_caches_engines_per_bundle(bundle_dir, made, device):
    b, _, _ = endpoint.open_endpoint(bundle_dir, "encoder", device, "fp32", None)
    assert made[0]["cache_dir"] == trt_cache_dir(b.hash_hex) and made[0]["device"] == device


def test_open_endpoint_without_the_precision(bundle_dir, made):
    b = load_bundle(bundle_dir)
    assert b.has("decoder.int8.onnx") and not b.has("decoder.fp16.onnx")
    with pytest.raises(BundleError) as e:
        endpoint.open_endpoint(b, "decoder", "cpu", "fp16", None)
    assert str(e.value) == "bundle has no fp16 decoder (decoder.fp16.onnx); export with --fp16"
    endpoint.open_endpoint(b, "decoder", "cpu", "int8", None)
    assert [m["model"] for m in made] == [b.file("decoder.int8.onnx")]  # nothing made for the refused one


# ------------------------------- limit_blas_threads -------------------------------
def _openblas_threads() -> int | None:
    """The thread count of the OpenBLAS numpy loaded, read through its own getter."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line.split()[-1]}
    for path in paths:
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                    "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                return int(fn())
    return None


def test_limit_blas_threads_through_openblas(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # the ctypes path
    if not sys.platform.startswith("linux") or _openblas_threads() is None:
        pytest.skip("numpy here is not linked to an OpenBLAS found in /proc/self/maps")
    before = _openblas_threads()
    try:
        assert threads.limit_blas_threads(1) is True
        assert _openblas_threads() == 1
        assert threads.limit_blas_threads(2) is True
        assert _openblas_threads() == 2
        assert threads.limit_blas_threads() is True
        assert _openblas_threads() == 1
    finally:
        threads.limit_blas_threads(before)


def test_limit_blas_threads_prefers_threadpoolctl(monkeypatch):
    seen = []
    fake = types.ModuleType("threadpoolctl")
    fake.threadpool_limits = lambda limits, user_api: seen.append((limits, user_api))
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    assert threads.limit_blas_threads(3) is True
    assert seen == [(3, "blas")]


def test_limit_blas_threads_without_proc_maps(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)

    def no_maps(*a, **k):
        raise OSError("no /proc")

    monkeypatch.setattr(threads, "open", no_maps, raising=False)
    assert threads.limit_blas_threads(1) is False


def _fake_maps(monkeypatch, tmp_path, text: str) -> None:
    """threads.py reads ``text`` as /proc/self/maps, without threadpoolctl."""
    maps = tmp_path / "maps"
    maps.write_text(text)
    real_open = open
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setattr(threads, "open", lambda p, *a, **k: real_open(maps if p == "/proc/self/maps" else p, *a, **k),
                        raising=False)


def test_limit_blas_threads_without_openblas(monkeypatch, tmp_path):
    """Only lines naming an OpenBLAS shared object are tried; a library that cannot be
    loaded or has no setter is skipped."""
    _fake_maps(monkeypatch, tmp_path, "7f0-7f1 r-xp 0 08:01 1 /usr/lib/libm.so.6\n"
                                      f"7f1-7f2 r-xp 0 08:01 2 {tmp_path}/libopenblas_missing.so\n"
                                      "7f2-7f3 r-xp 0 08:01 3 /usr/lib/libc.so.6\n")
    loaded = []
    real_cdll = ctypes.CDLL
    monkeypatch.setattr(threads.ctypes, "CDLL", lambda p: loaded.append(p) or real_cdll(p))
    assert threads.limit_blas_threads(1) is False
    assert loaded == [f"{tmp_path}/libopenblas_missing.so"]


@pytest.mark.parametrize("sym", ["scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                                 "openblas_set_num_threads64_", "openblas_set_num_threads"])
def test_limit_blas_threads_finds_each_openblas_setter(monkeypatch, tmp_path, sym):
    """numpy wheels (scipy-openblas, 64- or 32-bit ints) and a system OpenBLAS name the setter
    differently; each is called. A library that cannot be loaded does not stop the search."""
    _fake_maps(monkeypatch, tmp_path, "7f0-7f1 r-xp 0 08:01 1 /gone/libopenblas.so.0\n"
                                      "7f1-7f2 r-xp 0 08:01 2 /lib/libopenblasp-r0.3.so\n")
    calls = []

    def cdll(path):
        if path.startswith("/gone/"):
            raise OSError(f"{path}: cannot open shared object file")
        lib = types.SimpleNamespace()
        setattr(lib, sym, lambda n: calls.append((path, n.value)))
        return lib

    monkeypatch.setattr(threads.ctypes, "CDLL", cdll)
    assert threads.limit_blas_threads(4) is True
    assert calls == [("/lib/libopenblasp-r0.3.so", 4)]
