"""Images stored as JPEG files back to back: a ``uint8`` byte array ``jpeg`` and an
``offsets`` array with ``offsets[i]:offsets[i+1]`` the bytes of image ``i`` (the layout
of ``shared/data/cifar10/{train,test}.npz``; see its README).

One decoder for training, evaluation and export calibration, so all three see the same
pixels: Pillow decodes each file and converts it to RGB.
"""
from __future__ import annotations

import io

import numpy as np

__all__ = ["JpegPackError", "decode_jpeg_pack"]


class JpegPackError(ValueError):
    """A pack that cannot give the images asked for (message: one line)."""


def decode_jpeg_pack(jpeg: np.ndarray, offsets: np.ndarray, indices=None, shape: tuple[int, ...] | None = None
                     ) -> np.ndarray:
    """Decode images of a pack.

    jpeg : ``[nbytes]`` uint8; offsets : ``[n + 1]`` int, non-decreasing;
    indices : which images, in this order (default: all ``n``);
    shape : the ``(H, W, 3)`` every image must decode to (default: that of the first).
    Returns ``[len(indices), H, W, 3]`` uint8 RGB. Raises :class:`JpegPackError` naming the
    image for an index outside ``0..n-1`` or an image of another shape.
    """
    from PIL import Image

    buf = np.asarray(jpeg, np.uint8)
    offsets = np.asarray(offsets)
    n = len(offsets) - 1
    idx = np.arange(n) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    out = None
    for k, i in enumerate(idx):
        if not 0 <= i < n:
            raise JpegPackError(f"image {i} asked for, the pack holds {n} images")
        with Image.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]].tobytes())) as im:
            a = np.asarray(im.convert("RGB"), np.uint8)
        if out is None:
            shape = a.shape if shape is None else tuple(shape)
            out = np.empty((len(idx), *shape), np.uint8)
        if a.shape != shape:
            raise JpegPackError(f"image {i} decodes to shape {a.shape}, expected {shape}")
        out[k] = a
    return np.empty((0, *(shape or (0, 0, 3))), np.uint8) if out is None else out
