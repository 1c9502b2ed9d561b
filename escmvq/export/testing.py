"""Helpers for the test suite: a tiny (untrained) checkpoint and bundle, built once per
pytest session (imports torch)."""
from __future__ import annotations

from pathlib import Path

from escmvq.io.paths import DataRootError, checkout_data_dir, data_root

__all__ = ["tiny_checkpoint", "tiny_bundle", "KODAK", "CIFAR_TEST"]

try:  # the data folder of escmvq.io.paths.data_root ($ESCMVQ_DATA, else the checkout's ../shared/data)
    SHARED = data_root()
except DataRootError:  # none: the paths below do not exist and the tests that need them skip
    SHARED = checkout_data_dir()
KODAK = SHARED / "kodak"
CIFAR_TEST = SHARED / "cifar10" / "test.npz"


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """An untrained ``tiny``-preset checkpoint whose codebooks are spread over the latent
    range (data-initialised from a few encoder outputs) so labels vary."""
    import torch

    from escmvq.training.checkpoint import save_checkpoint
    from escmvq.training.model import ESCMVQ
    from escmvq.training.presets import get_preset

    if path.exists():
        return path
    torch.manual_seed(seed)
    preset = get_preset("tiny")
    model = ESCMVQ(preset).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 3, *preset.image_size, generator=g) * 2 - 1
    with torch.no_grad():
        z = model.encoder(x)
        for v in range(preset.V):
            model.init_codebook_from_data(z, v, g)
    return save_checkpoint(path, model, preset, dataset="synthetic (test)")


def tiny_bundle(folder: Path, int8: bool = True) -> Path:
    """Export the tiny checkpoint to ``folder/tiny.escmvq`` (reused if present)."""
    from escmvq.export.pipeline import export_checkpoint

    out = folder / "tiny.escmvq"
    if (out / "manifest.json").exists():
        return out
    ckpt = tiny_checkpoint(folder / "tiny.ckpt")
    calib = CIFAR_TEST if CIFAR_TEST.exists() else KODAK
    export_checkpoint(ckpt, out, calib, n_calib=64, n_check=32, int8=int8, log=lambda m: None)
    return out
