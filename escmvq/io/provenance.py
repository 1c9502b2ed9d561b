"""Where a result came from: the format header and the environment that every JSON result of
escmvq carries (``escmvq link --json``, ``escmvq bench --json``), so a number found later in
a file can be traced to the software and machine that made it.

Versions are read from the installed distributions' metadata (nothing is imported), so this
stays on the bottom floor and costs a few milliseconds.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
import sys

__all__ = ["environment", "stamp", "package_version"]

_PACKAGES = ("escmvq", "numpy", "onnxruntime", "onnxruntime-gpu", "Pillow")


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, None when it is not installed."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def environment() -> dict:
    """Host, platform, Python and the versions of the packages a result depends on
    (absent packages are left out)."""
    env = {"host": platform.node(), "machine": platform.machine(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    for name in _PACKAGES:
        v = package_version(name)
        if v is not None:
            env[name.lower()] = v
    return env


def stamp(fmt: str, version: int, env: dict | None = None) -> dict:
    """The header of a result document: ``format``, ``version``, ``created_utc`` (ISO 8601,
    seconds) and ``environment`` (``env``, e.g. one extended by the caller; default
    :func:`environment`)."""
    return {"format": fmt, "version": int(version),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment() if env is None else env}
