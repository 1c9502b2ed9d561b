"""The .tx frame format: round trip, every defect a FrameError, and a hypothesis fuzz."""
from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from escmvq.runtime.frame import HEADER_SIZE, MAGIC, VERSION, Frame, FrameError, parse

HASH = bytes(range(32))


def make_frame(n_rows=2, n_cols=3, T=12, L=48, seed=0) -> Frame:
    rng = np.random.default_rng(seed)
    n = n_rows * n_cols
    return Frame(kind=0, channel="rayleigh", bundle_hash=HASH, snr_db=10.0, p_tot=576.0 * 10, noise_var=1.0,
                 image_size=(32 * n_rows - 5, 32 * n_cols - 1), tile_size=(32, 32), n_bits=L,
                 h=(rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64),
                 samples=(rng.standard_normal((n, T)) + 1j * rng.standard_normal((n, T))).astype(np.complex64))


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def frames_equal(a: Frame, b: Frame) -> bool:
    return (a.kind, a.channel, a.bundle_hash, a.snr_db, a.p_tot, a.noise_var, a.image_size, a.tile_size, a.n_bits) == \
        (b.kind, b.channel, b.bundle_hash, b.snr_db, b.p_tot, b.noise_var, b.image_size, b.tile_size, b.n_bits) \
        and np.array_equal(a.h, b.h) and np.array_equal(a.samples, b.samples)


def test_round_trip_is_exact():
    f = make_frame()
    data = f.to_bytes()
    assert data[:8] == MAGIC and len(data) == HEADER_SIZE + 8 * 6 + 8 * 6 * 12 + 4
    g = parse(data)
    assert frames_equal(f, g)
    assert g.grid == (2, 3) and g.n_tiles == 6 and g.n_symbols == 12
    assert parse(g.to_bytes()) is not None and g.to_bytes() == data


@pytest.mark.parametrize("cut", [0, 3, 8, HEADER_SIZE - 1, HEADER_SIZE + 3, HEADER_SIZE + 50, -1])
def test_truncated(cut):
    data = make_frame().to_bytes()
    with pytest.raises(FrameError, match="truncated|bad magic"):
        parse(data[:cut] if cut >= 0 else data[:-1])


def test_trailing_bytes_rejected():
    with pytest.raises(FrameError, match="trailing"):
        parse(make_frame().to_bytes() + b"\0")


@pytest.mark.parametrize("pos", [12, 50, HEADER_SIZE + 2, -9])
def test_flipped_byte_fails_crc(pos):
    data = bytearray(make_frame().to_bytes())
    data[pos] ^= 0x40
    with pytest.raises(FrameError, match="CRC"):
        parse(bytes(data))


def test_bad_magic_and_version():
    data = make_frame().to_bytes()
    with pytest.raises(FrameError, match="magic"):
        parse(b"PNG\r\n\x1a\n" + data[8:])
    body = bytearray(data[:-4])
    struct.pack_into("<H", body, 8, VERSION + 1)
    with pytest.raises(FrameError, match="version 2 not supported"):
        parse(with_crc(bytes(body)))


@pytest.mark.parametrize("field,value,match", [
    ("snr_db", float("nan"), "not finite"),
    ("p_tot", -1.0, "must be > 0"),
    ("noise_var", 0.0, "must be > 0"),
    ("image_size", (200, 96), "needs"),  # tile count disagrees with the image size
    ("n_bits", 12 * 8 + 1, "cannot ride"),
    ("kind", 7, "kind"),
    ("channel", "rician", "channel"),
])
def test_invalid_fields_refused_on_write(field, value, match):
    with pytest.raises(FrameError, match=match):
        replace(make_frame(), **{field: value}).to_bytes()


def test_valid_crc_but_inconsistent_header_refused():
    """A header with a correct CRC but an impossible tile count still fails validation."""
    body = bytearray(make_frame().to_bytes()[:-4])
    struct.pack_into("<I", body, 68, 1000)  # image height -> needs 32*3 tiles, frame has 6
    with pytest.raises(FrameError, match="needs"):
        parse(with_crc(bytes(body)))
    body = bytearray(make_frame().to_bytes()[:-4])
    struct.pack_into("<ff", body, HEADER_SIZE, float("inf"), 0.0)  # h[0] = inf
    with pytest.raises(FrameError, match="finite"):
        parse(with_crc(bytes(body)))


# ------------------------------- fuzz (hypothesis) -------------------------------------
VALID = make_frame(1, 2, T=4, L=16).to_bytes()
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    try:
        f = parse(data)
    except FrameError as e:
        assert "\n" not in str(e) and str(e)
    else:  # pragma: no cover - astronomically unlikely
        assert f.n_tiles >= 1


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(VALID)), st.booleans())
def test_fuzz_mutated_frames(edits, cut, fix_crc):
    """Byte edits and truncation of a valid frame, optionally with a recomputed CRC so
    that the header validation itself is exercised."""
    data = bytearray(VALID)
    for pos, val in edits:
        data[pos] = val
    data = bytes(data[:cut])
    if fix_crc and len(data) > 4:
        data = with_crc(data[:-4])
    try:
        f = parse(data)
    except FrameError as e:
        assert "\n" not in str(e) and str(e)
    else:
        # whatever parses is self-consistent and re-serialises to the same bytes
        assert f.n_tiles == f.grid[0] * f.grid[1]
        assert np.all(np.isfinite(f.samples.view(np.float32)))
        assert f.to_bytes() == data
