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

Memory: a large image is never held as float tiles. Loading converts in row strips,
:func:`tile_range` cuts one batch of tiles at a time, :func:`untile_into` writes a batch of
decoded tiles straight into the uint8 output, :func:`psnr` (from :mod:`escmvq.core.metrics`)
of uint8 images sums in row chunks, and PNGs over :data:`LARGE_PIXELS` are written strip by strip
(:func:`write_png_strips`), so a link holds about 6 bytes per pixel (input and output).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from escmvq.core.metrics import psnr  # eq. (52), re-exported: the runtime's callers import it from here

__all__ = [
    "ImageError", "MAX_PIXELS", "LARGE_PIXELS", "load_image", "to_rgb8", "tile", "untile", "psnr",
    "save_png", "side_by_side", "tile_grid", "tile_range", "untile_into", "write_png_strips",
    "save_side_by_side_png",
]

MAX_PIXELS = 64_000_000  # refuse larger images (decompression bombs, memory)
LARGE_PIXELS = 4_000_000  # from here on: PNGs written strip by strip, a progress bar in the CLI
_STRIP_BYTES = 1 << 22  # work on about this many bytes of image per strip


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
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")  # Pillow has no La -> RGBA
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
            if img.getexif().get(0x0112, 1) in range(2, 9):  # EXIF Orientation: transpose (a copy) only if needed
                img = ImageOps.exif_transpose(img)
            arr = _to_rgb8_strips(img)
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


def _to_rgb8_strips(img: Image.Image) -> np.ndarray:
    """:func:`to_rgb8` row strip by row strip into one preallocated array (the conversion is
    per pixel): peak memory is Pillow's image plus the result, not several full copies."""
    W, H = img.size
    if W * H <= (1 << 20):
        return to_rgb8(img)
    out = np.empty((H, W, 3), np.uint8)
    step = max(1, _STRIP_BYTES // (4 * W))
    for y in range(0, H, step):
        out[y:y + step] = to_rgb8(img.crop((0, y, W, min(y + step, H))))
    return out


def tile_grid(image_size: tuple[int, int], tile_size: tuple[int, int]) -> tuple[int, int]:
    """Tiles (rows, cols) covering an ``(H, W)`` image."""
    return -(-int(image_size[0]) // tile_size[0]), -(-int(image_size[1]) // tile_size[1])


def tile_range(img: np.ndarray, tile_size: tuple[int, int], start: int, stop: int) -> np.ndarray:
    """Tiles ``start .. stop-1`` of :func:`tile` (same values, float32 in [0, 1]) without
    tiling the whole image: only the tile rows (or, within one row, the columns) they cover."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"expected an [H, W, 3] image, got shape {img.shape}")
    th, tw = tile_size
    H, W, _ = img.shape
    rows, cols = tile_grid((H, W), tile_size)
    if not 0 <= start < stop <= rows * cols:
        raise ValueError(f"tiles {start}..{stop} outside 0..{rows * cols}")
    r0, r1 = start // cols, (stop - 1) // cols + 1
    c0, c1 = (start % cols, (stop - 1) % cols + 1) if r1 - r0 == 1 else (0, cols)
    strip = img[r0 * th:min(r1 * th, H), c0 * tw:min(c1 * tw, W)]
    padded = np.pad(strip, ((0, (r1 - r0) * th - strip.shape[0]), (0, (c1 - c0) * tw - strip.shape[1]), (0, 0)),
                    mode="edge")
    t = padded.reshape(r1 - r0, th, c1 - c0, tw, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, th, tw)
    first = start - r0 * cols - c0
    t = t[first:first + (stop - start)]
    return np.ascontiguousarray(t, dtype=np.float32) * np.float32(1.0 / 255.0)


def untile_into(out: np.ndarray, tiles: np.ndarray, start: int, grid: tuple[int, int]) -> None:
    """Write decoded tiles ``start .. start+len(tiles)-1`` (floats in [0, 1], ``[b, 3, th, tw]``)
    into the ``[H, W, 3]`` uint8 image ``out``, cropped at its edges; the values are those of
    :func:`untile`."""
    rows, cols = grid
    n, c, th, tw = tiles.shape
    H, W = out.shape[:2]
    if c != 3 or start < 0 or start + n > rows * cols:
        raise ValueError(f"tiles {tiles.shape} from {start} do not fit a {rows}x{cols} grid of RGB tiles")
    i = 0
    while i < n:
        r, c0 = divmod(start + i, cols)
        k = min(n - i, cols - c0)
        block = tiles[i:i + k].transpose(2, 0, 3, 1).reshape(th, k * tw, 3)
        y0, x0 = r * th, c0 * tw
        hh, ww = min(th, H - y0), min(k * tw, W - x0)
        out[y0:y0 + hh, x0:x0 + ww] = np.clip(np.rint(block[:hh, :ww] * 255.0), 0, 255).astype(np.uint8)
        i += k


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


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two ``[H, W, 3]`` uint8 images next to each other with a white gap."""
    if left.shape != right.shape:
        raise ValueError(f"images differ in shape: {left.shape} vs {right.shape}")
    H = left.shape[0]
    return np.concatenate([left, np.full((H, gap, 3), 255, np.uint8), right], axis=1)


def save_png(arr: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``[H, W, 3]`` uint8 as PNG (format forced: the path may be a temporary name);
    over :data:`LARGE_PIXELS` strip by strip (:func:`write_png_strips`)."""
    H, W = arr.shape[:2]
    if H * W > LARGE_PIXELS:
        write_png_strips(path, W, H, _strips(arr))
        return
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), "RGB").save(path, format="PNG")


def save_side_by_side_png(left: np.ndarray, right: np.ndarray, path: str | os.PathLike, gap: int = 4) -> None:
    """``save_png(side_by_side(left, right, gap), path)`` without building the side-by-side
    image when it is large."""
    if left.shape != right.shape:
        raise ValueError(f"images differ in shape: {left.shape} vs {right.shape}")
    H, W = left.shape[:2]
    if H * (2 * W + gap) <= LARGE_PIXELS:
        save_png(side_by_side(left, right, gap), path)
        return
    write_png_strips(path, 2 * W + gap, H, (side_by_side(a, b, gap) for a, b in zip(_strips(left), _strips(right))))


def _strips(arr: np.ndarray) -> Iterable[np.ndarray]:
    step = max(1, _STRIP_BYTES // max(1, arr[0].nbytes))
    return (arr[y:y + step] for y in range(0, arr.shape[0], step))


def write_png_strips(path: str | os.PathLike, width: int, height: int, strips: Iterable[np.ndarray],
                     level: int = 6) -> None:
    """Write an 8-bit RGB PNG from row strips ``[h_i, width, 3]`` uint8 (top to bottom, heights
    summing to ``height``) with pypng's streaming writer: memory is one strip, not the image
    (Pillow needs the whole image)."""
    import png  # pypng

    if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
        raise ValueError(f"PNG size {width}x{height} out of range")
    count = [0]

    def rows():
        for s in strips:
            s = np.ascontiguousarray(s, dtype=np.uint8)
            if s.ndim != 3 or s.shape[1:] != (width, 3):
                raise ValueError(f"PNG strip of shape {s.shape}, expected [h, {width}, 3]")
            for r in s:
                count[0] += 1
                if count[0] > height:
                    raise ValueError(f"PNG strips hold more than {height} rows")
                yield r.tobytes()

    with open(path, "wb") as f:
        try:
            png.Writer(width, height, greyscale=False, bitdepth=8, compression=level).write_packed(f, rows())
        except png.ProtocolError as e:
            raise ValueError(f"PNG strips hold {count[0]} rows, expected {height} ({e})") from None
    if count[0] != height:  # pypng writes a short image data stream without complaint
        raise ValueError(f"PNG strips hold {count[0]} rows, expected {height}")
