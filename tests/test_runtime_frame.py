"""The .tx frame format: round trip, every defect a FrameError, and a hypothesis fuzz."""
from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from escmvq.runtime.frame import F32_MAX, F32_TINY, HEADER_SIZE, MAGIC, VERSION, VERSIONS, Frame, FrameError, parse

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
    struct.pack_into("<H", body, 8, max(VERSIONS) + 1)
    with pytest.raises(FrameError, match=f"version {max(VERSIONS) + 1} not supported .this build reads versions 2 and"):
        parse(with_crc(bytes(body)))


def test_frames_of_the_earlier_labelling_refused():
    # version 1 frames are well-formed but their samples follow the earlier (amplitude bits
    # inverted) QAM labelling: decoding them would give wrong labels silently
    assert VERSION == 2
    body = bytearray(make_frame().to_bytes()[:-4])
    struct.pack_into("<H", body, 8, 1)
    with pytest.raises(FrameError, match="version 1 not supported: its samples use the earlier QAM labelling") as e:
        parse(with_crc(bytes(body)))
    assert "\n" not in str(e.value)
    assert make_frame().to_bytes()[8:10] == struct.pack("<H", 2)


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


# ------------------------- numeric header fields and h -------------------------
HEADER = struct.Struct("<8sHBB32sdddIIHHIII")


def raw_frame(kind=0, channel=1, snr_db=10.0, p_tot=5760.0, noise_var=1.0, H=27, W=95, th=32, tw=32, T=12, L=48,
              h=None, samples=None, n=None) -> bytes:
    """A CRC-valid frame built field by field, bypassing ``Frame.to_bytes``'s validation."""
    if h is None:
        h = np.ones(1 * 3, np.complex64)
    h = np.asarray(h, np.complex64)
    n = h.size if n is None else n
    if samples is None:
        samples = np.ones((h.size, T), np.complex64)
    head = HEADER.pack(MAGIC, VERSION, kind, channel, HASH, snr_db, p_tot, noise_var, H, W, th, tw, n, T, L)
    return with_crc(head + np.ascontiguousarray(h, "<c8").tobytes() + np.ascontiguousarray(samples, "<c8").tobytes())


def test_raw_frame_helper_builds_a_valid_frame():
    f = parse(raw_frame())
    assert f.n_tiles == 3 and f.grid == (1, 3) and f.noise_var == 1.0


@pytest.mark.parametrize("h0", [0.0, 0j, 1e-45, 1e-20 + 1e-20j, 3e38, 1e20, 2e19 + 2e19j, complex("inf"),
                                complex("nan"), complex(0, float("-inf"))])
@pytest.mark.parametrize("kind", [0, 1])
def test_zero_tiny_huge_or_nonfinite_h_refused(h0, kind):
    """h = 0 decoded to a blank image without an error; |h|^2 outside the normal float32
    range (or not finite) cannot come out of a float32 link either."""
    h = np.array([1.0, h0, 0.5j], np.complex64)
    with pytest.raises(FrameError, match="channel coefficient") as e:
        parse(raw_frame(kind=kind, h=h))
    assert "\n" not in str(e.value)
    if h0 == 0:
        assert "tile 1 is zero" in str(e.value)
    with pytest.raises(FrameError, match="channel coefficient"):
        replace(make_frame(1, 3), kind=kind, h=h).to_bytes()


def test_h_at_the_edges_of_the_float32_range_accepted():
    lo, hi = np.sqrt(np.float32(2e-38)), np.float32(1.8e19)  # |h|^2 = 2e-38, 3.24e38
    f = parse(raw_frame(kind=1, h=np.array([lo, hi, 1j * lo], np.complex64)))
    assert f.h[0] == lo and f.h[1] == hi


@pytest.mark.parametrize("field,value", [
    ("noise_var", 0.0), ("noise_var", -4.0), ("noise_var", 1e308), ("noise_var", 1e-300), ("noise_var", float("inf")),
    ("noise_var", float("nan")), ("p_tot", 0.0), ("p_tot", -1.0), ("p_tot", 1e300), ("p_tot", 5e-324),
    ("p_tot", float("inf")), ("p_tot", float("nan")), ("snr_db", float("inf")), ("snr_db", float("-inf")),
])
def test_absurd_numeric_header_fields_refused(field, value):
    with pytest.raises(FrameError) as e:
        parse(raw_frame(**{field: value}))
    assert field in str(e.value) or "must be > 0" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(FrameError):
        replace(make_frame(1, 3), **{field: value}).to_bytes()


def test_noise_variance_other_than_one_round_trips():
    f = replace(make_frame(), noise_var=4.0, p_tot=4 * 5760.0)
    g = parse(f.to_bytes())
    assert g.noise_var == 4.0 and g.p_tot == 4 * 5760.0 and frames_equal(f, g)


def test_transmitted_samples_that_would_overflow_the_channel_refused():
    h = np.array([1.0, 1.5e19, 1.0], np.complex64)  # |h|^2 = 2.25e38: in range
    big = np.full((3, 12), 1e20, np.complex64)  # |h x| = 1.5e39 > float32 max
    with pytest.raises(FrameError, match="overflow"):
        parse(raw_frame(kind=0, h=h, samples=big))
    assert parse(raw_frame(kind=1, h=h, samples=big)).kind == 1  # received samples: the channel was applied
    im = np.full((3, 12), 1 + 3e38j, np.complex64)  # |x| is the complex magnitude, not the real part
    with pytest.raises(FrameError, match="overflow"):
        parse(raw_frame(kind=0, h=np.array([1.0, 2.0, 1.0], np.complex64), samples=im))
    assert parse(raw_frame(kind=0, h=h)).kind == 0


def _valid_or_frame_error(data: bytes):
    """``parse`` returns a frame a receiver can use, or raises a one-line FrameError."""
    from escmvq.core.alloc.validate import check_budget
    from escmvq.core.channels import channel_gamma as gamma_of

    try:
        f = parse(data)
    except FrameError as e:
        assert "\n" not in str(e) and str(e)
        return None
    assert f.n_tiles == f.grid[0] * f.grid[1] >= 1
    assert all(np.isfinite(x) for x in (f.snr_db, f.p_tot, f.noise_var)) and f.p_tot > 0 and f.noise_var > 0
    assert np.all(np.isfinite(f.samples.view(np.float32))) and np.all(np.isfinite(f.h.view(np.float32)))
    # within what a float32 link can produce (the documented domain, see frame.py)
    assert F32_TINY <= f.p_tot <= F32_MAX and F32_TINY <= f.noise_var <= F32_MAX
    h2 = np.abs(f.h.astype(np.complex128)) ** 2
    assert np.all((h2 >= F32_TINY) & (h2 <= F32_MAX))
    if f.kind == 0:  # the receiver applies the channel: h x must not overflow complex64
        with np.errstate(over="ignore"):
            hx = (f.h.astype(np.complex128)[:, None] * f.samples).astype(np.complex64)
        assert np.all(np.isfinite(hx.view(np.float32)))
    g = gamma_of(f.h, f.noise_var)
    assert np.all(np.isfinite(g)) and np.all(g > 0)
    for gi in g:  # the allocator accepts every tile's budget (no ValueError later in the receiver)
        check_budget(f.p_tot, float(gi))
        assert np.isfinite(f.p_tot * gi)
    assert f.to_bytes() == data
    return f


ABSURD = [0.0, -0.0, 1e-45, 1e-38, 1e-20, 0.5, 1.0, 4.0, 3e38, 3.4e38, 1e39, 1e308, -1.0, float("inf"),
          float("-inf"), float("nan")]


ODD_FLOAT = st.one_of(st.sampled_from(ABSURD), st.floats(width=64))
ODD_F32 = st.one_of(st.sampled_from(ABSURD), st.floats(width=32))
FIELDS = ("kind", "channel", "snr_db", "p_tot", "noise_var", "size", "L", "h", "samples")


@st.composite
def crc_valid_frames(draw):
    """CRC-valid frames, sane but for zero to three fields given random, often absurd
    values (h = 0, 3e38, inf, nan; sigma^2 = 1e308, ...), so that every check after the
    CRC is reached (a frame with every field odd would fail the first)."""
    odd = set(draw(st.lists(st.sampled_from(FIELDS), max_size=3)))

    def pick(name, sane, weird):
        return draw(weird if name in odd else sane)

    rows, cols = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    th, tw = draw(st.sampled_from([(32, 32), (8, 16), (1, 1)]))
    H, W = pick("size", st.tuples(st.integers(th * rows - th + 1, th * rows), st.integers(tw * cols - tw + 1, tw * cols)),
                st.tuples(st.integers(0, 70000), st.integers(0, 70000)))
    n, T = rows * cols, draw(st.integers(1, 6))
    L = pick("L", st.integers(1, 8 * T), st.integers(0, (1 << 32) - 1))
    sane = st.floats(-4.0, 4.0, width=32).filter(lambda x: abs(x) > 1e-3)

    def cplx(name, shape):
        a = np.array([complex(draw(sane), draw(sane)) for _ in range(int(np.prod(shape)))])
        if name in odd:  # one to three entries odd
            for _ in range(draw(st.integers(1, 3))):
                a[draw(st.integers(0, a.size - 1))] = complex(draw(ODD_F32), draw(st.one_of(ODD_F32, st.just(0.0))))
        with np.errstate(over="ignore"):  # 1e39, 1e308 become inf in complex64, as in a corrupt file
            return a.astype(np.complex64).reshape(shape)

    return raw_frame(kind=pick("kind", st.integers(0, 1), st.integers(0, 255)),
                     channel=pick("channel", st.integers(0, 1), st.integers(0, 255)),
                     snr_db=pick("snr_db", st.floats(-50, 100), ODD_FLOAT),
                     p_tot=pick("p_tot", st.floats(1e-3, 1e12), ODD_FLOAT),
                     noise_var=pick("noise_var", st.floats(1e-6, 1e6), ODD_FLOAT),
                     H=H, W=W, th=th, tw=tw, T=T, L=L, h=cplx("h", (n,)), samples=cplx("samples", (n, T)))


@FUZZ
@given(crc_valid_frames())
def test_fuzz_crc_valid_frames_with_random_fields(data):
    _valid_or_frame_error(data)


@settings(max_examples=400, deadline=None, database=None)
@given(st.sampled_from(ABSURD + [1e-30, 1e30]), st.sampled_from(ABSURD + [1e-30, 1e30]),
       st.sampled_from(ABSURD), st.sampled_from(ABSURD), st.integers(0, 1))
def test_fuzz_absurd_h_sigma_and_budget(p_tot, noise_var, hr, hi, kind):
    """Every combination of absurd h, sigma^2 and P_tot: a valid frame or a FrameError."""
    with np.errstate(over="ignore"):
        h = np.array([complex(hr, hi), 1.0, 1j], np.complex64)
    _valid_or_frame_error(raw_frame(kind=kind, p_tot=p_tot, noise_var=noise_var, h=h))


# --------------------- boundaries and messages (mutants that survived earlier) ---------------------
def test_to_bytes_writes_complex64_whatever_the_array_dtype():
    f = make_frame()
    wide = replace(f, h=f.h.astype(np.complex128), samples=f.samples.astype(np.complex128))
    assert wide.to_bytes() == f.to_bytes()


def test_grid_uses_each_side_of_the_tile():
    from escmvq.runtime.frame import grid_of

    assert grid_of((64, 96), (32, 16)) == (2, 6) and grid_of((65, 17), (32, 16)) == (3, 2)


@pytest.mark.parametrize("field,value,message", [
    ("channel", "rician", "channel 'rician' unknown (expected one of awgn, rayleigh)"),
    ("bundle_hash", bytes(31), "bundle hash must be 32 bytes"),
    ("bundle_hash", "x" * 32, "bundle hash must be 32 bytes"),
    ("p_tot", 0.0, "P_tot and noise variance must be > 0 (got 0.0, 1.0)"),
    ("noise_var", -1.0, "P_tot and noise variance must be > 0 (got 5760.0, -1.0)"),
    ("image_size", (0, 95), "image size 0x95 out of range (1..65536)"),
    ("image_size", (27, 0), "image size 27x0 out of range (1..65536)"),
    ("image_size", (65537, 95), "image size 65537x95 out of range (1..65536)"),
    ("tile_size", (0, 32), "tile size 0x32 out of range"),
    ("tile_size", (32, 0), "tile size 32x0 out of range"),
    ("tile_size", (65536, 32), "tile size 65536x32 out of range"),
    ("tile_size", (32, 65536), "tile size 32x65536 out of range"),
    ("h", np.ones(2, np.complex64), "samples [n, T] and h [n] disagree: (3, 12) vs (2,)"),
    ("image_size", (64, 95), "frame holds 3 tiles but a 64x95 image in 32x32 tiles needs 6"),
    ("n_bits", 0, "L = 0 bits cannot ride on T = 12 symbols of at most 8 bits"),
    ("n_bits", 97, "L = 97 bits cannot ride on T = 12 symbols"),
])
def test_field_checks_and_their_messages(field, value, message):
    f = make_frame(1, 3)
    with pytest.raises(FrameError) as e:
        replace(f, **{field: value}).to_bytes()
    assert str(e.value).startswith(message), str(e.value)


def test_field_checks_exact_messages():
    f = make_frame(1, 3)
    cases = [
        (replace(f, samples=np.zeros((3, 0), np.complex64)), "T = 0 channel uses per tile out of range (1..1048576)"),
        (replace(f, h=np.array([1, np.inf, 1], np.complex64)), "channel coefficients must be finite"),
        (replace(f, samples=np.full((3, 12), np.nan, np.complex64)), "samples must be finite"),
        (replace(f, h=np.array([1, 1e20, 1], np.complex64)), "channel coefficient of tile 1 is |h|^2 = 1e+40: must be"),
    ]
    for frame, message in cases:
        with pytest.raises(FrameError) as e:
            frame.to_bytes()
        assert str(e.value).startswith(message), str(e.value)


def test_smallest_and_largest_valid_values_accepted():
    f = make_frame(1, 3)
    ok = [
        replace(f, p_tot=F32_TINY, noise_var=F32_TINY), replace(f, p_tot=F32_MAX, noise_var=F32_MAX),
        replace(f, p_tot=0.5, noise_var=0.5),
        replace(f, h=np.full(3, 2.0 ** -63, np.complex64)),  # |h|^2 = 2^-126 = F32_TINY exactly
        replace(f, n_bits=1), replace(f, n_bits=8 * 12),
        replace(f, image_size=(1, 1), tile_size=(1, 1), h=f.h[:1], samples=f.samples[:1]),
        replace(f, image_size=(1, 3), tile_size=(1, 1)),
        replace(f, image_size=(65536, 1), tile_size=(65535, 1), h=f.h[:2], samples=f.samples[:2]),
        replace(f, image_size=(1, 65536), tile_size=(1, 65535), h=f.h[:2], samples=f.samples[:2]),
        replace(f, samples=f.samples[:, :1], n_bits=8),  # T = 1
        # a tiny h times the largest samples: |h x| is computed without float32 overflow
        replace(f, h=np.full(3, 1e-10, np.complex64), samples=np.full((3, 12), 3e38 + 3e38j, np.complex64)),
    ]
    assert F32_TINY == 2.0 ** -126
    for g in ok:
        assert frames_equal(parse(g.to_bytes()), g)


def test_largest_channel_use_count_accepted():
    from escmvq.runtime.frame import _MAX_T

    f = make_frame(1, 1)
    g = replace(f, samples=np.ones((1, _MAX_T), np.complex64))
    assert parse(g.to_bytes()).n_symbols == _MAX_T
    with pytest.raises(FrameError, match=f"T = {_MAX_T + 1} channel uses per tile out of range"):
        replace(f, samples=np.ones((1, _MAX_T + 1), np.complex64)).to_bytes()
    body = bytearray(f.to_bytes()[:-4])
    struct.pack_into("<I", body, 84, _MAX_T + 1)
    with pytest.raises(FrameError, match=f"frame header claims 1 tiles of {_MAX_T + 1} symbols: out of range"):
        parse(with_crc(bytes(body)))


def test_parse_messages():
    data = make_frame().to_bytes()
    cases = [
        ("not bytes", "expected bytes, got str"),
        (MAGIC, "truncated frame: 8 bytes, the header alone needs 96"),
        (data[:50], "truncated frame: 50 bytes, the header alone needs 96"),
        (b"GIF89a" + data[6:], "not an escmvq .tx frame (bad magic)"),
        (data + b"\0\0", f"frame has 2 trailing bytes beyond the {len(data)} announced"),
        (data[:-1] + bytes([data[-1] ^ 1]), "frame is corrupt (CRC-32 mismatch)"),
    ]
    body = bytearray(data[:-4])
    body[11] = 5
    cases.append((with_crc(bytes(body)), "channel code 5 unknown"))
    for raw, message in cases:
        with pytest.raises(FrameError) as e:
            parse(raw)
        assert str(e.value) == message


def test_header_and_crc_alone_are_not_truncated():
    """A 96-byte frame (header + CRC, no tiles) is complete: it fails on its content."""
    head = HEADER.pack(MAGIC, VERSION, 0, 1, HASH, 10.0, 5760.0, 1.0, 27, 95, 32, 32, 0, 12, 48)
    data = with_crc(head)
    assert len(data) == HEADER_SIZE + 4
    with pytest.raises(FrameError) as e:
        parse(data)
    assert "truncated" not in str(e.value) and "needs 3" in str(e.value)


# ------------------------- version 3: estimated CSI -------------------------------
def make_frame_v3(kind=0, pilots=2, reps=3, k=2, pilot_power=None, seed=1) -> Frame:
    """``make_frame(1, 2)`` with a preamble of ``pilots + k * reps`` channel uses per tile; no
    ``h`` when received."""
    from dataclasses import replace

    from escmvq.runtime.csi import CsiConfig

    f = make_frame(1, 2, T=4, L=16, seed=seed)
    rng = np.random.default_rng(seed + 1)
    P = pilots + k * reps
    pre = (rng.standard_normal((2, P)) + 1j * rng.standard_normal((2, P))).astype(np.complex64)
    return replace(f, kind=kind, h=None if kind else f.h, preamble=pre,
                   csi=CsiConfig(mode="pilots", pilots=pilots, repetitions=reps, pilot_power=pilot_power))


@pytest.mark.parametrize("kind", [0, 1])
@pytest.mark.parametrize("pilot_power", [None, 2.5])
def test_v3_round_trip_is_exact(kind, pilot_power):
    from escmvq.runtime.frame import CSI_SIZE

    f = make_frame_v3(kind, pilot_power=pilot_power)
    data = f.to_bytes()
    assert struct.unpack_from("<H", data, 8) == (3,) and len(data) == HEADER_SIZE + CSI_SIZE + 8 * 2 * (kind == 0) \
        + 8 * 2 * (2 + 6 + 4) + 4
    g = parse(data)
    assert g.csi == f.csi and g.version == 3 and g.header_symbols == 2 and np.array_equal(g.preamble, f.preamble)
    assert np.array_equal(g.samples, f.samples) and (g.h is None) == bool(kind) and g.to_bytes() == data
    if not kind:
        assert frames_equal(f, g)
    neg = bytearray(data[:-4])  # -0.0 is not the default power's encoding (+0.0): refused, not rewritten
    neg[HEADER_SIZE + 19] = 0x80 if pilot_power is None else neg[HEADER_SIZE + 19] ^ 0x80
    with pytest.raises(FrameError, match="pilot power"):
        parse(with_crc(bytes(neg)))


def test_v3_inconsistent_frames_refused_on_write():
    from dataclasses import replace

    f = make_frame_v3(0)
    for bad, msg in ((replace(f, preamble=f.preamble[:, :-1]), "is not 2 pilots \\+ 3 copies"),
                     (replace(f, preamble=None), "preamble must be"),
                     (replace(f, h=None), "must carry h"),
                     (replace(make_frame_v3(1), h=f.h), "carries no h"),
                     (replace(f, csi=None), "carries no preamble"),
                     (replace(f, csi=replace(f.csi, pilot_power=1e-300)), "pilot power")):
        with pytest.raises(FrameError, match=msg):
            bad.to_bytes()


VALID_V3 = (make_frame_v3(0).to_bytes(), make_frame_v3(1).to_bytes())


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.integers(0, 1), st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=6),
       st.booleans())
def test_fuzz_mutated_v3_frames(which, edits, fix_crc):
    """Byte edits of valid version-3 frames (transmitted and received), most in the header and
    CSI block, with the CRC recomputed: only one-line FrameErrors, or a frame that re-serialises."""
    data = bytearray(VALID_V3[which])
    for pos, val in edits:
        data[pos % 120 if pos % 2 else pos % len(data)] = val
    data = bytes(data)
    if fix_crc:
        data = with_crc(data[:-4])
    try:
        f = parse(data)
    except FrameError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert f.to_bytes() == data and (f.h is None) == (f.estimated and f.kind == 1)
