"""Evaluation images, torch-free (numpy + Pillow): CIFAR-10 test and Kodak tiles.

``escmvq.training.data`` imports torch; the evaluation runs on the torch-free runtime,
so this module reads the shared files itself. Layout (see ``shared/data/README.md``):

- ``<data>/cifar10/test.npz``: the 10,000 test JPEG files back to back (``jpeg``, ``offsets``,
  ``labels``); class-interleaved, so the first ``n`` images are class-balanced.
- ``<data>/kodak/kodim01.png .. kodim24.png``: cut into non-overlapping tiles of the
  model's tile size in raster order (partial tiles at the right/bottom edge dropped).

``<data>`` is the ``data_dir`` given (the CLI's ``--data-dir``), else ``$ESCMVQ_DATA``,
else ``<repo>/../shared/data`` when it exists (:func:`escmvq.io.paths.data_root`); a
``data_dir`` may also point straight at the ``cifar10``/``kodak`` folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from escmvq.core.vocab import EVAL_DATASETS
from escmvq.io.jpeg_pack import JpegPackError, decode_jpeg_pack
from escmvq.io.paths import DataRootError, checkout_data_dir, data_root

__all__ = ["DatasetError", "DATASETS", "default_data_dir", "load_cifar10_test", "load_kodak_tiles", "load_images"]

DATASETS = EVAL_DATASETS


class DatasetError(ValueError):
    """Evaluation data that cannot be found or read: one line, fit for a user."""


def default_data_dir() -> Path:
    """``<repo>/../shared/data`` (the repo is the folder holding the ``escmvq`` package)."""
    return checkout_data_dir()


def _sub(data_dir: str | os.PathLike | None, name: str) -> Path:
    try:
        base = data_root(data_dir)
    except DataRootError as e:
        raise DatasetError(str(e)) from None
    if base.name == name:
        return base
    return base / name


def _check_n(n: int | None) -> None:
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise DatasetError(f"number of images must be a positive integer, got {n!r}")


def load_cifar10_test(n: int | None = None, data_dir: str | os.PathLike | None = None,
                      start: int = 0) -> np.ndarray:
    """The CIFAR-10 test images ``start .. start+n-1`` (all 10,000 if ``n`` is None).

    Returns ``[n, 32, 32, 3]`` uint8 RGB. Decoded with Pillow from the shipped JPEG bytes.
    """
    _check_n(n)
    path = _sub(data_dir, "cifar10") / "test.npz"
    if not path.is_file():
        raise DatasetError(f"{path}: CIFAR-10 test file not found (pass --data-dir or set ESCMVQ_DATA)")
    try:
        with np.load(path, allow_pickle=False) as z:
            jpeg, offsets = z["jpeg"], z["offsets"]
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: unreadable CIFAR-10 file ({e})") from None
    total = len(offsets) - 1
    stop = total if n is None else start + int(n)
    if not 0 <= start < total or stop > total:
        raise DatasetError(f"CIFAR-10 test has {total} images; asked for images {start}..{stop - 1}")
    try:
        return decode_jpeg_pack(jpeg, offsets, range(start, stop), shape=(32, 32, 3))
    except JpegPackError as e:
        raise DatasetError(f"{path}: {e}") from None


def load_kodak_tiles(tile_size: tuple[int, int] = (32, 32), n: int | None = None,
                     data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Non-overlapping ``tile_size`` tiles of the 24 Kodak images.

    tile_size : (th, tw) ints, the model's input size.
    n : number of tiles wanted (None = all); when fewer than all, they are taken evenly
        spaced over the full raster-ordered list, so every image contributes.
    Returns ``[n, th, tw, 3]`` uint8 RGB.
    """
    from escmvq.runtime.images import ImageError, load_image

    _check_n(n)
    th, tw = (int(v) for v in tile_size)
    folder = _sub(data_dir, "kodak")
    files = sorted(folder.glob("kodim*.png")) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"{folder}: no kodim*.png files found (pass --data-dir or set ESCMVQ_DATA)")
    tiles = []
    for f in files:
        try:
            img = load_image(f)
        except ImageError as e:
            raise DatasetError(str(e)) from None
        r, c = img.shape[0] // th, img.shape[1] // tw
        t = img[: r * th, : c * tw].reshape(r, th, c, tw, 3).transpose(0, 2, 1, 3, 4).reshape(r * c, th, tw, 3)
        tiles.append(t)
    allt = np.concatenate(tiles)
    if n is None:
        return np.ascontiguousarray(allt)
    if n > len(allt):
        raise DatasetError(f"Kodak gives {len(allt)} tiles of {th}x{tw}; asked for {n}")
    idx = np.floor(np.arange(n) * (len(allt) / n)).astype(np.int64)
    return np.ascontiguousarray(allt[idx])


def load_images(dataset: str, n: int | None, tile_size: tuple[int, int] = (32, 32),
                data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """``dataset`` in :data:`DATASETS` -> ``[n, th, tw, 3]`` uint8 images of the model's tile size."""
    if dataset == "cifar10":
        if tuple(tile_size) != (32, 32):
            raise DatasetError(f"cifar10 images are 32x32 but the bundle's tile size is {tuple(tile_size)}")
        return load_cifar10_test(n, data_dir)
    if dataset == "kodak":
        return load_kodak_tiles(tile_size, n, data_dir)
    raise DatasetError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
