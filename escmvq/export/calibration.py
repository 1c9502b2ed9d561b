"""Real images for the export self-check and int8 calibration.

``source`` is a CIFAR-style ``.npz`` (``jpeg`` + ``offsets``, as in ``shared/data/cifar10``),
a ``.npy``/``.npz`` with a ``uint8 [n, H, W, 3]`` array, a folder of image files, or one
image file. Images are cut into tiles of the model's size (no resizing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from escmvq.io.jpeg_pack import JpegPackError, decode_jpeg_pack
from escmvq.runtime.images import ImageError, load_image, tile

__all__ = ["load_calibration", "CalibrationError"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}


class CalibrationError(ValueError):
    pass


def _tiles_of(arrays, tile_size) -> np.ndarray:
    return np.concatenate([tile(a, tile_size)[0] for a in arrays])


def load_calibration(source: str | Path, tile_size: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` tiles ``[n, 3, th, tw]`` float32 in [0, 1] drawn (seeded) from ``source``."""
    source = Path(source)
    if not source.exists():
        raise CalibrationError(f"calibration images not found: {source}")
    if source.suffix in (".npz", ".npy"):
        data = np.load(source, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arr = data
        elif "jpeg" in data.files and "offsets" in data.files:
            jpeg, off = data["jpeg"], data["offsets"]
            count = len(off) - 1
            pick = np.sort(rng.choice(count, size=min(count, n), replace=False))
            try:
                arr = decode_jpeg_pack(jpeg, off, pick)
            except JpegPackError as e:
                raise CalibrationError(f"{source}: {e}") from None
        else:
            key = next((k for k in data.files if data[k].dtype == np.uint8 and data[k].ndim == 4), None)
            if key is None:
                raise CalibrationError(f"{source}: no uint8 [n, H, W, 3] array or CIFAR jpeg/offsets inside")
            arr = data[key]
        tiles = _tiles_of(list(arr[: max(n, 1)] if len(arr) > n else arr), tile_size)
    else:
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise CalibrationError(f"{source}: no image files")
        tiles = []
        for f in files:
            try:
                tiles.append(tile(load_image(f), tile_size)[0])
            except ImageError:
                continue
        if not tiles:
            raise CalibrationError(f"{source}: no readable image")
        tiles = np.concatenate(tiles)
    if len(tiles) > n:
        tiles = tiles[np.sort(rng.choice(len(tiles), size=n, replace=False))]
    return np.ascontiguousarray(tiles, np.float32)
