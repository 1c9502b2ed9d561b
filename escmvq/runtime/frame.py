"""The ``.tx`` frame: a versioned, self-checking binary container for one transmitted image.

Layout (version 2, perfect CSI; little-endian; every field is validated by :func:`parse`):

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

Version 3 (estimated CSI, :mod:`escmvq.runtime.csi`): the same 92-byte header with version 3,
then a 20-byte CSI block, then ``h`` only in a *transmitted* frame (the channel the receiver's
channel simulator applies; nothing decodes with it), then every tile's samples with its
preamble in front:

====== ===== ==================================================================
92     1     CSI mode: 1 = pilots (perfect-CSI frames are version 2)
93     1     q, the plan header's power-scale bits (0..16)
94     2     r, copies of the plan header (uint16, 1..4096)
96     4     N, pilots per tile (uint32, 1..4096)
100    4     k, plan header QPSK symbols per copy (uint32)
104    8     pilot and header symbol power (float64; 0 = the default ``P_tot / T``)
112    8n    ``h`` per tile (complex64), transmitted frames (kind 0) only
...    8nU   per tile ``U = N + k r + T`` samples (complex64): the N pilots, the r header
             copies, then the T data symbols
end-4  4     CRC-32 of all preceding bytes (uint32)
====== ===== ==================================================================

A received frame (kind 1) with estimated CSI carries no ``h`` at all: the receiver learns
the channel from the pilots and the plan from the header, as :func:`escmvq.runtime.link.run_link`
does with ``csi="pilots"``.

Versions: 2 and 3 map bits to QAM symbols with the 3GPP TS 38.211 labelling
(:mod:`escmvq.core.qam`); version 1 used version 2's layout with every amplitude bit inverted,
so its samples would decode to wrong labels without any error: :func:`parse` refuses them
with a message saying so (re-transmit the image with this build).

The plan (codebook assignment, orders, powers, bit order) is *not* stored: with perfect CSI
both sides derive it from ``(P_tot, gamma)`` with ``gamma = |h|^2 / sigma^2`` (the paper's
footnote 2), so the frame carries exactly the state the plan is a function of; with
estimated CSI each tile's plan header carries it.

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
from escmvq.runtime.csi import CsiConfig

__all__ = ["MAGIC", "VERSION", "VERSION_CSI", "VERSIONS", "RETIRED", "KIND_TX", "KIND_RX", "CHANNELS", "Frame",
           "FrameError", "parse", "validate", "check_version", "split_tiles", "csi_from_fields", "HEADER_SIZE",
           "CSI_SIZE", "F32_TINY", "F32_MAX"]

MAGIC = b"ESCMVQTX"
VERSION = 2  # perfect CSI (the default)
VERSION_CSI = 3  # estimated CSI: pilots + plan header before every tile's data
VERSIONS = (VERSION, VERSION_CSI)
# formats this build knows but cannot decode, with the reason (one line each)
RETIRED = _RETIRED = {1: "its samples use the earlier QAM labelling (amplitude bits inverted relative to 3GPP TS 38.211), "
               "which this build no longer demaps; re-transmit the image with this build"}
KIND_TX = 0
KIND_RX = 1
_HEADER = struct.Struct("<8sHBB32sdddIIHHIII")
HEADER_SIZE = _HEADER.size  # 92
_CSI = struct.Struct("<BBHIId")  # mode, scale bits, header copies, pilots, header symbols per copy, pilot power
CSI_SIZE = _CSI.size  # 20
_CSI_PILOTS = 1  # the CSI block's mode byte for csi="pilots"
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
    h: np.ndarray | None  # [n] complex64; None only in a received frame with estimated CSI
    samples: np.ndarray  # [n, T] complex64 data symbols
    csi: CsiConfig | None = None  # None (or mode "perfect"): version 2; mode "pilots": version 3
    preamble: np.ndarray | None = None  # [n, P] complex64 pilots + plan header copies (estimated CSI only)

    @property
    def n_tiles(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_symbols(self) -> int:
        return int(self.samples.shape[1])

    @property
    def estimated(self) -> bool:
        """True for estimated CSI (pilots + plan header, version 3)."""
        return self.csi is not None and self.csi.estimated

    @property
    def version(self) -> int:
        return VERSION_CSI if self.estimated else VERSION

    @property
    def n_preamble(self) -> int:
        """P, channel uses of pilots and plan header per tile (0 with perfect CSI)."""
        return int(self.preamble.shape[1]) if self.estimated else 0

    @property
    def grid(self) -> tuple[int, int]:
        return grid_of(self.image_size, self.tile_size)

    def tile_samples(self) -> np.ndarray:
        """Every sample in the order it is sent: ``[n, P + T]`` complex64, each tile's preamble
        (if any) then its data (the ``.tx`` body and the SigMF data file)."""
        if not self.estimated:
            return np.asarray(self.samples, np.complex64)
        return np.concatenate([self.preamble, self.samples], axis=1).astype(np.complex64, copy=False)

    def to_bytes(self) -> bytes:
        _check_fields(self)
        head = _HEADER.pack(
            MAGIC, self.version, self.kind, CHANNELS.index(self.channel), self.bundle_hash,
            float(self.snr_db), float(self.p_tot), float(self.noise_var),
            self.image_size[0], self.image_size[1], self.tile_size[0], self.tile_size[1],
            self.n_tiles, self.n_symbols, self.n_bits,
        )
        parts = [head]
        if self.estimated:
            c = self.csi
            parts.append(_CSI.pack(_CSI_PILOTS, c.scale_bits, c.repetitions, c.pilots, self.header_symbols,
                                   0.0 if c.pilot_power is None else float(c.pilot_power)))
        if self.h is not None:
            parts.append(np.ascontiguousarray(self.h, dtype="<c8").tobytes())
        parts.append(np.ascontiguousarray(self.tile_samples(), dtype="<c8").tobytes())
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    @property
    def tile_layout(self) -> str:
        """Channel uses per tile in words: ``"144 channel uses"``, or with estimated CSI
        ``"(8 pilots + 33 plan header + 144 data) channel uses"``."""
        if not self.estimated:
            return f"{self.n_symbols} channel uses"
        return (f"({self.csi.pilots} pilots + {self.n_preamble - self.csi.pilots} plan header + {self.n_symbols} data) "
                "channel uses")

    @property
    def header_symbols(self) -> int:
        """k, plan header QPSK symbols per copy (estimated CSI): ``(P - N) / r``."""
        return (self.n_preamble - self.csi.pilots) // self.csi.repetitions if self.estimated else 0


def check_version(version: int) -> None:
    """Refuse a frame format version this build cannot decode with one line (:class:`FrameError`)."""
    if version in _RETIRED:
        raise FrameError(f"frame format version {version} not supported: {_RETIRED[version]}")
    if version not in VERSIONS:
        raise FrameError(f"frame format version {version} not supported (this build reads versions "
                         f"{' and '.join(map(str, VERSIONS))})")


def split_tiles(tiles: np.ndarray, n_preamble: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Inverse of :meth:`Frame.tile_samples`: ``[n, P + T]`` -> (preamble ``[n, P]`` or None when
    ``P = 0``, data ``[n, T]``), both complex64."""
    t = np.asarray(tiles).astype(np.complex64, copy=False)
    return (t[:, :n_preamble] if n_preamble else None), t[:, n_preamble:]


def csi_from_fields(pilots: int, repetitions: int, scale_bits: int, pilot_power: float) -> CsiConfig:
    """The estimated-CSI settings a frame records -> :class:`CsiConfig` (``pilot_power`` 0 = the
    default ``P_tot / T``); anything out of range is a one-line :class:`FrameError`."""
    default = pilot_power == 0 and math.copysign(1.0, pilot_power) > 0  # +0.0 only: one encoding per frame
    if not (default or (math.isfinite(pilot_power) and F32_TINY <= pilot_power <= F32_MAX)):
        raise FrameError(f"pilot power {pilot_power!r} is neither 0 (P_tot/T) nor in the float32 range a link can use")
    try:
        return CsiConfig(mode="pilots", pilots=int(pilots), repetitions=int(repetitions), scale_bits=int(scale_bits),
                         pilot_power=None if default else float(pilot_power))
    except ValueError as e:
        raise FrameError(f"estimated-CSI settings: {e}") from None


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
    if f.samples.ndim != 2:
        raise FrameError(f"samples must be [n, T], got shape {f.samples.shape}")
    _check_csi_fields(f)
    if f.h is not None and f.h.shape != (f.samples.shape[0],):
        raise FrameError(f"samples [n, T] and h [n] disagree: {f.samples.shape} vs {f.h.shape}")
    if f.n_tiles != rows * cols:
        raise FrameError(f"frame holds {f.n_tiles} tiles but a {H}x{W} image in {th}x{tw} tiles needs {rows * cols}")
    if not 0 < f.n_symbols <= _MAX_T:
        raise FrameError(f"T = {f.n_symbols} channel uses per tile out of range (1..{_MAX_T})")
    if not 0 < f.n_bits <= 8 * f.n_symbols:
        raise FrameError(f"L = {f.n_bits} bits cannot ride on T = {f.n_symbols} symbols of at most 8 bits")
    if not np.all(np.isfinite(f.samples.view(np.float32))):
        raise FrameError("samples must be finite")
    if f.estimated and not np.all(np.isfinite(f.preamble.view(np.float32))):
        raise FrameError("preamble samples must be finite")
    if f.h is not None:
        _check_h(f)


def _check_csi_fields(f: Frame) -> None:
    """Estimated CSI: a preamble ``[n, N + k r]`` with ``k >= 1`` and no ``h`` in a received frame;
    perfect CSI: ``h`` and no preamble."""
    if f.csi is not None and not isinstance(f.csi, CsiConfig):
        raise FrameError(f"csi must be a CsiConfig or None, got {type(f.csi).__name__}")
    if not f.estimated:
        if f.preamble is not None:
            raise FrameError("a perfect-CSI frame carries no preamble")
        if f.h is None:
            raise FrameError("a perfect-CSI frame must carry h (the receiver plans from it)")
        return
    if f.kind == KIND_RX and f.h is not None:
        raise FrameError("a received frame with estimated CSI carries no h (the receiver estimates it from the pilots)")
    if f.kind == KIND_TX and f.h is None:
        raise FrameError("a transmitted frame must carry h (the channel the receiver applies)")
    p = f.preamble
    if p is None or p.ndim != 2 or p.shape[0] != f.samples.shape[0]:
        raise FrameError(f"preamble must be [n, P] beside samples {f.samples.shape}, got "
                         f"{None if p is None else p.shape}")
    c, P = f.csi, p.shape[1]
    csi_from_fields(c.pilots, c.repetitions, c.scale_bits, c.pilot_power or 0.0)  # what the CSI block can hold
    k, rest = divmod(P - c.pilots, c.repetitions)
    if rest or k < 1 or P > _MAX_T:
        raise FrameError(f"preamble of {P} channel uses is not {c.pilots} pilots + {c.repetitions} copies of a "
                         f"plan header (up to {_MAX_T} in all)")


def _check_h(f: Frame) -> None:
    if not np.all(np.isfinite(f.h.view(np.float32))):
        raise FrameError("channel coefficients must be finite")
    h2 = np.abs(f.h.astype(np.complex128)) ** 2  # exact: float32 parts squared in float64
    bad = np.flatnonzero(~((h2 >= F32_TINY) & (h2 <= F32_MAX)))
    if bad.size:
        i = int(bad[0])
        what = "zero (nothing gets through)" if h2[i] == 0 else f"|h|^2 = {h2[i]:.3g}"
        raise FrameError(f"channel coefficient of tile {i} is {what}: must be non-zero with |h|^2 in the float32 "
                         f"range a link can use ([{F32_TINY:.3g}, {F32_MAX:.3g}])")
    if f.kind == KIND_TX and f.samples.size:
        peak = float(np.max(np.sqrt(h2)[:, None] * np.abs(f.tile_samples().astype(np.complex128))))
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
    check_version(version)
    csi, P, off = None, 0, HEADER_SIZE
    if version == VERSION_CSI:
        csi, P = _parse_csi(data)
        off += CSI_SIZE
    if n > _MAX_SIDE * _MAX_SIDE or T > _MAX_T:
        raise FrameError(f"frame header claims {n} tiles of {T} symbols: out of range")
    has_h = csi is None or kind != KIND_RX
    expected = off + 8 * n * has_h + 8 * n * (P + T) + 4
    if len(data) < expected:
        raise FrameError(f"truncated frame: {len(data)} bytes, header announces {expected}")
    if len(data) > expected:
        raise FrameError(f"frame has {len(data) - expected} trailing bytes beyond the {expected} announced")
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if zlib.crc32(data[: expected - 4]) != crc:
        raise FrameError("frame is corrupt (CRC-32 mismatch)")
    if channel >= len(CHANNELS):
        raise FrameError(f"channel code {channel} unknown")
    h = np.frombuffer(data, dtype="<c8", count=n, offset=off).astype(np.complex64) if has_h else None
    tiles = np.frombuffer(data, dtype="<c8", count=n * (P + T), offset=off + 8 * n * has_h).reshape(n, P + T)
    preamble, samples = split_tiles(tiles, P)
    frame = Frame(
        kind=kind, channel=CHANNELS[channel], bundle_hash=bhash, snr_db=snr_db, p_tot=p_tot,
        noise_var=noise_var, image_size=(H, W), tile_size=(th, tw), n_bits=L,
        h=h, samples=samples, csi=csi, preamble=preamble,
    )
    _check_fields(frame)
    return frame


def _parse_csi(data: bytes) -> tuple[CsiConfig, int]:
    """A version-3 frame's CSI block -> (settings, P = preamble channel uses per tile)."""
    if len(data) < HEADER_SIZE + CSI_SIZE + 4:
        raise FrameError(f"truncated frame: {len(data)} bytes, a version {VERSION_CSI} header alone needs "
                         f"{HEADER_SIZE + CSI_SIZE + 4}")
    mode, q, r, pilots, k, power = _CSI.unpack_from(data, HEADER_SIZE)
    if mode != _CSI_PILOTS:
        raise FrameError(f"CSI mode {mode} unknown (version {VERSION_CSI} frames are {_CSI_PILOTS} = pilots; "
                         f"perfect-CSI frames are version {VERSION})")
    csi = csi_from_fields(pilots, r, q, power)
    if not 1 <= k <= _MAX_T:
        raise FrameError(f"plan header of {k} symbols per copy out of range (1..{_MAX_T})")
    P = pilots + k * r
    if P > _MAX_T:
        raise FrameError(f"preamble of {P} channel uses per tile out of range (1..{_MAX_T})")
    return csi, P
