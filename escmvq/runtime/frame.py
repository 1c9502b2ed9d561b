"""The ``.tx`` frame: a versioned, self-checking binary container for one transmitted image.

Layout (version 2, little-endian; every field is validated by :func:`parse`):

====== ===== ==================================================================
offset bytes field
====== ===== ==================================================================
0      8     magic ``b"ESCMVQTX"``
8      2     format version (uint16) = 2
10     1     kind: 0 = transmitted samples ``x_t = sqrt(p_t) s_t`` (the receiver
             applies the channel), 1 = received samples ``y_t`` (already through it)
11     1     channel: 0 = AWGN (h = 1), 1 = block Rayleigh fading
12     32    sha256 of the bundle that produced the frame (see ``bundle.py``)
44     8     SNR in dB (float64), eq. (53)
52     8     P_tot (float64)
60     8     noise variance sigma^2 (float64)
68     4     image height (uint32), original size before tiling
72     4     image width (uint32)
76     2     tile height (uint16)
78     2     tile width (uint16)
80     4     number of tiles n (uint32) = ceil(H/th) * ceil(W/tw)
84     4     T, channel uses per tile (uint32)
88     4     L = N*B, bits per tile (uint32)
92     8n    channel coefficient h of each tile (complex64)
...    8nT   samples, complex64 ``[n, T]``
end-4  4     CRC-32 of all preceding bytes (uint32)
====== ===== ==================================================================

Versions: 2 maps bits to QAM symbols with the 3GPP TS 38.211 labelling
(:mod:`escmvq.core.qam`); version 1 used the same layout with every amplitude bit inverted,
so its samples would decode to wrong labels without any error: :func:`parse` refuses them
with a message saying so (re-transmit the image with this build).

The plan (codebook assignment, orders, powers, bit order) is *not* stored: both sides
derive it from ``(P_tot, gamma)`` with ``gamma = |h|^2 / sigma^2`` (the paper's
footnote 2), so the frame carries exactly the state the plan is a function of.

Numeric fields are checked against what a complex64 (float32) link can produce, so that
a frame that parses can be decoded without overflow, underflow or a zero division:
``P_tot``, ``sigma^2`` and every ``|h|^2`` lie in ``[F32_TINY, F32_MAX]`` (the normal
float32 range, ~1.2e-38 .. 3.4e38; a Rayleigh draw leaves it with probability ~1e-38),
so ``gamma = |h|^2 / sigma^2`` is finite and > 0; ``snr_db`` and all samples are
finite; and in a transmitted frame ``|h x_t|`` stays below ``F32_MAX`` (the channel
applied at the receiver cannot overflow).
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from escmvq.core.vocab import CHANNELS

__all__ = ["MAGIC", "VERSION", "RETIRED", "KIND_TX", "KIND_RX", "CHANNELS", "Frame", "FrameError", "parse", "validate",
           "HEADER_SIZE", "F32_TINY", "F32_MAX"]

MAGIC = b"ESCMVQTX"
VERSION = 2
# formats this build knows but cannot decode, with the reason (one line each)
RETIRED = _RETIRED = {1: "its samples use the earlier QAM labelling (amplitude bits inverted relative to 3GPP TS 38.211), "
               "which this build no longer demaps; re-transmit the image with this build"}
KIND_TX = 0
KIND_RX = 1
_HEADER = struct.Struct("<8sHBB32sdddIIHHIII")
HEADER_SIZE = _HEADER.size  # 92
_MAX_SIDE = 1 << 16  # largest image side accepted (pixels)
_MAX_T = 1 << 20  # largest number of channel uses per tile
F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32, ~1.18e-38
F32_MAX = float(np.finfo(np.float32).max)  # ~3.40e38


class FrameError(ValueError):
    """A ``.tx`` frame that cannot be parsed: the message is one line, fit for a user."""


@dataclass(frozen=True)
class Frame:
    kind: int
    channel: str
    bundle_hash: bytes
    snr_db: float
    p_tot: float
    noise_var: float
    image_size: tuple[int, int]  # (H, W)
    tile_size: tuple[int, int]  # (th, tw)
    n_bits: int  # L per tile
    h: np.ndarray  # [n] complex64
    samples: np.ndarray  # [n, T] complex64

    @property
    def n_tiles(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_symbols(self) -> int:
        return int(self.samples.shape[1])

    @property
    def grid(self) -> tuple[int, int]:
        return grid_of(self.image_size, self.tile_size)

    def to_bytes(self) -> bytes:
        _check_fields(self)
        head = _HEADER.pack(
            MAGIC, VERSION, self.kind, CHANNELS.index(self.channel), self.bundle_hash,
            float(self.snr_db), float(self.p_tot), float(self.noise_var),
            self.image_size[0], self.image_size[1], self.tile_size[0], self.tile_size[1],
            self.n_tiles, self.n_symbols, self.n_bits,
        )
        body = head + np.ascontiguousarray(self.h, dtype="<c8").tobytes() + \
            np.ascontiguousarray(self.samples, dtype="<c8").tobytes()
        return body + struct.pack("<I", zlib.crc32(body))


def grid_of(image_size: tuple[int, int], tile_size: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of tiles covering an image (the last row/column padded)."""
    return (math.ceil(image_size[0] / tile_size[0]), math.ceil(image_size[1] / tile_size[1]))


def _check_fields(f: Frame) -> None:
    if f.kind not in (KIND_TX, KIND_RX):
        raise FrameError(f"frame kind {f.kind} unknown (0 = transmitted, 1 = received)")
    if f.channel not in CHANNELS:
        raise FrameError(f"channel {f.channel!r} unknown (expected one of {', '.join(CHANNELS)})")
    if not isinstance(f.bundle_hash, bytes) or len(f.bundle_hash) != 32:
        raise FrameError("bundle hash must be 32 bytes")
    for name in ("snr_db", "p_tot", "noise_var"):
        if not math.isfinite(getattr(f, name)):
            raise FrameError(f"{name} is not finite ({getattr(f, name)})")
    if f.p_tot <= 0 or f.noise_var <= 0:
        raise FrameError(f"P_tot and noise variance must be > 0 (got {f.p_tot}, {f.noise_var})")
    for name in ("p_tot", "noise_var"):
        if not F32_TINY <= getattr(f, name) <= F32_MAX:
            raise FrameError(f"{name} = {getattr(f, name):g} is outside the float32 range a link can use "
                             f"([{F32_TINY:.3g}, {F32_MAX:.3g}])")
    (H, W), (th, tw) = f.image_size, f.tile_size
    if not (0 < H <= _MAX_SIDE and 0 < W <= _MAX_SIDE):
        raise FrameError(f"image size {H}x{W} out of range (1..{_MAX_SIDE})")
    if not (0 < th < 1 << 16 and 0 < tw < 1 << 16):
        raise FrameError(f"tile size {th}x{tw} out of range")
    rows, cols = grid_of((H, W), (th, tw))
    if f.samples.ndim != 2 or f.h.shape != (f.samples.shape[0],):
        raise FrameError(f"samples [n, T] and h [n] disagree: {f.samples.shape} vs {f.h.shape}")
    if f.n_tiles != rows * cols:
        raise FrameError(f"frame holds {f.n_tiles} tiles but a {H}x{W} image in {th}x{tw} tiles needs {rows * cols}")
    if not 0 < f.n_symbols <= _MAX_T:
        raise FrameError(f"T = {f.n_symbols} channel uses per tile out of range (1..{_MAX_T})")
    if not 0 < f.n_bits <= 8 * f.n_symbols:
        raise FrameError(f"L = {f.n_bits} bits cannot ride on T = {f.n_symbols} symbols of at most 8 bits")
    if not np.all(np.isfinite(f.h.view(np.float32))):
        raise FrameError("channel coefficients must be finite")
    if not np.all(np.isfinite(f.samples.view(np.float32))):
        raise FrameError("samples must be finite")
    h2 = np.abs(f.h.astype(np.complex128)) ** 2  # exact: float32 parts squared in float64
    bad = np.flatnonzero(~((h2 >= F32_TINY) & (h2 <= F32_MAX)))
    if bad.size:
        i = int(bad[0])
        what = "zero (nothing gets through)" if h2[i] == 0 else f"|h|^2 = {h2[i]:.3g}"
        raise FrameError(f"channel coefficient of tile {i} is {what}: must be non-zero with |h|^2 in the float32 "
                         f"range a link can use ([{F32_TINY:.3g}, {F32_MAX:.3g}])")
    if f.kind == KIND_TX and f.samples.size:
        peak = float(np.max(np.sqrt(h2)[:, None] * np.abs(f.samples.astype(np.complex128))))
        if not peak <= F32_MAX:
            raise FrameError(f"transmitted samples times h reach {peak:.3g}: the channel would overflow float32")


def validate(f: Frame) -> None:
    """Check every field of a frame built from another container (e.g. a SigMF recording)
    exactly as :func:`parse` checks a ``.tx`` file; raises :class:`FrameError`."""
    _check_fields(f)


def parse(data: bytes) -> Frame:
    """Parse and validate a frame; any defect raises :class:`FrameError` (never anything else)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FrameError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FrameError("not an escmvq .tx frame (bad magic)")
    if len(data) < HEADER_SIZE + 4:
        raise FrameError(f"truncated frame: {len(data)} bytes, the header alone needs {HEADER_SIZE + 4}")
    (magic, version, kind, channel, bhash, snr_db, p_tot, noise_var,
     H, W, th, tw, n, T, L) = _HEADER.unpack_from(data, 0)
    if version in _RETIRED:
        raise FrameError(f"frame format version {version} not supported: {_RETIRED[version]}")
    if version != VERSION:
        raise FrameError(f"frame format version {version} not supported (this build reads version {VERSION})")
    if n > _MAX_SIDE * _MAX_SIDE or T > _MAX_T:
        raise FrameError(f"frame header claims {n} tiles of {T} symbols: out of range")
    expected = HEADER_SIZE + 8 * n + 8 * n * T + 4
    if len(data) < expected:
        raise FrameError(f"truncated frame: {len(data)} bytes, header announces {expected}")
    if len(data) > expected:
        raise FrameError(f"frame has {len(data) - expected} trailing bytes beyond the {expected} announced")
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if zlib.crc32(data[: expected - 4]) != crc:
        raise FrameError("frame is corrupt (CRC-32 mismatch)")
    if channel >= len(CHANNELS):
        raise FrameError(f"channel code {channel} unknown")
    h = np.frombuffer(data, dtype="<c8", count=n, offset=HEADER_SIZE).astype(np.complex64)
    samples = np.frombuffer(data, dtype="<c8", count=n * T, offset=HEADER_SIZE + 8 * n)
    frame = Frame(
        kind=kind, channel=CHANNELS[channel], bundle_hash=bhash, snr_db=snr_db, p_tot=p_tot,
        noise_var=noise_var, image_size=(H, W), tile_size=(th, tw), n_bits=L,
        h=h, samples=samples.reshape(n, T).astype(np.complex64),
    )
    _check_fields(frame)
    return frame
