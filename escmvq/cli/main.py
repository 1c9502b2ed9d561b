"""Entry point of the ``escmvq`` command.

Each command module exposes ``register(app: typer.Typer) -> None``; modules must not
import torch (or other heavy optional libraries) at module level.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="escmvq",
    help="ESC-MVQ digital semantic communication: train, export, transmit, receive, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, registered in this order. Add yours here (one line).
COMMAND_MODULES: list[str] = [
    "export",
    "txrx",
    "bench",
    "train",
    "eval",
    "baselines",
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"escmvq.cli.{name}").register(app)


_register_all()


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
