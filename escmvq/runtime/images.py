"""Image input/output for the runtime (Pillow + numpy): loading with clear errors,
mode conversion, tiling into the model's input size, reassembly, PSNR.

Decisions (documented in the README):

- Every image becomes 8-bit RGB. Grey, bilevel, palette, CMYK, YCbCr and LAB images are
  converted by Pillow. 16-bit grey images (``I;16*``, ``I``) are scaled to 8 bits
  (``round(v / 257)``); 16-bit RGB PNGs are decoded by Pillow to 8 bits (high byte).
  An alpha channel (RGBA, LA, PA, or a palette with transparency) is flattened onto a
  white background. Floating-point images (mode ``F``) are rejected.
  EXIF orientation is applied. Animated images use their first frame.
- An image is cut into tiles of the model's training size (e.g. 32x32) in raster order;
  the last row/column is padded by edge replication (so an image smaller than one tile
  becomes one padded tile) and the reassembled output is cropped back to the input size.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageError", "MAX_PIXELS", "load_image", "to_rgb8", "tile", "untile", "psnr",
    "save_png", "side_by_side",
]

MAX_PIXELS = 64_000_000  # refuse larger images (decompression bombs, memory)


class ImageError(ValueError):
    """An input image that cannot be used: the message is one line, fit for a user."""


def to_rgb8(img: Image.Image) -> np.ndarray:
    """A Pillow image of any supported mode -> ``[H, W, 3]`` uint8 RGB."""
    mode = img.mode
    if mode == "F":
        raise ImageError("floating-point images (Pillow mode F) are not supported; convert to 8-bit RGB first")
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(img).astype(np.float64)
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as e:
        raise ImageError(f"cannot convert a Pillow mode {mode} image to RGB: {e}") from None


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> ``[H, W, 3]`` uint8 RGB; any defect raises :class:`ImageError`."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{path}: {img.width}x{img.height} is larger than the {MAX_PIXELS} pixel limit")
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = to_rgb8(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused, {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: unreadable or truncated image ({msg})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{path}: unexpected decoded shape {arr.shape}")
    return arr


def tile(img: np.ndarray, tile_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``[H, W, 3]`` uint8 -> (tiles ``[n, 3, th, tw]`` float32 in [0, 1], grid (rows, cols)).

    Tiles are in raster order; the image is padded at the bottom/right by edge replication.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"expected an [H, W, 3] image, got shape {img.shape}")
    th, tw = tile_size
    H, W, _ = img.shape
    rows, cols = -(-H // th), -(-W // tw)
    padded = np.pad(img, ((0, rows * th - H), (0, cols * tw - W), (0, 0)), mode="edge")
    t = padded.reshape(rows, th, cols, tw, 3).transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, th, tw)
    return np.ascontiguousarray(t, dtype=np.float32) * np.float32(1.0 / 255.0), (rows, cols)


def untile(tiles: np.ndarray, grid: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`tile`: ``[n, 3, th, tw]`` floats in [0, 1] -> ``[H, W, 3]`` uint8, cropped."""
    rows, cols = grid
    n, c, th, tw = tiles.shape
    if n != rows * cols or c != 3:
        raise ValueError(f"tiles {tiles.shape} do not fill a {rows}x{cols} grid of RGB tiles")
    full = tiles.reshape(rows, cols, 3, th, tw).transpose(0, 3, 1, 4, 2).reshape(rows * th, cols * tw, 3)
    H, W = image_size
    return np.clip(np.rint(full[:H, :W] * 255.0), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 255.0) -> float:
    """Eq. (52): ``10 log10(MAX^2 / MSE)`` (inf for identical inputs)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(max_value**2 / mse)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two ``[H, W, 3]`` uint8 images next to each other with a white gap."""
    if left.shape != right.shape:
        raise ValueError(f"images differ in shape: {left.shape} vs {right.shape}")
    H = left.shape[0]
    return np.concatenate([left, np.full((H, gap, 3), 255, np.uint8), right], axis=1)


def save_png(arr: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``[H, W, 3]`` uint8 as PNG (format forced: the path may be a temporary name)."""
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), "RGB").save(path, format="PNG")
