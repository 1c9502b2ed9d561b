"""The model bundle: a folder of ONNX graphs and numpy tables described by ``manifest.json``.

Layout (format ``escmvq-bundle`` version 1)::

    NAME.escmvq/
      manifest.json        format, version, shapes, allocator settings, library versions,
                           export self-check, and the sha256 + size of every other file
      encoder.onnx         x01 [b, 3, H, W] in [0, 1] -> z [b, D, H/4, W/4] (normalisation folded in)
      decoder.onnx         z [b, D, h, w] -> x01_hat [b, 3, 4h, 4w]; a reliability-aware decoder
                           (manifest model.decoder_cond = "codebook") has a second input
                           cond [b, V+1, h, w]: the one-hot map of each sub-vector's codebook
                           (channel V: not sent), see :func:`decoder_feed`
      tables.npz           codebooks [V, K, D] f32, mu [V, N, B] f32, distortion [V, N] f64;
                           optional training-set statistics (bundles exported before they
                           existed lack them): label_prior [V, N, K] f32 (codeword usage per
                           sub-vector position, rows sum to 1), latent_mean [N, D] f32 (the
                           substitute of a sub-vector that is not sent), erasure_distortion
                           [N] f64 (E||z_i - latent_mean_i||^2, the "not sent" column of (31))
      allocator.npz        Allocator.state(): the channel-independent precomputation
      encoder.int8.onnx    optional (export --int8): static QDQ int8
      decoder.int8.onnx    optional
      *.fp16.engine        optional (export --trt): TensorRT engines

The bundle's identity (:attr:`Bundle.hash`, carried in every frame header) is the sha256
of the canonical JSON of the manifest's content fields (:func:`manifest_hash`), which pin
every file by sha256; loading verifies each file against it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from escmvq.core.pvq import codebook_map
from escmvq.runtime.alloc_adapter import allocator_from_state

__all__ = [
    "FORMAT", "FORMAT_VERSION", "MANIFEST", "BundleError", "Bundle", "load_bundle",
    "default_bundle_path", "sha256_file", "manifest_hash", "parameter_bytes", "decoder_feed", "graph_file",
    "GRAPH_PARTS",
]

FORMAT = "escmvq-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH_PARTS = ("encoder", "decoder")


def graph_file(part: str, precision: str = "fp32", engine: bool = False) -> str:
    """File name of one half of the network in a bundle, the one rule the exporter, the
    endpoints and the benchmarks share: ``encoder.onnx`` (fp32), ``encoder.int8.onnx``,
    ``encoder.fp16.engine`` (``engine=True``: a TensorRT engine, always fp16). Any other
    precision names ``{part}.{precision}.onnx``, which a bundle simply does not have."""
    if part not in GRAPH_PARTS:
        raise ValueError(f"part: expected one of {', '.join(GRAPH_PARTS)}, got {part!r}")
    if engine:
        if precision != "fp16":
            raise ValueError(f"TensorRT engines are fp16, got precision {precision!r}")
        return f"{part}.fp16.engine"
    return f"{part}.onnx" if precision == "fp32" else f"{part}.{precision}.onnx"


REQUIRED_FILES = (graph_file("encoder"), graph_file("decoder"), "tables.npz", "allocator.npz")


class BundleError(ValueError):
    """A bundle that cannot be used: the message is one line, fit for a user."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


IDENTITY_KEYS = ("format", "format_version", "model", "files")
# what an export may recommend to the receiver (manifest "receiver": {"decoding": ...})
RECOMMENDED_DECODINGS = ("hard", "soft")


def manifest_hash(manifest: dict) -> bytes:
    """The bundle's identity (32 bytes): sha256 of the canonical JSON of the manifest's
    content fields (format, shapes and allocator settings, and every file's sha256 and
    size), so exporting the same checkpoint twice gives the same identity: the creation
    time, source paths, library versions and self-check report do not enter it."""
    return hashlib.sha256(canonical_json({k: manifest.get(k) for k in IDENTITY_KEYS})).digest()


PARAMETER_FILES = (graph_file("encoder"), graph_file("decoder"), "tables.npz")


def parameter_bytes(manifest: dict) -> int:
    """Bytes of the encoder + decoder ONNX and the tables of a bundle (its model memory)."""
    return sum(int(meta["bytes"]) for name, meta in manifest["files"].items() if name in PARAMETER_FILES)


def decoder_feed(zq: np.ndarray, codebooks: np.ndarray | int, V: int, cond: bool,
                 decoder_codebook: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The decoder graph's inputs: ``zq : [b, D, h, w]`` float32 and, for a reliability-aware
    decoder (``cond``), ``cond : [b, V+1, h, w]`` float32 built from ``codebooks : [b, N]``
    int (``V`` = not sent) or one codebook index for every sub-vector.
    ``decoder_codebook : [V_a + 1]`` int or None: for a bundle whose allocator has more rows
    ``V_a`` than the decoder has codebooks (robust rows, :attr:`Bundle.decoder_codebooks`), the
    decoder's codebook of each row and of "not sent"; then ``codebooks`` index rows, and ``V``
    is ignored (the map has ``decoder_codebook[-1] + 1`` channels)."""
    feed = {"z": np.ascontiguousarray(zq, np.float32)}
    if cond:
        b, _, h, w = zq.shape
        cbs = np.broadcast_to(np.asarray(codebooks), (b, h * w))
        if decoder_codebook is not None:
            cbs, V = decoder_codebook[cbs], int(decoder_codebook[-1])
        feed["cond"] = codebook_map(cbs, V, h, w)
    return feed


def default_bundle_path() -> Path:
    """The shipped default bundle (package data ``escmvq/models/default``)."""
    return Path(__file__).resolve().parent.parent / "models" / "default"


@dataclass
class Bundle:
    path: Path
    manifest: dict
    hash: bytes
    codebooks: np.ndarray  # [V, K, D] float32
    mu: np.ndarray  # [V, N, B] float32
    distortion: np.ndarray  # [V, N] float64
    allocator_state: dict = field(repr=False)
    label_prior: np.ndarray | None = field(default=None, repr=False)  # [V, N, K] float32 or None
    latent_mean: np.ndarray | None = field(default=None, repr=False)  # [N, D] float32 or None
    erasure_distortion: np.ndarray | None = field(default=None, repr=False)  # [N] float64 or None

    # --- shapes, from the manifest -------------------------------------------------
    @property
    def model(self) -> dict:
        return self.manifest["model"]

    @property
    def tile_size(self) -> tuple[int, int]:
        return tuple(self.model["tile_size"])

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.model["latent_shape"])

    @property
    def n_bits(self) -> int:  # L = N*B
        return int(self.model["N"]) * int(self.model["B"])

    @property
    def n_symbols(self) -> int:  # T = L / R
        return int(self.model["T"])

    @property
    def rate(self) -> int:
        return int(self.model["rate"])

    @property
    def decoder_cond(self) -> str | None:
        """"codebook" for a reliability-aware decoder (second input ``cond``), else None."""
        return self.model.get("decoder_cond")

    @property
    def decoder_codebooks(self) -> np.ndarray | None:
        """``[V+1]`` int64, the decoder's codebook for each allocator row and for "not sent"
        (the last entry), when the bundle has robust rows (``escmvq export --robust-targets``:
        rows past the trained codebooks that send the last one at a higher BER target); else None."""
        dc = self.model.get("decoder_codebook")
        return None if dc is None else np.asarray(list(dc) + [max(dc) + 1], np.int64)

    @property
    def recommended_decoding(self) -> str | None:
        """The receiver decoding this bundle was measured to do best with ("hard" | "soft"),
        from the manifest's ``receiver`` section (``escmvq export --decoding``); None when it
        names none. Not part of the identity: it changes nothing on the air."""
        return (self.manifest.get("receiver") or {}).get("decoding")

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    @cached_property
    def allocator(self):
        """The allocator rebuilt from its stored state (no recomputation)."""
        return allocator_from_state(self.allocator_state)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_bundle(path: str | os.PathLike | None = None, verify: bool = True) -> Bundle:
    """Load a bundle folder (default: the shipped one) and verify every file's sha256."""
    path = Path(path) if path is not None else default_bundle_path()
    mpath = path / MANIFEST
    if not mpath.is_file():
        if path == default_bundle_path():
            raise BundleError(f"no default bundle shipped at {path}; pass --bundle or run `escmvq export`")
        raise BundleError(f"{path}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {manifest.get('format_version')} not supported "
                          f"(this build reads {FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict) or any(f not in files for f in REQUIRED_FILES):
        raise BundleError(f"{path}: manifest lacks required files {REQUIRED_FILES}")
    for name, meta in files.items():
        fp = path / name
        if "/" in name or "\\" in name or name.startswith("."):
            raise BundleError(f"{path}: manifest names a file outside the bundle: {name!r}")
        if not fp.is_file():
            raise BundleError(f"{path}: file {name} listed in the manifest is missing")
        if verify:
            if fp.stat().st_size != meta.get("bytes"):
                raise BundleError(f"{path}: {name} has {fp.stat().st_size} bytes, manifest says {meta.get('bytes')} (corrupt or modified bundle)")
            if sha256_file(fp) != meta.get("sha256"):
                raise BundleError(f"{path}: {name} sha256 does not match the manifest (corrupt or modified bundle)")
    try:
        tables = _load_npz(path / "tables.npz")
        alloc_state = _load_npz(path / "allocator.npz")
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable tables ({e})") from None
    m = manifest["model"]
    V, K, D, N, B = (int(m[k]) for k in ("V", "K", "D", "N", "B"))
    cb, mu, dist = tables.get("codebooks"), tables.get("mu"), tables.get("distortion")
    if cb is None or cb.shape != (V, K, D) or mu is None or mu.shape != (V, N, B) or dist is None or dist.shape != (V, N):
        raise BundleError(f"{path}: tables.npz shapes disagree with the manifest (V={V}, K={K}, D={D}, N={N}, B={B})")
    _check_decoder_codebook(path, m.get("decoder_codebook"), cb)
    stats = _optional_stats(path, tables, V, K, D, N)
    rec = manifest.get("receiver")
    if rec is not None and (not isinstance(rec, dict) or rec.get("decoding") not in RECOMMENDED_DECODINGS):
        raise BundleError(f"{path}: manifest 'receiver' must be {{\"decoding\": \"hard\" | \"soft\"}}, got {rec!r}")
    return Bundle(
        path=path, manifest=manifest, hash=manifest_hash(manifest),
        codebooks=cb.astype(np.float32), mu=mu.astype(np.float32), distortion=dist.astype(np.float64),
        allocator_state=alloc_state, **stats,
    )


def _check_decoder_codebook(path: Path, dc, cb: np.ndarray) -> None:
    """Robust rows (manifest ``model.decoder_codebook``): one entry per allocator row, 0, 1, ..
    for the trained codebooks and then the last one repeated, each row's codewords its codebook's."""
    if dc is None:
        return
    V = cb.shape[0]
    ok = isinstance(dc, list) and len(dc) == V and all(isinstance(v, int) and not isinstance(v, bool) for v in dc)
    if ok:
        Vd = max(dc) + 1
        ok = dc == list(range(Vd)) + [Vd - 1] * (V - Vd) and all(np.array_equal(cb[v], cb[d]) for v, d in enumerate(dc))
    if not ok:
        raise BundleError(f"{path}: manifest model.decoder_codebook must list 0..V'-1 then V'-1 again for the robust rows, "
                          f"each row holding its codebook's codewords; got {dc!r}")


def _optional_stats(path: Path, tables: dict, V: int, K: int, D: int, N: int) -> dict:
    """The optional training-set statistics of ``tables.npz`` (None where absent), shape-checked."""
    want = {"label_prior": ((V, N, K), np.float32), "latent_mean": ((N, D), np.float32),
            "erasure_distortion": ((N,), np.float64)}
    out = {}
    for name, (shape, dtype) in want.items():
        a = tables.get(name)
        if a is not None:
            if a.shape != shape or not np.all(np.isfinite(a)):
                raise BundleError(f"{path}: tables.npz {name} has shape {a.shape} (expected {shape}) or non-finite values")
            a = a.astype(dtype)
        out[name] = a
    return out
