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


class CliResult:
    """What a CLI test reads of a typer run: ``returncode``, ``stdout`` (typer's output),
    ``stderr`` (the exception, if one escaped)."""

    def __init__(self, r):
        self.returncode = r.exit_code
        self.stdout = r.output
        self.stderr = "" if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)


def train_cli(*args) -> CliResult:
    """Run ``escmvq.cli.train``'s commands in-process (no torch import per call)."""
    import typer
    from typer.testing import CliRunner

    from escmvq.cli import train as train_cli_module

    app = typer.Typer(pretty_exceptions_enable=False)
    train_cli_module.register(app)
    return CliResult(CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}))
