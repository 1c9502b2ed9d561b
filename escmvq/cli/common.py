"""Shared CLI plumbing for the export/runtime commands: one-line errors, argument parsing,
output naming. No torch here."""
from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import typer

__all__ = ["cli_errors", "fail", "parse_snr", "fresh_path", "err_console", "out_console"]


def err_console():
    from rich.console import Console

    return Console(stderr=True)


def out_console():
    from rich.console import Console

    return Console()


def fail(msg: str, code: int = 1):
    """Print ``error: msg`` (one line) to stderr and exit non-zero."""
    first = str(msg).strip().splitlines()[0] if str(msg).strip() else "unknown error"
    print(f"error: {first}", file=sys.stderr)
    raise typer.Exit(code)


@contextlib.contextmanager
def cli_errors():
    """Turn any exception into a one-line error and a non-zero exit (set ESCMVQ_DEBUG=1 for
    the traceback). Typer's own exits pass through."""
    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if os.environ.get("ESCMVQ_DEBUG"):
            raise
        known = type(e).__module__.startswith("escmvq") or isinstance(e, (OSError, ValueError))
        fail(str(e) if known else f"{type(e).__name__}: {e}")


def parse_snr(text: str) -> float:
    """An SNR in dB from the command line: a finite number within [-50, 100]."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        fail(f"--snr: {text!r} is not a number (give the SNR in dB, e.g. --snr 10)", 2)
    if not math.isfinite(v) or not -50.0 <= v <= 100.0:
        fail(f"--snr: {text} dB is outside [-50, 100] dB", 2)
    return v


def fresh_path(stem: Path, suffix: str) -> Path:
    """``stem + suffix``, or ``stem-1 + suffix``, ... : a default output name that never
    overwrites an existing file."""
    p = Path(f"{stem}{suffix}")
    i = 1
    while p.exists():
        p = Path(f"{stem}-{i}{suffix}")
        i += 1
    return p
