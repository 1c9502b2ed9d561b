"""Shared CLI plumbing for the export/runtime commands: one-line errors, argument parsing,
output naming. No torch here."""
from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import typer

__all__ = ["cli_errors", "fail", "parse_snr", "fresh_path", "err_console", "out_console", "Terminated",
           "install_sigterm", "usage_error_line", "tile_progress"]


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler (:func:`install_sigterm`): a
    ``KeyboardInterrupt`` so that every cleanup written for Ctrl-C (temporary files and
    folders, sockets) also runs when the process is terminated (``kill``, ``timeout``)."""


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated()


def install_sigterm() -> None:
    """SIGTERM -> :class:`Terminated` in the main thread (no-op elsewhere or off POSIX)."""
    import signal
    import threading

    if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def usage_error_line(e) -> str:
    """A click/typer usage error (bad option value, unknown option, missing argument) as the
    one line ``error: ...`` the CLI promises."""
    msg = (e.format_message() if hasattr(e, "format_message") else str(e)).strip()
    msg = msg.splitlines()[0] if msg else "bad usage"
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None) if ctx is not None else None
    return f"error: {msg}" + (f" (see '{path} --help')" if path else "")


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
    except Terminated:
        fail("terminated", 143)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if os.environ.get("ESCMVQ_DEBUG"):
            raise
        known = type(e).__module__.startswith("escmvq") or isinstance(e, (OSError, ValueError))
        fail(str(e) if known else f"{type(e).__name__}: {e}")


@contextlib.contextmanager
def tile_progress(n_tiles: int, n_pixels: int, what: str):
    """A rich progress bar on stderr for an image over ``LARGE_PIXELS`` (a few megapixels):
    yields ``advance(k)`` to call after each batch of ``k`` tiles, or None for smaller images."""
    from escmvq.runtime.images import LARGE_PIXELS

    if n_pixels <= LARGE_PIXELS:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
                  TimeRemainingColumn(), console=err_console(), transient=True) as bar:
        task = bar.add_task(what, total=n_tiles)
        yield lambda k: bar.advance(task, k)


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
