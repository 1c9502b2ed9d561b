"""Loaders: CIFAR-10/100 pickles, STL-10 binaries, image folders, npz; missing-data errors."""
import io
import pickle

import numpy as np
import pytest
from PIL import Image

from escmvq.export.testing import CIFAR_TEST
from escmvq.training.data import DatasetMissing, decode_npz, load_dataset

SHARED = CIFAR_TEST.parent


def _cifar_rows(n, seed):
    g = np.random.default_rng(seed)
    imgs = g.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return imgs, imgs.transpose(0, 3, 1, 2).reshape(n, 3072)


def _dump(path, d):
    with open(path, "wb") as f:
        pickle.dump(d, f)


def test_cifar10_pickle_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    ref = []
    for i in range(1, 6):
        imgs, rows = _cifar_rows(3, i)
        ref.append(imgs)
        _dump(d / f"data_batch_{i}", {b"data": rows, b"labels": [0, 1, 2]})
    timgs, trows = _cifar_rows(2, 9)
    _dump(d / "test_batch", {b"data": trows, b"labels": [0, 1]})
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train.shape == (15, 32, 32, 3) and ds.test.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(ds.train, np.concatenate(ref))
    np.testing.assert_array_equal(ds.test, timgs)
    assert ds.image_size == (32, 32)


def test_cifar100_pickles(tmp_path):
    imgs, rows = _cifar_rows(4, 1)
    _dump(tmp_path / "train", {b"data": rows, b"fine_labels": [0] * 4})
    _dump(tmp_path / "test", {b"data": rows[:1], b"fine_labels": [0]})
    ds = load_dataset("cifar100", tmp_path)
    np.testing.assert_array_equal(ds.train, imgs)
    assert ds.test.shape == (1, 32, 32, 3)


def test_stl10_binaries_are_column_major(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    g = np.random.default_rng(0)
    imgs = g.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)  # HWC
    # on disk: per image, channel planes stored column-major, i.e. [3, W, H]
    imgs.transpose(0, 3, 2, 1).tofile(d / "train_X.bin")
    imgs[:1].transpose(0, 3, 2, 1).tofile(d / "test_X.bin")
    ds = load_dataset("stl10", tmp_path)
    np.testing.assert_array_equal(ds.train, imgs)
    assert ds.image_size == (96, 96)


def test_image_folder_is_tiled(tmp_path):
    for i in range(10):
        Image.fromarray(np.full((64, 96, 3), i * 20, np.uint8)).save(tmp_path / f"im{i}.png")
    ds = load_dataset("folder", tmp_path, tile=32)
    assert ds.train.shape == (9 * 6, 32, 32, 3) and ds.test.shape == (6, 32, 32, 3)
    assert int(ds.test[0, 0, 0, 0]) == 180  # every tenth image is a test image


def test_npz_jpeg_and_images_layouts(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    blobs = []
    for a in imgs:
        b = io.BytesIO()
        Image.fromarray(a).save(b, format="JPEG", quality=95)
        blobs.append(np.frombuffer(b.getvalue(), np.uint8))
    off = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    np.savez(tmp_path / "train.npz", jpeg=np.concatenate(blobs), offsets=off, labels=np.zeros(3))
    np.savez(tmp_path / "test.npz", images=imgs[:2])
    ds = load_dataset("npz", tmp_path)
    assert ds.train.shape == (3, 32, 32, 3)
    for a, b in zip(ds.train, blobs):  # exactly the decoded JPEG bytes, in order
        np.testing.assert_array_equal(a, np.asarray(Image.open(io.BytesIO(b.tobytes())).convert("RGB")))
    np.testing.assert_array_equal(ds.test, imgs[:2])
    assert decode_npz(tmp_path / "train.npz", limit=1).shape == (1, 32, 32, 3)
    # cifar10 also accepts the npz layout
    assert load_dataset("cifar10", tmp_path, limit=2).train.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "folder", "npz"])
def test_missing_dataset_is_one_line(tmp_path, name):
    with pytest.raises(DatasetMissing) as e:
        load_dataset(name, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg


def test_missing_directory_and_unknown_name(tmp_path):
    with pytest.raises(DatasetMissing, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", tmp_path)


@pytest.mark.skipif(not (SHARED / "test.npz").is_file(), reason="shared CIFAR-10 npz not present")
def test_shared_cifar10_npz():
    ds = load_dataset("cifar10", SHARED, limit=20)
    assert ds.train.shape == (20, 32, 32, 3) and ds.train.dtype == np.uint8
    m = ds.train.reshape(-1, 3).mean(0) / 255
    assert 0.3 < m.mean() < 0.6
