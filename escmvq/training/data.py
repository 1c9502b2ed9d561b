"""Dataset loaders (no downloads). Every loader returns an :class:`ImageSet` of uint8
``[n, H, W, 3]`` arrays for the train and test splits.

Formats:
- ``cifar10``: the python pickle batches (``data_batch_1..5``, ``test_batch``), in DIR or
  ``DIR/cifar-10-batches-py``; or the packed JPEG arrays ``train.npz``/``test.npz`` of
  ``shared/data/cifar10`` (keys ``jpeg``, ``offsets``), or npz files with an ``images`` key.
- ``cifar100``: the python pickle files ``train`` and ``test`` (DIR or ``DIR/cifar-100-python``).
- ``stl10``: the binaries ``train_X.bin``/``test_X.bin`` (DIR or ``DIR/stl10_binary``), 96x96.
- ``folder``: any folder of images (png/jpg/bmp/ppm/tif/webp, searched recursively); every
  image is cut into non-overlapping ``tile x tile`` crops. ``DIR/train`` and ``DIR/test``
  are used when present, otherwise every tenth image goes to the test split.
- ``npz``: ``train.npz``/``test.npz`` in either npz layout above.

A missing dataset raises :class:`DatasetMissing` whose message is one line saying what is
missing and where to put it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from escmvq.io.jpeg_pack import decode_jpeg_pack
from escmvq.io.paths import DataRootError, data_root

__all__ = ["ImageSet", "DatasetMissing", "load_dataset", "DATASETS", "decode_npz"]

DATASETS = ("cifar10", "cifar100", "stl10", "folder", "npz")
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}


class DatasetMissing(FileNotFoundError):
    """The dataset is not where it was looked for (message: one line)."""


@dataclass
class ImageSet:
    name: str
    train: np.ndarray  # uint8 [n, H, W, 3]
    test: np.ndarray  # uint8 [m, H, W, 3]

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.shape[1]), int(self.train.shape[2])

    def normalisation(self) -> dict:
        x = self.train.reshape(-1, 3).astype(np.float64) / 255.0
        return {"mean": [float(v) for v in x.mean(0)], "std": [float(v) for v in x.std(0)]}


def _first_dir(root: Path, names: list[str], sub: str) -> Path | None:
    for d in (root, root / sub):
        if all((d / n).is_file() for n in names):
            return d
    return None


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _pickle_images(d: dict) -> np.ndarray:
    data = np.asarray(d[b"data"] if b"data" in d else d["data"], dtype=np.uint8)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def decode_npz(path: Path, limit: int | None = None) -> np.ndarray:
    """uint8 ``[n, H, W, 3]`` from an npz with ``images`` or with ``jpeg`` + ``offsets``."""
    with np.load(path) as z:
        if "images" in z.files:
            return np.ascontiguousarray(z["images"][:limit].astype(np.uint8))
        if "jpeg" not in z.files or "offsets" not in z.files:
            raise DatasetMissing(f"{path}: npz needs an 'images' array or 'jpeg'+'offsets' arrays")
        jpeg, off = z["jpeg"], z["offsets"]
    n = len(off) - 1 if limit is None else min(limit, len(off) - 1)
    return decode_jpeg_pack(jpeg, off, range(n))


def _load_cifar10(root: Path, limit: int | None) -> ImageSet:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    d = _first_dir(root, names, "cifar-10-batches-py")
    if d is not None:
        train = np.concatenate([_pickle_images(_unpickle(d / n)) for n in names[:5]])
        test = _pickle_images(_unpickle(d / "test_batch"))
        return ImageSet("cifar10", train, test)
    if (root / "train.npz").is_file() and (root / "test.npz").is_file():
        return _load_npz(root, "cifar10", limit)
    raise DatasetMissing(
        f"CIFAR-10 not found in {root}: put the python batches (data_batch_1..5, test_batch from "
        f"cifar-10-python.tar.gz) or train.npz/test.npz there"
    )


def _load_cifar100(root: Path, limit: int | None) -> ImageSet:
    d = _first_dir(root, ["train", "test"], "cifar-100-python")
    if d is None:
        raise DatasetMissing(
            f"CIFAR-100 not found in {root}: put the python files 'train' and 'test' "
            f"(from cifar-100-python.tar.gz) there or in {root / 'cifar-100-python'}"
        )
    return ImageSet("cifar100", _pickle_images(_unpickle(d / "train")), _pickle_images(_unpickle(d / "test")))


def _stl_read(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise DatasetMissing(f"{path}: size {raw.size} is not a whole number of 96x96x3 images")
    # STL-10 binaries are column-major per image: [n, 3, W, H]
    return np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))


def _load_stl10(root: Path, limit: int | None) -> ImageSet:
    d = _first_dir(root, ["train_X.bin", "test_X.bin"], "stl10_binary")
    if d is None:
        raise DatasetMissing(
            f"STL-10 not found in {root}: put train_X.bin and test_X.bin (from stl10_binary.tar.gz) "
            f"there or in {root / 'stl10_binary'}"
        )
    return ImageSet("stl10", _stl_read(d / "train_X.bin"), _stl_read(d / "test_X.bin"))


def _tiles(paths: list[Path], tile: int) -> np.ndarray:
    from PIL import Image

    out = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = (a.shape[0] // tile) * tile, (a.shape[1] // tile) * tile
        if h == 0 or w == 0:
            continue
        a = a[:h, :w].reshape(h // tile, tile, w // tile, tile, 3).transpose(0, 2, 1, 3, 4)
        out.append(a.reshape(-1, tile, tile, 3))
    if not out:
        return np.zeros((0, tile, tile, 3), np.uint8)
    return np.ascontiguousarray(np.concatenate(out))


def _images_in(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXT and p.is_file())


def _load_folder(root: Path, limit: int | None, tile: int = 32) -> ImageSet:
    if (root / "train").is_dir() and (root / "test").is_dir():
        tr, te = _images_in(root / "train"), _images_in(root / "test")
    else:
        allp = _images_in(root) if root.is_dir() else []
        tr = [p for i, p in enumerate(allp) if i % 10 != 9]
        te = [p for i, p in enumerate(allp) if i % 10 == 9] or tr[-1:]
    if not tr:
        raise DatasetMissing(f"no images (png/jpg/...) found in {root}: put image files there (or in train/ and test/)")
    train, test = _tiles(tr, tile), _tiles(te, tile)
    if len(train) == 0:
        raise DatasetMissing(f"images in {root} are smaller than the {tile}x{tile} tile")
    return ImageSet(f"folder:{root.name}", train, test)


def _load_npz(root: Path, name: str = "npz", limit: int | None = None) -> ImageSet:
    tr, te = root / "train.npz", root / "test.npz"
    if not (tr.is_file() and te.is_file()):
        raise DatasetMissing(f"train.npz/test.npz not found in {root}: put both files there")
    return ImageSet(name, decode_npz(tr, limit), decode_npz(te, limit))


def load_dataset(name: str, data_dir=None, limit: int | None = None, tile: int = 32) -> ImageSet:
    """Load ``name`` from ``data_dir``; ``limit`` keeps the first ``limit`` images of each split.

    Without ``data_dir``: ``<data folder>/<name>``, the data folder from ``$ESCMVQ_DATA``
    (:func:`escmvq.io.paths.data_root`)."""
    if data_dir is None:
        try:
            data_dir = data_root() / name
        except DataRootError as e:
            raise DatasetMissing(str(e)) from None
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetMissing(f"data directory {root} does not exist: create it and put the {name} files there")
    if name == "cifar10":
        ds = _load_cifar10(root, limit)
    elif name == "cifar100":
        ds = _load_cifar100(root, limit)
    elif name == "stl10":
        ds = _load_stl10(root, limit)
    elif name == "folder":
        ds = _load_folder(root, limit, tile)
    elif name == "npz":
        ds = _load_npz(root, "npz", limit)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if limit is not None:
        ds = ImageSet(ds.name, ds.train[:limit], ds.test[:limit])
    return ds
