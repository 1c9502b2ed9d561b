"""Atomic output: write to a temporary file beside the target, then rename (every command,
figure and stream process writes its outputs through here).

A failed or interrupted command never leaves a partial output file, and an existing
output is only replaced when the caller says so (``force``).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["OutputExistsError", "check_output", "atomic_write", "atomic_write_bytes"]


class OutputExistsError(FileExistsError):
    """The output path exists and overwriting was not allowed."""


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Fail early (before any work) when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists (pass --force to overwrite)")
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")
    return path


def _default_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], force: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``; remove it on any error."""
    path = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        if path.exists() and not force:  # appeared meanwhile
            raise OutputExistsError(f"{path} exists (pass --force to overwrite)")
        os.chmod(tmp, _default_mode())  # mkstemp makes 0600; give the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data), force)
