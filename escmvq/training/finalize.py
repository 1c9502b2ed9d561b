"""The exportable checkpoint of a training run: ``final.ckpt`` with the distortion table (31).

:func:`~escmvq.training.trainer.train` writes ``last.ckpt`` every epoch (weights, optimizer,
RNG: enough to resume). The exporter also needs the expected distortion of every codebook
and sub-vector over the training images (table (31), which the allocators use), so a run
ends with :func:`finalize`, which computes it with the trained model and writes
``final.ckpt``. ``escmvq train`` calls it; a Python caller of the trainer calls it too.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["finalize", "REWRITTEN_KEYS"]

# keys of last.ckpt that save_checkpoint rewrites from the model and preset (or that the
# final table replaces); every other key (history, normalisation, optimizer, ...) is kept
REWRITTEN_KEYS = ("format", "version", "preset", "model_state", "image_size", "latent_shape", "codebooks", "mu",
                    "distortion")


def finalize(run, images: np.ndarray, distortion_images: int | None = None, out=None,
             trained_at: float | None = None, log=None) -> Path:
    """Compute table (31) with the trained model and write the exportable checkpoint.

    run : the dict returned by :func:`~escmvq.training.trainer.train`, or a run folder (its
    ``last.ckpt`` is read); images : ``[n, H, W, 3]`` uint8 training images (the table is the
    mean over the first ``distortion_images`` of them; None: all); out : the checkpoint to write
    (default: ``final.ckpt`` beside ``last.ckpt``); trained_at : ``time.time()`` when training
    ended (default: now), so the recorded ``train_wall_s`` (the whole run, earlier processes of
    a resumed run included) also counts the table's time; log : callable(str) told the
    table's size and time (None: silent).

    Returns the path written: the model and preset as saved by
    :func:`~escmvq.training.checkpoint.save_checkpoint`, ``distortion [V, N]`` float64,
    ``distortion_images``, ``train_wall_s`` and every other key of ``last.ckpt`` (history,
    normalisation, resume state).
    """
    import torch

    from escmvq.training.checkpoint import load_checkpoint, save_checkpoint
    from escmvq.training.trainer import compute_distortion

    trained_at = time.time() if trained_at is None else trained_at
    if isinstance(run, dict):
        model, preset, norm, last = run["model"], run["preset"], run["normalisation"], Path(run["last"])
        train_seconds = float(run["summary"]["train_seconds"])
    else:
        last = Path(run) / "last.ckpt"
        model, ck = load_checkpoint(last)
        preset, norm, train_seconds = model.preset, ck["normalisation"], float(ck.get("wall_s", 0.0))
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    imgs = images if distortion_images is None else images[:distortion_images]
    t1 = time.time()
    model.eval()
    table = compute_distortion(model, imgs, mean, std)
    if log is not None:
        log(f"distortion table (31) over {len(imgs)} training images: {time.time() - t1:.1f} s")
    ck = torch.load(last, map_location="cpu", weights_only=True)
    keep = {k: v for k, v in ck.items() if k not in REWRITTEN_KEYS}
    keep["distortion"] = table
    keep["distortion_images"] = len(imgs)
    keep["train_wall_s"] = train_seconds + (time.time() - trained_at)
    return save_checkpoint(Path(out) if out is not None else last.with_name("final.ckpt"), model, preset, **keep)
