"""PNG figures: matplotlib with the Agg backend (never opens a window), written
atomically, and Fig. 3 of the paper (CDF of the trained bit-flip probabilities).

matplotlib (the ``plot`` extra) is imported inside the functions only, so importing this
module costs nothing where no figure is drawn.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from escmvq.io.files import atomic_write

__all__ = ["pyplot", "save_figure", "mu_cdf"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (forced: a figure is always a file here)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120, crop: bool = True) -> Path:
    """Save ``fig`` as PNG at ``path`` (replacing an existing file) through a temporary file
    in the same folder, so a failure leaves no partial file; closes the figure either way.
    ``crop``: trim the margins (``bbox_inches="tight"``); without it the PNG has exactly the
    figure's size times ``dpi``. Raises FileNotFoundError when the folder does not exist."""
    plt = pyplot()
    kw = {"bbox_inches": "tight"} if crop else {}
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, **kw), force=True)
    finally:
        plt.close(fig)


def mu_cdf(mu: np.ndarray, path: str | os.PathLike, title: str | None = None, mu_min=None) -> Path:
    """Fig. 3: empirical CDF of the bit-flip probabilities of each codebook, log x axis.

    mu : ``[V, N, B]`` floats in (0, 0.5] (codebook 0 = lowest), one curve per codebook;
    mu_min : ``[V]`` floors, added to the legend when given. Returns the PNG's path, a
    720x480 image (6x4 in at 120 dpi, fixed so that figures of several runs line up).
    """
    mu = np.asarray(mu, np.float64)
    if mu.ndim != 3:
        raise ValueError(f"mu: expected [V, N, B], got shape {mu.shape}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in range(mu.shape[0]):
        x = np.sort(mu[v].ravel())
        label = f"codebook {v + 1}" + (f" (mu_min={mu_min[v]:g})" if mu_min is not None else "")
        ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel(r"bit-flip probability $\mu$")
    ax.set_ylabel("CDF")
    ax.set_ylim(0, 1.01)
    ax.set_title(title or "CDF of the trained bit-flip probabilities (Fig. 3)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120, crop=False)
