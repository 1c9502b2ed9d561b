"""Checkpoint format shared with the exporter (docs/interfaces.md).

``torch.save`` of a plain dict (tensors, numbers, strings, lists, dicts), so it loads
with ``torch.load(weights_only=True)``. ``codebooks``, ``mu`` and ``distortion`` are CPU
tensors (``np.asarray`` turns them into arrays).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from escmvq.io.files import atomic_write
from escmvq.training.model import ESCMVQ
from escmvq.training.presets import Preset, preset_from_dict

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "strip_checkpoint", "CheckpointError"]

FORMAT = "escmvq-ckpt"
VERSION = 1
DEFAULT_NORMALISATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
# keys only needed to resume training
TRAINING_STATE_KEYS = ("optimizer", "rng", "np_rng", "stage_elapsed")


class CheckpointError(ValueError):
    pass


def _tensor(a, dtype):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().to(dtype).clone()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a))).to(dtype)


def save_checkpoint(path, model: ESCMVQ, preset: Preset, **extra) -> Path:
    """Write the checkpoint atomically (tmp file + rename). ``extra`` adds/overrides keys
    (``normalisation``, ``distortion``, ``dataset``, ``stage``, ``epoch``, ``history``, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = model.module if hasattr(model, "module") else model
    D = preset.D
    h, w = preset.latent_hw
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "preset": dataclasses.asdict(preset),
        "model_state": {k: v.detach().cpu().clone() for k, v in m.state_dict().items()},
        "image_size": list(preset.image_size),
        "latent_shape": [D, h, w],
        "normalisation": DEFAULT_NORMALISATION,
        "codebooks": _tensor(m.codebooks, torch.float32),
        "mu": _tensor(m.mu(), torch.float32),
        "distortion": None,
    }
    for k, v in extra.items():
        if k == "distortion":
            v = _tensor(v, torch.float64)
        ckpt[k] = v
    ckpt["preset"]["image_size"] = list(preset.image_size)
    return atomic_write(path, lambda tmp: torch.save(ckpt, tmp), force=True)


def load_checkpoint(path) -> tuple[ESCMVQ, dict]:
    """Rebuild ``ESCMVQ(preset)`` from the file and return ``(model, ckpt)`` (model in eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: not a readable escmvq checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an escmvq checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else None!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')} not supported (expected {VERSION})")
    preset = preset_from_dict(dict(ckpt["preset"]))
    model = ESCMVQ(preset)
    model.load_state_dict(ckpt["model_state"])
    model.eval()
    return model, ckpt


def strip_checkpoint(src, dst) -> Path:
    """Copy a checkpoint without the resume-only state (optimizer, RNG) for shipping."""
    ckpt = torch.load(Path(src), map_location="cpu", weights_only=True)
    for k in TRAINING_STATE_KEYS:
        ckpt.pop(k, None)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dst, lambda tmp: torch.save(ckpt, tmp), force=True)
