"""Image loading (modes, bad files) and tiling."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from escmvq.runtime.images import ImageError, load_image, psnr, side_by_side, tile, untile


@pytest.mark.parametrize("hw", [(1, 1), (5, 40), (31, 33), (32, 32), (64, 96), (70, 20)])
def test_tile_untile_round_trip(hw):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    tiles, grid = tile(img, (32, 32))
    assert grid == (-(-hw[0] // 32), -(-hw[1] // 32)) and tiles.shape == (grid[0] * grid[1], 3, 32, 32)
    assert tiles.dtype == np.float32 and 0 <= tiles.min() and tiles.max() <= 1
    assert np.array_equal(untile(tiles, grid, hw), img)


def test_tiles_are_raster_order_and_edge_padded():
    img = np.zeros((40, 70, 3), np.uint8)
    img[:32, 32:64] = 200  # tile (0, 1)
    img[39, :, :] = 7  # last row, replicated into the padding
    tiles, grid = tile(img, (32, 32))
    assert grid == (2, 3)
    assert np.allclose(tiles[1], 200 / 255) and tiles[0].max() == 0
    assert np.allclose(tiles[3][:, 7:, :], 7 / 255)  # rows 39.. of the image are padding


def _save(tmp_path, img: Image.Image, name="x.png", **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_modes_converted(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(load_image(_save(tmp_path, Image.fromarray(rgb))), rgb)
    # grey
    g = load_image(_save(tmp_path, Image.fromarray(rgb[..., 0]), "g.png"))
    assert g.shape == (20, 30, 3) and np.array_equal(g[..., 1], rgb[..., 0])
    # palette, and palette with transparency
    pal = Image.fromarray(rgb).convert("P")
    assert load_image(_save(tmp_path, pal, "p.png")).shape == (20, 30, 3)
    pal.info["transparency"] = 0
    assert load_image(_save(tmp_path, pal, "pt.png", transparency=0)).shape == (20, 30, 3)
    # 16-bit grey: scaled to 8 bits
    a16 = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    got = load_image(_save(tmp_path, Image.fromarray(a16), "g16.png"))
    assert got.dtype == np.uint8 and np.array_equal(got[..., 0], np.rint(a16 / 257).astype(np.uint8))


def test_alpha_flattened_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top opaque red, bottom fully transparent
    got = load_image(_save(tmp_path, Image.fromarray(rgba, "RGBA")))
    assert (got[:2] == [255, 0, 0]).all() and (got[2:] == 255).all()


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    (tmp_path / "t.txt").write_text("hello, not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "t.txt")
    p = _save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    data = p.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.png")
    f = Image.fromarray(np.zeros((4, 4), np.float32), "F")
    with pytest.raises(ImageError, match="floating-point"):
        load_image(_save(tmp_path, f, "f.tif"))


def test_psnr_and_side_by_side():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    assert psnr(a, a) == float("inf")
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (255**2 / 48)))
    assert side_by_side(a, b, gap=2).shape == (4, 10, 3)


def test_48bit_rgb_png(tmp_path):
    """16-bit-per-channel RGB: Pillow decodes it to 8 bits (the high byte)."""
    import struct
    import zlib

    a = np.random.default_rng(0).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(5))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    p = tmp_path / "rgb48.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 16, 2, 0, 0, 0))
                  + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    got = load_image(p)
    assert got.dtype == np.uint8 and got.shape == (5, 7, 3)
    assert np.abs(got.astype(int) - (a >> 8)).max() <= 1
