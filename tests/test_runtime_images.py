"""Image loading (modes, bad files, EXIF, size limits), tiling (whole and batched), PNG
writing (whole and strip by strip) and the side-by-side picture."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import escmvq.runtime.images as images
from escmvq.runtime.images import (ImageError, load_image, psnr, save_png, save_side_by_side_png, side_by_side, tile,
                                   tile_grid, tile_range, to_rgb8, untile, untile_into, write_png_strips)


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


@pytest.mark.parametrize("ts", [(32, 32), (16, 8), (8, 16)])
def test_batched_helpers_match_the_whole_image_ones(tmp_path, monkeypatch, ts):
    """tile_range / untile_into (a batch at a time) give exactly tile / untile's values, for
    square and non-square tiles, batches within one tile row and across rows."""
    rng = np.random.default_rng(0)
    for H, W in [(1, 1), (5, 40), (31, 33), (70, 20), (97, 301)]:
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        img[: H // 2] = (np.arange(W)[None, :, None] * 7 % 256).astype(np.uint8)  # smooth rows: other PNG filters
        tiles, grid = tile(img, ts)
        assert grid == tile_grid((H, W), ts) == (-(-H // ts[0]), -(-W // ts[1]))
        n = len(tiles)
        cols = grid[1]
        for a, b in [(0, n), (0, 1), (n - 1, n), (min(1, n - 1), min(5, n)), (min(3, n - 1), n),
                     (min(cols - 1, n - 1), min(cols + 2, n)), (min(cols, n - 1), min(2 * cols, n))]:
            got = tile_range(img, ts, a, b)
            assert got.dtype == np.float32 and got.flags.c_contiguous
            assert np.array_equal(got, tiles[a:b]), (H, W, a, b)
        noisy = tiles + rng.normal(0, 0.2, tiles.shape).astype(np.float32)  # outside [0, 1] too
        for step in (1, 3, cols + 1):
            out = np.zeros_like(img)
            for a in range(0, n, step):
                untile_into(out, noisy[a:a + step], a, grid)
            assert np.array_equal(out, untile(noisy, grid, (H, W))), (H, W, step)
        ref = 10 * np.log10(255**2 / float(np.mean((img.astype(np.float64) - out.astype(np.float64)) ** 2)))
        assert psnr(img, out) == ref
        write_png_strips(tmp_path / "s.png", W, H, (img[y:y + 7] for y in range(0, H, 7)))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png").convert("RGB")), img)
    left, right = img, out
    monkeypatch.setattr(images, "LARGE_PIXELS", 1)  # take the strip-by-strip path
    save_side_by_side_png(left, right, tmp_path / "sbs.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sbs.png").convert("RGB")), side_by_side(left, right))


def test_tile_grid():
    assert tile_grid((1, 1), (32, 32)) == (1, 1)
    assert tile_grid((64, 65), (32, 32)) == (2, 3)
    assert tile_grid((33, 8), (16, 8)) == (3, 1)
    assert tile_grid((np.int64(17), 9), (16, 8)) == (2, 2)


def test_shape_and_range_errors_are_exact():
    img = np.zeros((40, 70, 3), np.uint8)  # a 2 x 3 grid of 32 x 32 tiles
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ImageError) as e:
            tile(bad, (32, 32))
        assert str(e.value) == f"expected an [H, W, 3] image, got shape {bad.shape}"
        with pytest.raises(ImageError) as e:
            tile_range(bad, (32, 32), 0, 1)
        assert str(e.value) == f"expected an [H, W, 3] image, got shape {bad.shape}"
    for a, b in [(0, 0), (-1, 2), (0, 7), (3, 2), (6, 7)]:
        with pytest.raises(ValueError) as e:
            tile_range(img, (32, 32), a, b)
        assert str(e.value) == f"tiles {a}..{b} outside 0..6"
    assert tile_range(img, (32, 32), 5, 6).shape == (1, 3, 32, 32)
    t = np.zeros((2, 3, 32, 32), np.float32)
    out = np.zeros_like(img)
    untile_into(out, t, 4, (2, 3))  # the last two tiles: fits exactly
    for tiles, start in [(t, -1), (t, 5), (np.zeros((2, 1, 32, 32), np.float32), 0)]:
        with pytest.raises(ValueError) as e:
            untile_into(out, tiles, start, (2, 3))
        assert str(e.value) == f"tiles {tiles.shape} from {start} do not fit a 2x3 grid of RGB tiles"
    for tiles in (np.zeros((5, 3, 32, 32), np.float32), np.zeros((6, 1, 32, 32), np.float32)):
        with pytest.raises(ValueError) as e:
            untile(tiles, (2, 3), (40, 70))
        assert str(e.value) == f"tiles {tiles.shape} do not fill a 2x3 grid of RGB tiles"


def test_untile_rounds_and_clips():
    t = np.full((1, 3, 2, 2), 0.5, np.float32)
    t[0, 0, 0, 0], t[0, 1, 0, 0], t[0, 2, 0, 0] = -0.1, 1.3, 2.0 / 255 - 0.4 / 255  # 1.6 -> 2
    for got in (untile(t, (1, 1), (2, 2)), _untile_into_fresh(t)):
        assert got.dtype == np.uint8
        assert got[0, 0].tolist() == [0, 255, 2] and got[1, 1].tolist() == [128, 128, 128]


def _untile_into_fresh(t):
    out = np.zeros((2, 2, 3), np.uint8)
    untile_into(out, t, 0, (1, 1))
    return out


def test_side_by_side_layout():
    a = np.zeros((3, 2, 3), np.uint8)
    b = np.full((3, 2, 3), 9, np.uint8)
    s = side_by_side(a, b)
    assert s.shape == (3, 8, 3) and s.dtype == np.uint8
    assert (s[:, :2] == 0).all() and (s[:, 2:6] == 255).all() and (s[:, 6:] == 9).all()
    assert side_by_side(a, b, gap=1)[:, 2].tolist() == [[255] * 3] * 3 and side_by_side(a, b, gap=1).shape[1] == 5
    with pytest.raises(ValueError) as e:
        side_by_side(a, b[:2])
    assert str(e.value) == "images differ in shape: (3, 2, 3) vs (2, 2, 3)"
    with pytest.raises(ValueError) as e:
        save_side_by_side_png(a, b[:, :1], "never.png")
    assert str(e.value) == "images differ in shape: (3, 2, 3) vs (3, 1, 3)"


@pytest.mark.parametrize("large", [False, True])
def test_png_writers_whole_or_in_strips(tmp_path, monkeypatch, large):
    """save_png and save_side_by_side_png write the same pixels whether they hold the image
    (small) or stream it strip by strip (over LARGE_PIXELS, strips of _STRIP_BYTES); the PNG
    format is forced whatever the file's name."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (23, 11, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (23, 11, 3), dtype=np.uint8)
    written = []
    real = images.write_png_strips

    def spy(path, width, height, strips, level=6):
        strips = [np.array(s) for s in strips]
        written.append((width, height, [len(s) for s in strips]))
        real(path, width, height, strips, level)

    monkeypatch.setattr(images, "write_png_strips", spy)
    if large:
        monkeypatch.setattr(images, "LARGE_PIXELS", 23 * 11 - 1)
        monkeypatch.setattr(images, "_STRIP_BYTES", 5 * 11 * 3)  # 5 rows of a, 2 of the side-by-side
    save_png(a if large else a.astype(np.int64), tmp_path / "a.tmp")  # held: any integer dtype holding 0..255
    save_side_by_side_png(a, b, tmp_path / "ab.tmp", gap=3)
    with Image.open(tmp_path / "a.tmp") as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im.convert("RGB")), a)
    with Image.open(tmp_path / "ab.tmp") as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im.convert("RGB")), side_by_side(a, b, 3))
    if large:
        assert written == [(11, 23, [5, 5, 5, 5, 3]), (25, 23, [5, 5, 5, 5, 3])]
    else:
        assert written == []


def test_side_by_side_png_large_only_when_the_pair_is(tmp_path, monkeypatch):
    """The pair (2 W + gap wide) decides the path, not one image; over the limit the pair is
    built strip by strip, never whole."""
    a = np.zeros((4, 5, 3), np.uint8)
    seen = []
    monkeypatch.setattr(images, "write_png_strips",
                        lambda path, w, h, strips, level=6: seen.append((w, h, [x.shape[0] for x in strips])))
    monkeypatch.setattr(images, "_STRIP_BYTES", 1)  # one-row strips
    monkeypatch.setattr(images, "LARGE_PIXELS", 4 * 14)
    save_side_by_side_png(a, a, tmp_path / "x.png")  # 4 x 14 pixels: held
    assert seen == [] and (tmp_path / "x.png").exists()
    monkeypatch.setattr(images, "LARGE_PIXELS", 4 * 14 - 1)
    pairs = []
    real_sbs = images.side_by_side
    monkeypatch.setattr(images, "side_by_side", lambda l, r, gap=4: pairs.append(l.shape) or real_sbs(l, r, gap))
    save_side_by_side_png(a, a, tmp_path / "y.png")
    assert seen == [(14, 4, [1, 1, 1, 1])] and pairs == [(1, 5, 3)] * 4
    monkeypatch.setattr(images, "LARGE_PIXELS", 20)  # save_png: H W over the limit only
    save_png(a, tmp_path / "z.png")
    assert len(seen) == 1
    monkeypatch.setattr(images, "LARGE_PIXELS", 19)
    save_png(a, tmp_path / "w.png")
    assert seen[1] == (5, 4, [1, 1, 1, 1])
    monkeypatch.setattr(images, "LARGE_PIXELS", 4)
    save_png(a[:1], tmp_path / "one.png")  # a single row (the strip size reads row 0)
    assert seen[2] == (5, 1, [1])
    monkeypatch.setattr(images, "_STRIP_BYTES", 2 * 15)  # two rows of 5 x 3 bytes per strip
    save_png(a, tmp_path / "v.png")
    assert seen[3] == (5, 4, [2, 2])


def test_write_png_strips_checks_its_input(tmp_path):
    p = tmp_path / "s.png"
    row = np.zeros((1, 4, 3), np.uint8)
    for w, h in [(0, 1), (1, 0), (1 << 31, 1), (1, 1 << 31), (-1, 2)]:
        with pytest.raises(ValueError) as e:
            write_png_strips(p, w, h, [])
        assert str(e.value) == f"PNG size {w}x{h} out of range"
    with pytest.raises(ValueError) as e:
        write_png_strips(p, 4, 2, [row, np.zeros((1, 5, 3), np.uint8)])
    assert str(e.value) == "PNG strip of shape (1, 5, 3), expected [h, 4, 3]"
    with pytest.raises(ValueError) as e:
        write_png_strips(p, 4, 2, [np.zeros((4, 3), np.uint8)])
    assert str(e.value) == "PNG strip of shape (4, 3), expected [h, 4, 3]"
    with pytest.raises(ValueError) as e:
        write_png_strips(p, 4, 2, [row, row, row])
    assert str(e.value) == "PNG strips hold more than 2 rows"
    with pytest.raises(ValueError) as e:  # pypng itself writes a broken PNG here
        write_png_strips(p, 4, 2, [row])
    assert str(e.value) == "PNG strips hold 1 rows, expected 2"
    vals = np.arange(12, dtype=np.int64).reshape(1, 4, 3) * 20
    write_png_strips(p, 4, 2, [vals, row])  # any integer dtype, cast to bytes
    assert np.array_equal(np.asarray(Image.open(p)), np.concatenate([vals, row]).astype(np.uint8))


def test_write_png_strips_turns_pypng_errors_into_value_errors(tmp_path, monkeypatch):
    import png

    def refuse(self, f, rows):
        next(iter(rows))
        raise png.ProtocolError("rows wrong")

    monkeypatch.setattr(png.Writer, "write_packed", refuse)
    with pytest.raises(ValueError) as e:
        write_png_strips(tmp_path / "s.png", 4, 2, [np.zeros((2, 4, 3), np.uint8)])
    assert str(e.value) == "PNG strips hold 1 rows, expected 2 (ProtocolError: rows wrong)"
    assert e.value.__suppress_context__


def test_write_png_strips_compression_level(tmp_path):
    img = np.tile((np.arange(64) * 4).astype(np.uint8)[None, :, None], (64, 1, 3))
    write_png_strips(tmp_path / "0.png", 64, 64, [img], level=0)
    write_png_strips(tmp_path / "9.png", 64, 64, [img], level=9)
    write_png_strips(tmp_path / "d.png", 64, 64, [img])
    sizes = {k: (tmp_path / f"{k}.png").stat().st_size for k in "09d"}
    assert sizes["0"] > 64 * 64 * 3 > 4 * sizes["9"] and sizes["d"] < sizes["0"]
    for k in "09d":
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{k}.png")), img)
    # the default is zlib's level 6 (its bytes differ from 5 and 7 on this image)
    rng = np.random.default_rng(0)
    img = (rng.integers(0, 4, (128, 128, 3)) * 60 + np.arange(128)[None, :, None]).astype(np.uint8)
    files = {}
    for level in (5, 6, 7, None):
        path = tmp_path / f"l{level}.png"
        write_png_strips(path, 128, 128, [img], **({} if level is None else {"level": level}))
        files[level] = path.read_bytes()
    assert files[None] == files[6] and files[6] != files[5] and files[6] != files[7]


def test_large_images_convert_in_row_strips(monkeypatch):
    """Over 2^20 pixels the conversion runs strip by strip (rows of _STRIP_BYTES / 4 W) into
    one array; the result equals the whole-image conversion."""
    rng = np.random.default_rng(5)
    la = Image.fromarray(rng.integers(0, 256, (1025, 1024, 2), dtype=np.uint8), "LA")
    whole = to_rgb8(la)
    calls = []
    real = images.to_rgb8
    monkeypatch.setattr(images, "to_rgb8", lambda im: calls.append(im.size) or real(im))
    got = images._to_rgb8_strips(la)
    step = (1 << 22) // (4 * 1024)
    assert calls == [(1024, step)] * (1025 // step) + [(1024, 1025 % step)]
    assert got.dtype == np.uint8 and np.array_equal(got, whole)
    calls.clear()
    monkeypatch.setattr(images, "_STRIP_BYTES", 4 * 1024 * 100)  # strips of 100 rows from here on
    square = la.crop((0, 0, 1024, 1024))  # exactly 2^20 pixels: one piece
    assert np.array_equal(images._to_rgb8_strips(square), whole[:1024]) and calls == [(1024, 1024)]
    calls.clear()
    small = la.crop((0, 0, 7, 300))
    assert np.array_equal(images._to_rgb8_strips(small), whole[:300, :7]) and calls == [(7, 300)]
    calls.clear()
    calls.clear()
    monkeypatch.setattr(images, "_STRIP_BYTES", 1)  # a strip is at least one row
    tall = la.crop((0, 0, 1024, 1025))
    assert np.array_equal(images._to_rgb8_strips(tall), whole) and calls == [(1024, 1)] * 1025


def test_more_modes(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    la = np.stack([rgb[..., 0], np.where(np.arange(5) < 2, 255, 0)[None].repeat(6, 0).astype(np.uint8)], -1)
    got = to_rgb8(Image.fromarray(la, "LA"))  # opaque columns keep their grey, transparent ones are white
    assert (got[:, :2] == rgb[:, :2, :1]).all() and (got[:, 2:] == 255).all()
    pa = Image.fromarray(rgb).convert("P").convert("PA")
    assert np.array_equal(to_rgb8(pa), np.asarray(pa.convert("RGB")))  # opaque: the palette's colours
    # premultiplied alpha, and an alpha of 0 in PA / RGBa / La: white
    for mode, colour in (("PA", (3, 0)), ("RGBa", (10, 20, 30, 0)), ("La", (10, 0))):
        got = to_rgb8(Image.new(mode, (2, 1), colour))
        assert got.dtype == np.uint8 and got.tolist() == [[[255] * 3] * 2], mode
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 255, np.uint8)], -1)
    assert np.array_equal(to_rgb8(Image.fromarray(rgba, "RGBA").convert("RGBa")), rgb)
    half = to_rgb8(Image.new("La", (1, 1), (10, 128)))  # grey 20 at alpha 1/2 on white: 10 + 127
    assert abs(int(half[0, 0, 0]) - 137) <= 1 and (half == half[..., :1]).all()
    # 32-bit integer grey: scaled like 16-bit, clipped to [0, 255]
    i32 = np.array([[0, 257, 128 * 257, 65535, 70000, -1000]], np.int32)
    got = to_rgb8(Image.fromarray(i32, "I"))
    assert got.shape == (1, 6, 3) and got[0, :, 0].tolist() == [0, 1, 128, 255, 255, 0]
    assert (got[..., 0] == got[..., 2]).all()
    for mode, order in (("I;16", "<"), ("I;16L", "<"), ("I;16B", ">"), ("I;16N", "=")):
        g = Image.frombytes(mode, (2, 1), np.array([514, 65535], f"{order}u2").tobytes())
        assert g.mode == mode and to_rgb8(g)[0, :, 1].tolist() == [2, 255], mode
    cmyk = Image.fromarray(rgb).convert("CMYK")
    assert np.array_equal(to_rgb8(cmyk), np.asarray(cmyk.convert("RGB")))
    with pytest.raises(ImageError) as e:
        to_rgb8(Image.fromarray(np.zeros((2, 2), np.float32), "F"))
    assert str(e.value) == "floating-point images (Pillow mode F) are not supported; convert to 8-bit RGB first"


def test_palette_transparency_becomes_white():
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((1, 0), 1)
    assert to_rgb8(p).tolist() == [[[255, 0, 0], [0, 255, 0], [255, 0, 0]]]  # no transparency: the palette
    p.info["transparency"] = 1
    assert to_rgb8(p).tolist() == [[[255, 0, 0], [255, 255, 255], [255, 0, 0]]]
    rgb = Image.new("RGB", (1, 1), (1, 2, 3))
    rgb.info["transparency"] = (1, 2, 3)  # only a palette's transparency is applied here
    assert to_rgb8(rgb).tolist() == [[[1, 2, 3]]]


def test_a_mode_pillow_cannot_convert(monkeypatch):
    img = Image.new("RGB", (2, 2))

    def fail(*a, **k):
        raise ValueError("conversion not supported")

    monkeypatch.setattr(img, "convert", fail)
    with pytest.raises(ImageError) as e:
        to_rgb8(img)
    assert str(e.value) == "cannot convert a Pillow mode RGB image to RGB: conversion not supported"
    assert e.value.__suppress_context__


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((2, 3, 3), np.uint8)
    a[0, 0] = [255, 0, 0]
    for orientation, want in [(1, a), (2, a[:, ::-1]), (6, np.rot90(a, -1)), (3, a[::-1, ::-1]), (8, np.rot90(a)),
                              (9, a)]:
        ex = Image.Exif()
        ex[0x0112] = orientation
        p = _save(tmp_path, Image.fromarray(a), f"o{orientation}.png", exif=ex)
        assert np.array_equal(load_image(p), want), orientation


def test_first_frame_of_an_animation(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "a.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert (load_image(p) == [255, 0, 0]).all()


def test_load_errors_are_exact(tmp_path, monkeypatch):
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "missing.png")
    assert str(e.value) == f"{tmp_path / 'missing.png'}: no such file"
    with pytest.raises(ImageError) as e:
        load_image(str(tmp_path))
    assert str(e.value) == f"{tmp_path}: is a directory, not an image"
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "t.txt")
    assert str(e.value) == f"{tmp_path / 't.txt'}: not an image file (Pillow cannot identify it)"
    assert e.value.__suppress_context__
    p = _save(tmp_path, Image.new("RGB", (6, 5)), "s.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 30)
    assert load_image(p).shape == (5, 6, 3)  # exactly the limit
    monkeypatch.setattr(images, "MAX_PIXELS", 29)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(e.value) == f"{p}: 6x5 is larger than the 29 pixel limit"
    monkeypatch.setattr(images, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow's own bomb check (over twice its limit)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(e.value).startswith(f"{p}: refused, Image size (30 pixels) exceeds limit")


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (5, 5), (5, 5, 4), (5, 5, 1)])
def test_a_decoded_array_of_the_wrong_shape_is_refused(tmp_path, monkeypatch, shape):
    p = _save(tmp_path, Image.new("RGB", (5, 5)), "x.png")
    monkeypatch.setattr(images, "_to_rgb8_strips", lambda img: np.zeros(shape, np.uint8))
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(e.value) == f"{p}: unexpected decoded shape {shape}"


def test_truncated_message_is_the_first_line(tmp_path, monkeypatch):
    p = _save(tmp_path, Image.new("RGB", (4, 4)), "x.png")

    def fail(self):
        raise OSError("broken data stream\nmore detail")

    monkeypatch.setattr(Image.Image, "load", fail)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(e.value) == f"{p}: unreadable or truncated image (broken data stream)"
    monkeypatch.setattr(Image.Image, "load", lambda self: (_ for _ in ()).throw(EOFError()))
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(e.value) == f"{p}: unreadable or truncated image (EOFError)"
