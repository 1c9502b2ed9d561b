"""Write the bundle's tables and manifest (format in :mod:`escmvq.runtime.bundle`)."""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from escmvq.runtime.bundle import FORMAT, FORMAT_VERSION, MANIFEST, manifest_hash, sha256_file

__all__ = ["write_tables", "write_allocator", "library_versions", "write_manifest"]


def write_tables(folder: Path, codebooks: np.ndarray, mu: np.ndarray, distortion: np.ndarray,
                 stats: dict | None = None) -> None:
    """tables.npz; ``stats``: :func:`escmvq.export.stats.latent_statistics`'s tables (optional)."""
    extra = {} if stats is None else {k: np.asarray(stats[k]) for k in ("label_prior", "latent_mean", "erasure_distortion")}
    np.savez(folder / "tables.npz", codebooks=np.asarray(codebooks, np.float32), mu=np.asarray(mu, np.float32),
             distortion=np.asarray(distortion, np.float64), **extra)


def write_allocator(folder: Path, state: dict) -> None:
    arrays = {}
    for k, v in state.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"allocator state {k!r} is not a plain array (dtype object)")
        arrays[k] = a
    np.savez(folder / "allocator.npz", **arrays)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("escmvq", "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "scipy", "pillow"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write_manifest(folder: Path, manifest: dict) -> tuple[bytes, dict]:
    """Hash every file in ``folder`` into ``manifest['files']`` and write it; returns (bundle hash, manifest)."""
    files = {}
    for p in sorted(folder.iterdir()):
        if p.name == MANIFEST or not p.is_file():
            continue
        files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return manifest_hash(manifest), manifest
