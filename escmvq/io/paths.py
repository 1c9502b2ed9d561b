"""The data folder (the one holding ``cifar10/`` and ``kodak/``, as ``shared/data``).

Resolution, first match wins:

1. the folder the caller was given (a command's ``--data-dir``);
2. the environment variable ``ESCMVQ_DATA``;
3. ``<checkout>/../shared/data``, the layout of a development checkout, only when it
   exists (an installed package has no such neighbour, so it is never assumed blindly).

Otherwise :class:`DataRootError`, one line naming both the option and the variable.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "DataRootError", "data_root", "checkout_data_dir"]

ENV_VAR = "ESCMVQ_DATA"


class DataRootError(FileNotFoundError):
    """No data folder was given and none was found (message: one line)."""


def checkout_data_dir() -> Path:
    """``<checkout>/../shared/data``: the checkout is the folder holding the ``escmvq`` package."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_root(data_dir: str | os.PathLike | None = None, option: str = "--data-dir") -> Path:
    """The data folder: ``data_dir`` if given, else ``$ESCMVQ_DATA``, else the checkout's
    ``../shared/data`` if it exists. ``option`` is the caller's name for ``data_dir`` in
    the error. The folder returned is not checked further: readers report what is missing.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    fallback = checkout_data_dir()
    if fallback.is_dir():
        return fallback
    raise DataRootError(f"no data folder: pass {option} DIR or set {ENV_VAR}=DIR "
                        f"(the folder holding cifar10/ and kodak/; {fallback} does not exist)")
