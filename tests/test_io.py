"""escmvq.io (data folder, JPEG packs, atomic figures), escmvq.core.metrics (PSNR) and the
bundle's graph file names: the one home of each, and the callers that now use it."""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from escmvq.core.metrics import PSNR_CAP, psnr, psnr_batch
from escmvq.io import paths
from escmvq.io.figures import mu_cdf, save_figure
from escmvq.io.jpeg_pack import JpegPackError, decode_jpeg_pack
from escmvq.io.paths import ENV_VAR, DataRootError, data_root
from escmvq.runtime.bundle import REQUIRED_FILES, graph_file


def _pack(images, quality=90):
    """``(jpeg, offsets)`` of uint8 images encoded back to back, as the shared CIFAR files."""
    blobs = []
    for a in images:
        b = io.BytesIO()
        Image.fromarray(a).save(b, format="JPEG", quality=quality)
        blobs.append(b.getvalue())
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in blobs])]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def _decoded(jpeg, offsets, i):
    return np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))


# --- data folder -------------------------------------------------------------------


def test_data_root_option_then_environment_then_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert data_root(tmp_path / "opt") == tmp_path / "opt"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(paths, "checkout_data_dir", lambda: tmp_path)
    assert data_root() == tmp_path  # the checkout's folder, because it exists
    monkeypatch.setattr(paths, "checkout_data_dir", lambda: tmp_path / "absent")
    with pytest.raises(DataRootError) as e:
        data_root(option="--data")
    msg = str(e.value)
    assert "\n" not in msg and "--data DIR" in msg and ENV_VAR in msg
    monkeypatch.setenv(ENV_VAR, "  ")  # blank: as if unset
    with pytest.raises(DataRootError):
        data_root()


def test_eval_and_training_loaders_read_the_environment(tmp_path, monkeypatch):
    from escmvq.eval.datasets import DatasetError, load_cifar10_test

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    jpeg, off = _pack(imgs)
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "test.npz", jpeg=jpeg, offsets=off, labels=np.arange(4))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    got = load_cifar10_test(3, start=1)
    np.testing.assert_array_equal(got, np.stack([_decoded(jpeg, off, i) for i in (1, 2, 3)]))
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(paths, "checkout_data_dir", lambda: tmp_path / "absent")
    with pytest.raises(DatasetError, match=ENV_VAR):
        load_cifar10_test(1)


def test_training_load_dataset_without_a_folder(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from escmvq.training.data import DatasetMissing, load_dataset

    imgs = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "npz").mkdir()
    for split in ("train", "test"):
        np.savez(tmp_path / "npz" / f"{split}.npz", images=imgs)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    np.testing.assert_array_equal(load_dataset("npz").train, imgs)
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(paths, "checkout_data_dir", lambda: tmp_path / "absent")
    with pytest.raises(DatasetMissing, match=ENV_VAR):
        load_dataset("cifar10")


# --- JPEG packs --------------------------------------------------------------------


def test_decode_jpeg_pack_is_pillow_per_image():
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (5, 8, 12, 3), dtype=np.uint8)
    jpeg, off = _pack(imgs)
    want = np.stack([_decoded(jpeg, off, i) for i in range(5)])
    out = decode_jpeg_pack(jpeg, off)
    assert out.dtype == np.uint8 and out.shape == (5, 8, 12, 3)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(decode_jpeg_pack(jpeg, off, [4, 0, 4]), want[[4, 0, 4]])
    assert decode_jpeg_pack(jpeg, off, []).shape == (0, 0, 0, 3)


def test_decode_jpeg_pack_errors_name_the_image():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.zeros((16, 8, 3), np.uint8)
    jpeg, off = _pack([a, b])
    with pytest.raises(JpegPackError, match="image 1 decodes to shape"):
        decode_jpeg_pack(jpeg, off)
    with pytest.raises(JpegPackError, match="image 0 decodes to shape"):
        decode_jpeg_pack(jpeg, off, [0], shape=(32, 32, 3))
    with pytest.raises(JpegPackError, match="image 2 asked for, the pack holds 2"):
        decode_jpeg_pack(jpeg, off, [2])
    with pytest.raises(JpegPackError, match="image -1"):
        decode_jpeg_pack(jpeg, off, [-1])


def test_training_and_calibration_decode_packs_alike(tmp_path):
    from escmvq.export.calibration import load_calibration

    imgs = np.random.default_rng(3).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    jpeg, off = _pack(imgs)
    path = tmp_path / "c.npz"
    np.savez(path, jpeg=jpeg, offsets=off)
    want = decode_jpeg_pack(jpeg, off)
    tiles = load_calibration(path, (32, 32), 6, np.random.default_rng(0))
    np.testing.assert_array_equal(np.rint(tiles * 255).astype(np.uint8).transpose(0, 2, 3, 1), want)
    pytest.importorskip("torch")
    from escmvq.training.data import decode_npz

    np.testing.assert_array_equal(decode_npz(path, limit=4), want[:4])


# --- PSNR --------------------------------------------------------------------------


def test_psnr_single_and_batch_agree_bit_for_bit():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    batch = psnr_batch(a, b)
    assert batch.dtype == np.float64 and batch.shape == (7,)
    assert [psnr(x, y) for x, y in zip(a, b)] == list(batch)
    mse = np.mean((a[0].astype(float) - b[0].astype(float)) ** 2)
    assert psnr(a[0], b[0]) == 10 * np.log10(255.0**2 / mse)
    assert psnr(a, a) == float("inf")
    assert psnr_batch(a[:2], a[:2]).tolist() == [PSNR_CAP, PSNR_CAP]
    assert psnr(np.zeros(4), np.full(4, 0.5), 1.0) == pytest.approx(10 * np.log10(4))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_batch(a, b[:3])


def test_psnr_chunks_large_uint8_images_exactly():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (1500, 1000, 3), dtype=np.uint8)  # several chunks of rows
    b = rng.integers(0, 256, a.shape, dtype=np.uint8)
    d = a.astype(np.int64) - b
    assert psnr(a, b) == 10.0 * np.log10(255.0**2 / (int(np.sum(d * d)) / a.size))


def test_psnr_of_mixed_dtypes_narrow_rows_and_2d_batches():
    # non-integer differences: exact float64 whatever the mix of dtypes (no integer truncation)
    x, zero8 = np.full(4, 0.3), np.zeros(4, np.uint8)
    want = 10 * np.log10(1 / 0.09)  # MAX = 1, MSE = 0.3^2
    for a, b in ((x, zero8), (zero8, x), (np.full(4, 0.7), np.full(4, 0.4))):
        assert psnr(a, b, 1.0) == pytest.approx(want)
    # uint8 rows narrower than 8 values, and a single row, on the integer path
    rng = np.random.default_rng(6)
    for shape in ((5, 3), (1, 40)):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        b = rng.integers(0, 256, shape, dtype=np.uint8)
        assert psnr(a, b) == psnr(a.astype(np.float64), b.astype(np.float64))
    # any [n, ...] batch, 2-D included; identical images cap without a divide warning
    a = rng.integers(0, 256, (3, 10), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr_batch(a, a).tolist() == [PSNR_CAP] * 3
    with pytest.raises(ValueError, match=r"^psnr_batch: expected \[n, ...\] arrays, got shape \(3,\)$"):
        psnr_batch(a[0, :3], a[0, :3])


# --- figures -----------------------------------------------------------------------


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and zlib.crc32(data[12:16 + length]) == struct.unpack(">I", data[16 + length:20 + length])[0]
    return struct.unpack(">II", data[16:24])


def test_mu_cdf_writes_a_png_and_checks_its_input(tmp_path):
    pytest.importorskip("matplotlib")
    mu = np.random.default_rng(6).uniform(1e-4, 0.5, (3, 8, 9))
    out = mu_cdf(mu, tmp_path / "f3.png", mu_min=[1e-4, 1e-3, 1e-2])
    assert out == tmp_path / "f3.png" and _png_size(out) == (720, 480)
    mu_cdf(mu, out, title="again")  # replaces the file
    with pytest.raises(ValueError, match="V, N, B"):
        mu_cdf(mu[0], tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        mu_cdf(mu, tmp_path / "missing" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f3.png"]  # no partial files


def test_save_figure_leaves_nothing_when_saving_fails(tmp_path):
    pytest.importorskip("matplotlib")
    from escmvq.io.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == [] and not plt.fignum_exists(fig.number)


def test_training_report_plot_creates_its_folder(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from escmvq.training.report import plot_mu_cdf

    out = plot_mu_cdf(np.full((2, 4, 3), 0.01), tmp_path / "new" / "mu.png", mu_min=[0.001, 0.01])
    assert out.is_file() and _png_size(out) == (720, 480)


# --- graph file names --------------------------------------------------------------


def test_graph_file_names():
    assert graph_file("encoder") == "encoder.onnx"
    assert graph_file("decoder", "int8") == "decoder.int8.onnx"
    assert graph_file("encoder", "fp16", engine=True) == "encoder.fp16.engine"
    assert REQUIRED_FILES[:2] == ("encoder.onnx", "decoder.onnx")
    with pytest.raises(ValueError, match="part"):
        graph_file("middle")
    with pytest.raises(ValueError, match="fp16"):
        graph_file("encoder", "int8", engine=True)


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from escmvq.training import checkpoint
    from escmvq.training.model import ESCMVQ
    from escmvq.training.presets import get_preset

    model = ESCMVQ(get_preset("tiny"))
    p = checkpoint.save_checkpoint(tmp_path / "a.ckpt", model, model.preset, epoch=1)
    before = p.read_bytes()
    stripped = checkpoint.strip_checkpoint(p, tmp_path / "out" / "s.ckpt")
    assert stripped.is_file() and checkpoint.load_checkpoint(stripped)[1]["epoch"] == 1

    def broken(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(p, model, model.preset, epoch=2)
    assert p.read_bytes() == before  # the old checkpoint survives, no partial file beside it
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.ckpt", "out"]


def test_provenance_stamp_and_environment():
    import datetime as dt
    import importlib.metadata as md

    from escmvq.io import provenance

    st = provenance.stamp("escmvq-test", 3)
    assert (st["format"], st["version"]) == ("escmvq-test", 3)
    t = dt.datetime.fromisoformat(st["created_utc"])
    assert t.utcoffset() == dt.timedelta(0) and abs((dt.datetime.now(dt.timezone.utc) - t).total_seconds()) < 60
    env = st["environment"]
    assert env["numpy"] == md.version("numpy") and env["python"].count(".") == 2 and env["cpu_count"] >= 1
    assert provenance.package_version("no-such-distribution-escmvq") is None


def test_export_defaults_follow_the_data_folder(tmp_path, monkeypatch):
    from escmvq.cli.export import default_calibration, default_stats

    monkeypatch.delenv("ESCMVQ_CALIB", raising=False)
    monkeypatch.delenv("ESCMVQ_STATS", raising=False)
    monkeypatch.setenv("ESCMVQ_DATA", str(tmp_path))
    assert default_calibration() is None and default_stats() is None
    (tmp_path / "kodak").mkdir()
    assert default_calibration() == tmp_path / "kodak"
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "test.npz").write_bytes(b"")
    (tmp_path / "cifar10" / "train.npz").write_bytes(b"")
    assert default_calibration() == tmp_path / "cifar10" / "test.npz"
    assert default_stats() == tmp_path / "cifar10" / "train.npz"
    monkeypatch.setenv("ESCMVQ_STATS", str(tmp_path / "x.npz"))
    assert default_stats() == tmp_path / "x.npz"
