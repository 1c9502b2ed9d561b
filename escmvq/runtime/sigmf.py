"""A :class:`~escmvq.runtime.frame.Frame` as a SigMF recording (``NAME.sigmf-data`` + ``NAME.sigmf-meta``).

SigMF is what SDR tools (GNU Radio's SigMF blocks, inspectrum, IQEngine, ``sigmf`` in
Python) read and write, so a frame written this way can be played out by a radio or
recorded from one and handed back to ``escmvq rx``.

- ``NAME.sigmf-data``: the frame's samples as ``cf32_le`` (interleaved little-endian float32
  I/Q, i.e. complex64), tile after tile: tile ``i`` is samples ``i*U .. i*U + U - 1``, the
  same order as the ``.tx`` frame's samples; ``U = T`` with perfect CSI, and with estimated
  CSI ``U = P + T``: the tile's ``P`` pilot and plan header symbols, then its ``T`` data symbols.
- ``NAME.sigmf-meta``: the SigMF core fields (datatype, sample rate, version, description,
  recorder, the data file's sha512, one capture) and, under the ``escmvq:`` extension
  namespace (declared in ``core:extensions``, not optional: a reader without it cannot
  decode), every field of the ``.tx`` frame header: see :data:`FIELDS`.

The per-tile channel ``h`` (absent from a *received* recording with estimated CSI, whose
receiver learns the channel from the pilots) is stored as ``[re, im]`` pairs of the complex64 values; a float32
printed as a JSON double and read back is the same float32, so the round trip is exact and
``rx`` decodes a recording to the same bytes as the equivalent ``.tx`` frame.

The ``sigmf`` package (``pip install 'escmvq[radio]'``) is imported only here and only when
a recording is written or read; it validates the metadata against the SigMF schema before
anything is written, and checks the data file's sha512 when a recording is read.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from escmvq.core.vocab import CHANNELS
from escmvq.runtime import frame as _frame
from escmvq.runtime.frame import KIND_RX, KIND_TX, Frame, FrameError

__all__ = ["DATATYPE", "EXTENSION", "EXTENSION_VERSION", "FIELDS", "CSI_FIELDS", "SigMFError", "sigmf_paths",
           "frame_to_meta", "meta_to_frame", "write_sigmf", "read_sigmf", "require_sigmf", "DEFAULT_SAMPLE_RATE"]

DATATYPE = "cf32_le"
EXTENSION = "escmvq"
EXTENSION_VERSION = "1.0.0"
DEFAULT_SAMPLE_RATE = 1e6  # Hz; the link has no symbol rate of its own, so a radio picks one
_KINDS = {KIND_TX: "transmitted", KIND_RX: "received"}
_INSTALL = "pip install 'escmvq[radio]'"

# the escmvq: namespace of the metadata's "global" object: key -> what it holds
FIELDS = {
    "escmvq:frame_version": "the .tx frame format version the samples follow (QAM labelling)",
    "escmvq:kind": "'transmitted' (x_t = sqrt(p_t) s_t; the receiver applies the channel) or 'received' (y_t)",
    "escmvq:channel": "'awgn' or 'rayleigh' (block fading, one h per tile)",
    "escmvq:bundle_sha256": "hex sha256 of the bundle that produced the samples",
    "escmvq:snr_db": "SNR in dB, eq. (53)",
    "escmvq:p_tot": "total power P_tot per tile",
    "escmvq:noise_var": "noise variance sigma^2",
    "escmvq:image_size": "[H, W] of the original image",
    "escmvq:tile_size": "[th, tw]",
    "escmvq:tiles": "number of tiles n (raster order)",
    "escmvq:channel_uses_per_tile": "T: samples per tile",
    "escmvq:bits_per_tile": "L = N*B",
    "escmvq:h": "[[re, im], ...]: the channel coefficient of each tile (perfect CSI, as the frame carries it; "
                "with estimated CSI only in a transmitted recording, as the channel the receiver applies)",
    "escmvq:seed": "seed of the transmitter's channel draws (null when unknown)",
}
# estimated CSI (frame version 3) adds these; a recording without them uses perfect CSI
CSI_FIELDS = {
    "escmvq:csi": "'pilots': every tile's data symbols follow its pilots and plan header",
    "escmvq:pilots": "N, pilot symbols per tile",
    "escmvq:header_symbols": "k, QPSK symbols of one copy of the plan header",
    "escmvq:header_repetitions": "r, copies of the plan header per tile",
    "escmvq:header_scale_bits": "q, the plan header's power-scale bits",
    "escmvq:pilot_power": "power of each pilot and header symbol (null: P_tot / T)",
    "escmvq:samples_per_tile": "U = N + k r + T, samples per tile in the data file",
}


class SigMFError(FrameError):
    """A SigMF recording that cannot be written or read: the message is one line, fit for a user."""


def require_sigmf():
    """The ``sigmf`` package, or a one-line :class:`SigMFError` saying how to install it."""
    try:
        import sigmf
        from sigmf import sigmffile  # noqa: F401 - the submodule used below
    except ImportError:
        raise SigMFError(f"SigMF recordings need the sigmf package: {_INSTALL}") from None
    return sigmf


def sigmf_paths(name: str | os.PathLike) -> tuple[Path, Path]:
    """``NAME``, ``NAME.sigmf-meta`` or ``NAME.sigmf-data`` -> (data path, meta path)."""
    p = Path(name)
    if p.suffix in (".sigmf-meta", ".sigmf-data"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".sigmf-data"), p.with_name(p.name + ".sigmf-meta")


def frame_to_meta(frame: Frame, sample_rate: float = DEFAULT_SAMPLE_RATE, seed: int | None = None,
                  description: str | None = None, author: str | None = None) -> dict:
    """The SigMF ``global`` object of a frame (without ``core:sha512``, which needs the data file)."""
    _frame.validate(frame)
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise SigMFError(f"sample rate must be a positive number of Hz, got {sample_rate!r}")
    from escmvq import __version__

    g = {
        "core:datatype": DATATYPE,
        "core:sample_rate": float(sample_rate),
        "core:description": description or (
            f"escmvq {_KINDS[frame.kind]} samples: {frame.image_size[1]}x{frame.image_size[0]} image, "
            f"{frame.n_tiles} tiles x {frame.tile_layout}{', estimated CSI' if frame.estimated else ''}, {frame.channel}, SNR {frame.snr_db:g} dB; "
            f"the sample rate is nominal (default {DEFAULT_SAMPLE_RATE:g} Hz, tx --sample-rate)"),
        "core:recorder": f"escmvq {__version__}",
        "core:extensions": [{"name": EXTENSION, "version": EXTENSION_VERSION, "optional": False}],
        "escmvq:frame_version": frame.version,
        "escmvq:kind": _KINDS[frame.kind],
        "escmvq:channel": frame.channel,
        "escmvq:bundle_sha256": frame.bundle_hash.hex(),
        "escmvq:snr_db": float(frame.snr_db),
        "escmvq:p_tot": float(frame.p_tot),
        "escmvq:noise_var": float(frame.noise_var),
        "escmvq:image_size": [int(v) for v in frame.image_size],
        "escmvq:tile_size": [int(v) for v in frame.tile_size],
        "escmvq:tiles": frame.n_tiles,
        "escmvq:channel_uses_per_tile": frame.n_symbols,
        "escmvq:bits_per_tile": int(frame.n_bits),
        **_csi_meta(frame),
        **({} if frame.h is None else {"escmvq:h": [[float(v.real), float(v.imag)]
                                                    for v in np.asarray(frame.h, np.complex64)]}),
        "escmvq:seed": None if seed is None else int(seed),
    }
    if author:
        g["core:author"] = author
    return g


def _csi_meta(frame: Frame) -> dict:
    """The :data:`CSI_FIELDS` of a frame with estimated CSI (none with perfect CSI)."""
    if not frame.estimated:
        return {}
    c = frame.csi
    return {"escmvq:csi": "pilots", "escmvq:pilots": int(c.pilots), "escmvq:header_symbols": frame.header_symbols,
            "escmvq:header_repetitions": int(c.repetitions), "escmvq:header_scale_bits": int(c.scale_bits),
            "escmvq:pilot_power": None if c.pilot_power is None else float(c.pilot_power),
            "escmvq:samples_per_tile": frame.n_preamble + frame.n_symbols}


def _csi_from_meta(g: dict, T: int):
    """Version-3 metadata -> (the transmitter's :class:`~escmvq.runtime.csi.CsiConfig`, P)."""
    if g.get("escmvq:csi") != "pilots":
        raise SigMFError(f"escmvq:csi {g.get('escmvq:csi')!r} unknown (frame version {_frame.VERSION_CSI} "
                         f"recordings use 'pilots')")
    ints = {k: _get(g, f"escmvq:{k}", int, "an integer")
            for k in ("pilots", "header_symbols", "header_repetitions", "header_scale_bits", "samples_per_tile")}
    power = g.get("escmvq:pilot_power")
    if power is not None:
        power = float(_get(g, "escmvq:pilot_power", (int, float), "a number or null"))
        if power == 0:
            raise SigMFError("escmvq:pilot_power = 0: write null for the default P_tot / T")
    try:
        csi = _frame.csi_from_fields(ints["pilots"], ints["header_repetitions"], ints["header_scale_bits"],
                                     power or 0.0)
    except FrameError as e:
        raise SigMFError(str(e)) from None
    P = ints["pilots"] + ints["header_symbols"] * ints["header_repetitions"]
    if ints["header_symbols"] < 1 or ints["samples_per_tile"] != P + T:
        raise SigMFError(f"escmvq:samples_per_tile = {ints['samples_per_tile']} is not {ints['pilots']} pilots + "
                         f"{ints['header_repetitions']} x {ints['header_symbols']} header + {T} data symbols")
    return csi, P


def _get(g: dict, key: str, kind, what: str):
    if key not in g:
        raise SigMFError(f"metadata lacks {key} ({what})")
    v = g[key]
    ok = isinstance(v, kind) and not isinstance(v, bool) if kind in (int, (int, float)) else isinstance(v, kind)
    if not ok:
        raise SigMFError(f"{key} = {json.dumps(v)[:60]} is not {what}")
    return v


def _pair(g: dict, key: str) -> tuple[int, int]:
    v = _get(g, key, list, "a list of two integers")
    if len(v) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in v):
        raise SigMFError(f"{key} = {json.dumps(v)[:60]} is not a list of two integers")
    return int(v[0]), int(v[1])


def meta_to_frame(g: dict, samples: np.ndarray) -> Frame:
    """A SigMF ``global`` object and its samples (complex64, flat) -> a validated :class:`Frame`.

    Every refusal is a :class:`SigMFError` (a :class:`FrameError`) with one line.
    """
    dt = g.get("core:datatype")
    if dt != DATATYPE:
        raise SigMFError(f"datatype {dt!r} not supported: escmvq recordings are {DATATYPE} (complex64 samples)")
    exts = [e.get("name") for e in g.get("core:extensions", []) if isinstance(e, dict)]
    if EXTENSION not in exts or "escmvq:frame_version" not in g:
        raise SigMFError("not an escmvq recording (no escmvq extension in the metadata)")
    version = _get(g, "escmvq:frame_version", int, "an integer")
    try:
        _frame.check_version(version)
    except FrameError as e:
        raise SigMFError(str(e)) from None
    kind = {v: k for k, v in _KINDS.items()}.get(g.get("escmvq:kind"))
    if kind is None:
        raise SigMFError(f"escmvq:kind {g.get('escmvq:kind')!r} unknown (transmitted or received)")
    channel = _get(g, "escmvq:channel", str, "a channel name")
    if channel not in CHANNELS:
        raise SigMFError(f"escmvq:channel {channel!r} unknown (expected one of {', '.join(CHANNELS)})")
    bhash = _get(g, "escmvq:bundle_sha256", str, "a hex string")
    try:
        bhash = bytes.fromhex(bhash)
    except ValueError:
        raise SigMFError("escmvq:bundle_sha256 is not a hex string") from None
    nums = {k: float(_get(g, f"escmvq:{k}", (int, float), "a number")) for k in ("snr_db", "p_tot", "noise_var")}
    n = _get(g, "escmvq:tiles", int, "an integer")
    T = _get(g, "escmvq:channel_uses_per_tile", int, "an integer")
    L = _get(g, "escmvq:bits_per_tile", int, "an integer")
    if not (0 < n and 0 < T):
        raise SigMFError(f"escmvq:tiles = {n}, escmvq:channel_uses_per_tile = {T}: must be > 0")
    csi, P = _csi_from_meta(g, T) if version == _frame.VERSION_CSI else (None, 0)
    # a received recording with estimated CSI is decoded from its pilots: its h is never read
    h = None if csi is not None and kind == KIND_RX else _h_from_meta(g, n)
    samples = np.asarray(samples).reshape(-1)
    if samples.size != n * (P + T):
        raise SigMFError(f"the data file holds {samples.size} samples, the metadata announces {n} tiles x {P + T} = "
                         f"{n * (P + T)}" + (" (truncated)" if samples.size < n * (P + T) else ""))
    preamble, data = _frame.split_tiles(samples.reshape(n, P + T), P)
    frame = Frame(kind=kind, channel=channel, bundle_hash=bhash, image_size=_pair(g, "escmvq:image_size"),
                  tile_size=_pair(g, "escmvq:tile_size"), n_bits=L, h=h, samples=data, csi=csi, preamble=preamble,
                  **nums)
    try:
        _frame.validate(frame)
    except FrameError as e:
        raise SigMFError(str(e)) from None
    return frame


def _h_from_meta(g: dict, n: int) -> np.ndarray:
    """``escmvq:h`` -> ``[n]`` complex64."""
    hl = _get(g, "escmvq:h", list, "a list of [re, im] pairs")
    if len(hl) != n:
        raise SigMFError(f"escmvq:h holds {len(hl)} coefficients for {n} tiles")
    try:
        h = np.asarray(hl, np.float64)
        if h.shape != (n, 2):
            raise ValueError
    except (ValueError, TypeError):
        raise SigMFError("escmvq:h is not a list of [re, im] number pairs") from None
    return (h[:, 0] + 1j * h[:, 1]).astype(np.complex64)


def write_sigmf(frame: Frame, name: str | os.PathLike, sample_rate: float = DEFAULT_SAMPLE_RATE,
                seed: int | None = None, force: bool = False, description: str | None = None,
                author: str | None = None) -> tuple[Path, Path]:
    """Write ``NAME.sigmf-data`` and ``NAME.sigmf-meta``; returns their paths.

    Neither file is overwritten unless ``force``; the metadata is built and validated with
    the ``sigmf`` package before anything is written, the data file goes first (the sha512 in
    the metadata is of it), and on any failure neither file is left behind.
    """
    require_sigmf()
    from sigmf import SigMFFile
    from sigmf.error import SigMFError as _Lib

    from escmvq.runtime.files import atomic_write_bytes, check_output

    data_path, meta_path = sigmf_paths(name)
    check_output(data_path, force)
    check_output(meta_path, force)
    g = frame_to_meta(frame, sample_rate, seed, description, author)
    data = np.ascontiguousarray(frame.tile_samples(), dtype="<c8").tobytes()
    existed = data_path.exists()
    atomic_write_bytes(data_path, data, force)
    try:
        rec = SigMFFile(global_info=g, data_file=str(data_path))  # computes core:sha512 of the data file
        rec.add_capture(0, metadata={})
        rec.validate()
        meta = rec.dumps(pretty=True).encode()
        atomic_write_bytes(meta_path, meta + b"\n", force)
    except BaseException as e:
        if not existed:  # a data file without its metadata is of no use: take it back
            data_path.unlink(missing_ok=True)
        if isinstance(e, _Lib):
            raise SigMFError(f"SigMF metadata rejected by the sigmf package: {_one_line(e)}") from None
        raise
    return data_path, meta_path


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s if len(s) <= 200 else s[:197] + "..."


def read_sigmf(name: str | os.PathLike) -> Frame:
    """``NAME``/``NAME.sigmf-meta``/``NAME.sigmf-data`` -> the :class:`Frame` it records.

    The ``sigmf`` package parses and validates the metadata and checks the data file's
    sha512 (a truncated or altered data file is refused), then :func:`meta_to_frame`
    checks every ``escmvq:`` field as the ``.tx`` parser does.
    """
    require_sigmf()
    from sigmf import sigmffile
    from sigmf.error import SigMFError as _Lib

    data_path, meta_path = sigmf_paths(name)
    if not meta_path.is_file():
        raise SigMFError(f"{meta_path}: no such file")
    try:
        g = json.loads(meta_path.read_bytes().decode("utf-8")).get("global")
    except UnicodeDecodeError:  # SigMF metadata is UTF-8 JSON; the sigmf package would raise on it
        raise SigMFError(f"{meta_path}: not a SigMF metadata file (not UTF-8 text)") from None
    except (ValueError, AttributeError):
        raise SigMFError(f"{meta_path}: not a SigMF metadata file (not a JSON object)") from None
    if not isinstance(g, dict):
        raise SigMFError(f"{meta_path}: not a SigMF metadata file (no global object)")
    if g.get("core:datatype") != DATATYPE:  # before the library reads samples of a type escmvq cannot use
        raise SigMFError(f"{meta_path}: datatype {g.get('core:datatype')!r} not supported: escmvq recordings are "
                         f"{DATATYPE} (complex64 samples)")
    if not data_path.is_file():
        raise SigMFError(f"{data_path}: no such file (the samples of {meta_path.name})")
    n, U = g.get("escmvq:tiles"), g.get("escmvq:samples_per_tile", g.get("escmvq:channel_uses_per_tile"))
    if isinstance(n, int) and isinstance(U, int) and data_path.stat().st_size != 8 * n * U:
        raise SigMFError(f"{data_path}: {data_path.stat().st_size} bytes, the metadata announces {n} tiles x {U} "
                         f"complex64 samples = {8 * n * U} bytes"
                         + (" (truncated)" if data_path.stat().st_size < 8 * n * U else ""))
    try:
        rec = sigmffile.fromfile(str(meta_path))
        rec.validate()
    except _Lib as e:
        raise SigMFError(f"{meta_path}: {_one_line(e)}") from None
    try:
        samples = np.fromfile(data_path, dtype="<c8")
        return meta_to_frame(rec.get_global_info(), samples)
    except SigMFError as e:
        raise SigMFError(f"{meta_path}: {e}") from None
