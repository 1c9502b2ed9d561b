"""What the training test files share."""
from __future__ import annotations

import torch


def run_keeping_latent(model, x: torch.Tensor, stage: int = 1, tau: float = 0.5, seed: int = 0):
    """Forward and backward of ``model(x, stage, tau, Generator(seed))``; returns
    ``(loss, stats, z)`` with ``z`` the encoder output, its ``.grad`` kept."""
    z_out = {}

    def keep(module, inputs, out):
        out.retain_grad()
        z_out["z"] = out

    hook = model.encoder.register_forward_hook(keep)
    try:
        loss, st = model(x, stage, tau, torch.Generator().manual_seed(seed))
        loss.backward()
    finally:
        hook.remove()
    return loss, st, z_out["z"]
