"""Bundle loading and hash verification; execution-provider checks."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from escmvq.runtime.backends import BackendError, make_session
from escmvq.runtime.bundle import BundleError, load_bundle, manifest_hash


@pytest.fixture
def copy(bundle_dir, tmp_path) -> Path:
    dst = tmp_path / "b.escmvq"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_load_and_hash(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.hash == manifest_hash(json.loads((bundle_dir / "manifest.json").read_text()))
    assert load_bundle(bundle_dir).hash == b.hash  # stable
    assert b.tile_size == (32, 32) and b.n_bits == 576 and b.n_symbols == 144


def test_modified_file_refused(copy):
    p = copy / "decoder.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="decoder.onnx sha256 does not match"):
        load_bundle(copy)


def test_truncated_and_missing_files_refused(copy):
    p = copy / "tables.npz"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(BundleError, match="tables.npz has .* bytes"):
        load_bundle(copy)
    p.unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(copy)


def test_manifest_edits_change_identity_or_fail(copy, bundle_dir):
    m = json.loads((copy / "manifest.json").read_text())
    m["model"]["rate"] = 2
    (copy / "manifest.json").write_text(json.dumps(m))
    assert load_bundle(copy).hash != load_bundle(bundle_dir).hash
    m["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="version 99 not supported"):
        load_bundle(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)


def test_gpu_providers_absent_fail_clearly(bundle_dir):
    import onnxruntime as ort

    for dev, prov in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        if prov in ort.get_available_providers():
            pytest.skip("a GPU build of onnxruntime is installed")
        with pytest.raises(BackendError, match=f"{prov} is not available"):
            make_session(bundle_dir / "encoder.onnx", device=dev)


def test_silent_cpu_fallback_refused(bundle_dir, monkeypatch):
    """An onnxruntime-gpu build lists CUDA but runs on the CPU: refuse to call that CUDA."""
    import onnxruntime as ort

    real = ort.InferenceSession

    class Fallback(real):
        def __init__(self, path, sess_options=None, providers=None):
            super().__init__(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Fallback)
    with pytest.raises(BackendError, match="runs on CPUExecutionProvider.*refusing"):
        make_session(bundle_dir / "encoder.onnx", device="cuda")
    assert make_session(bundle_dir / "encoder.onnx", device="cpu").get_providers()[0] == "CPUExecutionProvider"


# ------------------------- every listed file is verified -------------------------
def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["encoder.int8.onnx", "decoder.int8.onnx"])
def test_corrupt_optional_file_refused(copy, name):
    """Optional files (int8 graphs, TensorRT engines) are verified like the required ones:
    a corrupt int8 graph would otherwise run."""
    assert name in _manifest(copy)["files"]
    p = copy / name
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x10  # same size: only the sha256 can tell
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} sha256 does not match"):
        load_bundle(copy)
    assert load_bundle(copy, verify=False).path == copy  # verification is what refuses it


def test_corrupt_engine_file_refused(copy):
    from escmvq.runtime.bundle import sha256_file

    eng = copy / "encoder.fp16.engine"
    eng.write_bytes(b"serialized engine" * 10)
    m = _manifest(copy)
    m["files"]["encoder.fp16.engine"] = {"sha256": sha256_file(eng), "bytes": eng.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(m))
    assert load_bundle(copy).has("encoder.fp16.engine")
    eng.write_bytes(b"serialized engini" * 10)
    with pytest.raises(BundleError, match="encoder.fp16.engine sha256 does not match"):
        load_bundle(copy)
    eng.write_bytes(b"short")
    with pytest.raises(BundleError, match="encoder.fp16.engine has 5 bytes"):
        load_bundle(copy)


@pytest.mark.parametrize("name", ["../x", "..\\x", "sub/x", "/tmp/x", ".x", "./x"])
def test_manifest_entry_outside_the_bundle_refused(copy, name):
    """A manifest may only name files inside its folder, even when the named file exists and
    matches its hash (``../x`` next to the bundle)."""
    from escmvq.runtime.bundle import sha256_file

    outside = copy.parent / "x"  # what "../x" points at
    outside.write_bytes(b"not part of the bundle")
    inside = {"..\\x": copy / "..\\x", ".x": copy / ".x", "./x": copy / "x"}.get(name)
    if inside is not None:  # the named file exists too: only the name check can refuse it
        inside.write_bytes(outside.read_bytes())
    m = _manifest(copy)
    m["files"][name] = {"sha256": sha256_file(outside), "bytes": outside.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(copy)
