"""Export: the bundle's contents, the ONNX graphs, the self-check and its failure, int8,
and the TensorRT path up to the call into TensorRT."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from escmvq.export.testing import CIFAR_TEST, KODAK, tiny_checkpoint  # noqa: E402
from escmvq.runtime.backends import make_session  # noqa: E402
from escmvq.runtime.bundle import load_bundle, sha256_file  # noqa: E402


def test_manifest_describes_every_file(bundle_dir):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["format"] == "escmvq-bundle" and m["format_version"] == 1
    names = set(m["files"])
    assert {"encoder.onnx", "decoder.onnx", "tables.npz", "allocator.npz", "encoder.int8.onnx", "decoder.int8.onnx"} <= names
    assert names == {p.name for p in bundle_dir.iterdir()} - {"manifest.json"}
    for name, meta in m["files"].items():
        assert meta["sha256"] == sha256_file(bundle_dir / name)
        assert meta["bytes"] == (bundle_dir / name).stat().st_size
    mod = m["model"]
    assert (mod["V"], mod["K"], mod["D"], mod["N"], mod["B"], mod["T"]) == (5, 512, 4, 64, 9, 144)
    assert mod["tile_size"] == [32, 32] and mod["latent_shape"] == [4, 8, 8]
    for lib in ("numpy", "onnx", "onnxruntime", "torch", "python"):
        assert lib in m["versions"]
    assert all(r["ok"] for r in m["self_check"]["rows"]) and len(m["self_check"]["rows"]) == 2 + 2 * 5
    assert m["int8"]["psnr_cost_db"] == pytest.approx(m["int8"]["psnr_fp32_db"] - m["int8"]["psnr_int8_db"])


def test_tables_match_checkpoint(bundle_dir):
    import torch

    ckpt = torch.load(bundle_dir.parent / "tiny.ckpt", weights_only=True)
    b = load_bundle(bundle_dir)
    assert np.array_equal(b.codebooks, np.asarray(ckpt["codebooks"]))
    assert np.array_equal(b.mu, np.asarray(ckpt["mu"]))
    assert b.distortion.shape == (5, 64) and np.all(b.distortion > 0)
    # distortion grows with mu (30): wherever codebook v+1 flips bits more often than v
    # (the untrained tiny model's codebooks 1-3 share mu = mu_init), its expected distortion is larger
    grows = 0
    for v in range(4):
        if np.all(b.mu[v + 1] > b.mu[v]):
            grows += 1
            assert b.distortion[v + 1].mean() > b.distortion[v].mean()
            assert np.mean(b.distortion[v + 1] > b.distortion[v]) >= 0.9
    assert grows >= 2
    # the stored allocator is the one the tables and the manifest's settings give
    from escmvq.core.alloc import Allocator
    from escmvq.runtime.bundle import manifest_hash

    spec = b.model["allocator"]
    assert set(spec) <= {"method", "variant"}, f"new allocator settings {spec}: extend this check"
    fresh = Allocator(b.distortion, b.mu, rate=b.rate, method=spec["method"], variant=spec["variant"],
                      m_max=int(b.model.get("m_max", 8)))
    assert b.allocator.n_states == fresh.n_states == 4 * 64 + 1
    for p_tot, gamma in ((1e-3, 1.0), (576 * 10.0, 0.7), (576 * 10.0, 3.0), (1e9, 1.0)):
        assert b.allocator.plan(p_tot, gamma).digest() == fresh.plan(p_tot, gamma).digest()
    assert b.hash == manifest_hash(json.loads((bundle_dir / "manifest.json").read_text()))


@pytest.mark.parametrize("name", ["encoder.onnx", "decoder.onnx", "encoder.int8.onnx", "decoder.int8.onnx"])
def test_onnx_opset_types_and_dynamic_axes(bundle_dir, name):
    model = onnx.load(str(bundle_dir / name))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] <= 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[0] == "batch" and isinstance(dims[2], str) and isinstance(dims[3], str)
    for vi in list(model.graph.input) + list(model.graph.output):
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_onnx_runs_other_batch_and_size_like_torch(bundle_dir):
    import torch

    from escmvq.training.checkpoint import load_checkpoint

    model, _ = load_checkpoint(bundle_dir.parent / "tiny.ckpt")
    x = np.random.default_rng(0).random((5, 3, 48, 64), dtype=np.float32)
    z = make_session(bundle_dir / "encoder.onnx").run(None, {"x01": x})[0]
    assert z.shape == (5, 4, 12, 16)
    with torch.no_grad():
        ref = model.encoder(torch.from_numpy((x - 0.5) / 0.5)).numpy()
    assert np.max(np.abs(z - ref)) < 1e-4
    xh = make_session(bundle_dir / "decoder.onnx").run(None, {"z": z})[0]
    with torch.no_grad():
        ref = model.decoder(torch.from_numpy(z)).numpy() * 0.5 + 0.5
    assert xh.shape == (5, 3, 48, 64) and np.max(np.abs(xh - ref)) < 1e-4


def test_self_check_mismatch_fails_and_leaves_nothing(tmp_path, bundle_dir, monkeypatch):
    from escmvq.export import verify
    from escmvq.export.pipeline import ExportError, export_checkpoint

    monkeypatch.setattr(verify, "ATOL", -1.0)  # every diff row now "mismatches"
    out = tmp_path / "bad.escmvq"
    with pytest.raises(ExportError, match="self-check failed"):
        export_checkpoint(bundle_dir.parent / "tiny.ckpt", out, CIFAR_TEST if CIFAR_TEST.exists() else KODAK,
                          n_calib=8, n_check=8, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_existing_output(tmp_path, bundle_dir):
    from escmvq.export.pipeline import export_checkpoint

    (tmp_path / "x.escmvq").mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        export_checkpoint(bundle_dir.parent / "tiny.ckpt", tmp_path / "x.escmvq", KODAK, log=lambda m: None)


def test_tensorrt_absent_is_one_line(monkeypatch):
    from escmvq.export import tensorrt as trtmod

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(trtmod.TensorRTUnavailable) as e:
        trtmod.import_tensorrt()
    assert "\n" not in str(e.value) and "JetPack" in str(e.value)


def test_tensorrt_build_calls_documented_api(tmp_path, monkeypatch, bundle_dir):
    """A recording stand-in for the tensorrt module: the builder path up to the call into
    TensorRT (parse the ONNX, FP16 flag, optimisation profile, serialise)."""
    calls = []

    class Rec:
        def __init__(self, name):
            self._name = name

        def __getattr__(self, attr):
            def f(*a, **k):
                calls.append((f"{self._name}.{attr}", a))
                if attr == "parse":
                    return True
                if attr == "build_serialized_network":
                    return b"ENGINE"
                return Rec(attr)
            return f

    class Builder(Rec):
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            super().__init__("builder")

    class Parser(Rec):
        num_errors = 0

        def __init__(self, network, logger):
            super().__init__("parser")

    fake = types.SimpleNamespace(
        __version__="8.6.2", Logger=type("L", (), {"WARNING": 2, "__init__": lambda self, lvl: None}),
        Builder=Builder, OnnxParser=Parser,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="ws"), BuilderFlag=types.SimpleNamespace(FP16="fp16"),
    )
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    from escmvq.export.tensorrt import build_engine

    info = build_engine(bundle_dir / "encoder.onnx", tmp_path / "e.engine", "x01", (1, 3, 32, 32), (1, 3, 32, 32),
                        (64, 3, 32, 32))
    assert (tmp_path / "e.engine").read_bytes() == b"ENGINE"
    names = [c[0] for c in calls]
    assert "parser.parse" in names and ("create_builder_config.set_flag", ("fp16",)) in calls
    assert ("create_optimization_profile.set_shape", ("x01", (1, 3, 32, 32), (1, 3, 32, 32), (64, 3, 32, 32))) in calls
    assert info["fp16"] is True and info["tensorrt"] == "8.6.2"


def test_tiny_checkpoint_is_reused(tmp_path):
    p = tiny_checkpoint(tmp_path / "t.ckpt")
    mtime = p.stat().st_mtime_ns
    assert tiny_checkpoint(p).stat().st_mtime_ns == mtime


def test_label_mismatch_counts_only_what_float_error_cannot_explain():
    """A latent half-way between two codewords may land on either side after a 1e-6 shift
    (a near-tie, allowed); a latent clearly nearer one codeword may not."""
    from escmvq.export.verify import unexplained_label_mismatches

    cb = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    zs = np.array([[[0.5, 0.0], [0.1, 0.0], [0.0, 0.9]]], np.float32)  # [1, 3, D=2]
    ref = np.array([[0, 0, 2]])
    assert unexplained_label_mismatches(zs, cb, ref, ref, 1e-6) == 0
    tie = np.array([[1, 0, 2]])  # 0.5 is equidistant from codewords 0 and 1
    assert unexplained_label_mismatches(zs, cb, ref, tie, 1e-6) == 0
    wrong = np.array([[0, 1, 0]])  # 0.1 -> 1 and 0.9 -> 0 are real errors
    assert unexplained_label_mismatches(zs, cb, ref, wrong, 1e-6) == 2
    assert unexplained_label_mismatches(zs, cb, ref, wrong, 0.5) == 0  # a shift of 0.5 explains them
