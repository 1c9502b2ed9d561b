"""Bundle loading and hash verification; execution-provider checks."""
from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize("name", ["../x", "..\\x", "sub\\x", "sub/x", "/tmp/x", ".x", "./x"])
def test_manifest_entry_outside_the_bundle_refused(copy, name):
    """A manifest may only name files inside its folder, even when the named file exists and
    matches its hash (``../x`` next to the bundle)."""
    from escmvq.runtime.bundle import sha256_file

    outside = copy.parent / "x"  # what "../x" points at
    outside.write_bytes(b"not part of the bundle")
    inside = {"..\\x": copy / "..\\x", "sub\\x": copy / "sub\\x", ".x": copy / ".x", "./x": copy / "x"}.get(name)
    if inside is not None:  # the named file exists too: only the name check can refuse it
        inside.write_bytes(outside.read_bytes())
    m = _manifest(copy)
    m["files"][name] = {"sha256": sha256_file(outside), "bytes": outside.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(copy)


def test_graph_file_names_and_messages():
    from escmvq.runtime.bundle import graph_file

    assert [graph_file("encoder"), graph_file("decoder", "int8"), graph_file("decoder", "fp16", engine=True)] == [
        "encoder.onnx", "decoder.int8.onnx", "decoder.fp16.engine"]
    with pytest.raises(ValueError, match=r"^part: expected one of encoder, decoder, got 'head'$"):
        graph_file("head")
    with pytest.raises(ValueError, match=r"^TensorRT engines are fp16, got precision 'fp32'$"):
        graph_file("encoder", engine=True)


def test_canonical_json_and_parameter_bytes():
    from escmvq.runtime.bundle import canonical_json, default_bundle_path, parameter_bytes

    assert canonical_json({"b": [1, 2.5], "a": "\u00e9"}) == b'{"a":"\\u00e9","b":[1,2.5]}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    files = {"encoder.onnx": {"bytes": 10}, "decoder.onnx": {"bytes": "20"}, "tables.npz": {"bytes": 5},
             "allocator.npz": {"bytes": 1000}, "decoder.int8.onnx": {"bytes": 1000}}
    assert parameter_bytes({"files": files}) == 35
    assert default_bundle_path().parts[-2:] == ("models", "default") and (default_bundle_path() / "manifest.json").is_file()


def test_decoder_feed_with_and_without_the_codebook_map():
    import numpy as np

    from escmvq.core.pvq import codebook_map
    from escmvq.runtime.bundle import decoder_feed

    zq = np.arange(24, dtype=np.float64).reshape(2, 2, 2, 3).transpose(0, 3, 1, 2)  # [b=2, D=3, h=2, w=2], strided
    plain = decoder_feed(zq, 0, 2, cond=False)
    assert list(plain) == ["z"] and plain["z"].dtype == np.float32 and plain["z"].flags.c_contiguous
    np.testing.assert_array_equal(plain["z"], zq)
    cbs = np.array([[0, 2, 1, 2], [1, 1, 0, 2]])
    feed = decoder_feed(zq, cbs, 2, cond=True)
    assert sorted(feed) == ["cond", "z"] and feed["cond"].shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(feed["cond"], codebook_map(cbs, 2, 2, 2))
    np.testing.assert_array_equal(decoder_feed(zq, 1, 2, cond=True)["cond"], codebook_map(np.ones((2, 4), int), 2, 2, 2))


def test_loaded_tables_are_the_files_in_their_dtypes(bundle_dir):
    import numpy as np

    b = load_bundle(bundle_dir)
    with np.load(bundle_dir / "tables.npz") as t, np.load(bundle_dir / "allocator.npz") as a:
        for name, dtype in (("codebooks", np.float32), ("mu", np.float32), ("distortion", np.float64),
                            ("label_prior", np.float32), ("latent_mean", np.float32), ("erasure_distortion", np.float64)):
            got = getattr(b, name)
            if name in t.files:
                assert got.dtype == dtype, name
                np.testing.assert_array_equal(got, t[name].astype(dtype), err_msg=name)
            else:
                assert got is None, name
        assert sorted(b.allocator_state) == sorted(a.files)


def test_optional_statistics_are_loaded_and_checked(copy):
    import numpy as np

    m = _manifest(copy)["model"]
    V, K, D, N = (int(m[k]) for k in ("V", "K", "D", "N"))
    with np.load(copy / "tables.npz") as t:
        tables = dict(t)
    rng = np.random.default_rng(0)
    stats = {"label_prior": rng.dirichlet(np.ones(K), (V, N)), "latent_mean": rng.standard_normal((N, D)),
             "erasure_distortion": rng.uniform(1, 2, N).astype(np.float32)}
    np.savez(copy / "tables.npz", **tables, **stats)
    b = load_bundle(copy, verify=False)  # the sha256 no longer matches: checked elsewhere
    for name, want in stats.items():
        got = getattr(b, name)
        assert got.dtype == (np.float64 if name == "erasure_distortion" else np.float32), name
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=name)
    for bad in (np.full((N, D), np.nan), np.zeros((N, D + 1))):
        np.savez(copy / "tables.npz", **tables, latent_mean=bad)
        with pytest.raises(BundleError, match=rf"^{re.escape(str(copy))}: tables.npz latent_mean has shape \({bad.shape[0]}, {bad.shape[1]}\) "
                                              rf"\(expected \({N}, {D}\)\) or non-finite values$"):
            load_bundle(copy, verify=False)


def test_each_manifest_and_table_problem_has_its_message(copy):
    import numpy as np

    from escmvq.runtime.bundle import default_bundle_path

    p = str(copy)
    good = _manifest(copy)
    with np.load(copy / "tables.npz") as t:
        tables = dict(t)
    m = good["model"]
    V, N = int(m["V"]), int(m["N"])
    cases = [  # (manifest, tables, message after "<path>: ")
        ([1, 2], None, "not an escmvq-bundle manifest"),
        ({**good, "format": "other"}, None, "not an escmvq-bundle manifest"),
        ({**good, "files": ["encoder.onnx"]}, None, r"manifest lacks required files \("),
        ({**good, "files": {k: v for k, v in good["files"].items() if k != "allocator.npz"}}, None,
         r"manifest lacks required files \("),
        (good, {**tables, "distortion": np.zeros((V, N + 1))}, "tables.npz shapes disagree with the manifest"),
        (good, {**tables, "mu": tables["mu"][:, :-1]}, "tables.npz shapes disagree with the manifest"),
        (good, {**tables, "codebooks": tables["codebooks"][:, :-1]}, "tables.npz shapes disagree with the manifest"),
        (good, {**tables, "evil": np.array([{}], dtype=object)}, r"unreadable tables \("),  # no pickles
    ]
    for manifest, tabs, msg in cases:
        (copy / "manifest.json").write_text(json.dumps(manifest))
        np.savez(copy / "tables.npz", **(tabs if tabs is not None else tables))
        with pytest.raises(BundleError, match=rf"^{re.escape(p)}: {msg}"):
            load_bundle(copy, verify=False)
    (copy / "manifest.json").write_text(json.dumps(good))
    np.savez(copy / "tables.npz", **tables)
    b = load_bundle(copy, verify=False)
    assert b.file("tables.npz") == copy / "tables.npz"
    (copy / "manifest.json").write_text(json.dumps({**good, "files": {**good["files"], "tables.npz": {"bytes": 1}}}))
    with pytest.raises(BundleError, match=rf"^{re.escape(p)}: tables.npz has \d+ bytes, manifest says 1 \(corrupt"):
        load_bundle(copy)
    with pytest.raises(BundleError, match=r": not a bundle \(no manifest.json\)$"):
        load_bundle(copy / "nowhere")
    assert load_bundle(None, verify=False).path == default_bundle_path()
