"""Entry point of the ``escmvq`` command.

Each command module exposes ``register(app: typer.Typer) -> None``; modules must not
import torch (or other heavy optional libraries) at module level.
"""
from __future__ import annotations

import contextlib
import importlib
import sys

import typer
from typer.core import TyperGroup

from escmvq.cli.common import Terminated, install_sigterm, usage_error_line

try:  # typer >= 0.2x vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_exc


@contextlib.contextmanager
def _one_line_errors():
    """Usage errors (bad option value, unknown option or command, missing argument) as one
    line ``error: ...`` and exit 2, instead of typer's boxed usage text; SIGTERM as
    ``error: terminated`` and exit 143 for commands that do not handle it themselves."""
    try:
        yield
    except _click_exc.UsageError as e:
        if isinstance(e, getattr(_click_exc, "NoArgsIsHelpError", ())):
            raise  # bare `escmvq`: typer prints the help
        print(usage_error_line(e), file=sys.stderr)
        raise typer.Exit(2) from None
    except Terminated:
        print("error: terminated", file=sys.stderr)
        raise typer.Exit(143) from None


class OneLineErrorsGroup(TyperGroup):
    """The ``escmvq`` group: parses the command line inside :func:`_one_line_errors`
    (both the group's own options and the sub-command's, which click parses in ``invoke``)."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _one_line_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _one_line_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=OneLineErrorsGroup,
    name="escmvq",
    help="ESC-MVQ digital semantic communication: train, export, transmit, receive, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        from escmvq.io.provenance import package_version

        print(f"escmvq {package_version('escmvq') or 'unknown (not installed)'}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the installed escmvq version and exit.")) -> None:
    """ESC-MVQ digital semantic communication: train, export, transmit, receive, benchmark."""


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
    install_sigterm()  # SIGTERM runs the same cleanup as Ctrl-C (temporary outputs, sockets)
    app()


if __name__ == "__main__":
    main()
