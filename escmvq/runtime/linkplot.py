"""One PNG that shows what a link run did (``escmvq link --plot``).

Panels, from a :class:`~escmvq.runtime.link.LinkCapture` (``run_link(..., capture=True)``):

1. the received constellation, equalised ``y / (h sqrt(p_t))``, coloured by QAM order (a
   sample of tiles when there are many; unused channel uses, order 0, are counted, not drawn);
2. the power ``p_t / sigma^2`` of every channel use of a representative tile (median gamma),
   coloured by order, with the 5-95 % range over all tiles;
3. one tile: its codebook per sub-vector on the latent grid (``not sent`` has its own colour,
   wrong labels are outlined); many tiles: ``gamma = |h|^2 / sigma^2`` in dB and the mean
   codebook per tile, both over the tile grid;
4. the original beside the reconstruction.

matplotlib (the ``plot`` extra) is imported only inside the functions, with the Agg backend;
this module itself needs numpy only (no torch).
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["PlotUnavailable", "INSTALL_HINT", "require_matplotlib", "link_figure", "render_link_plot",
           "save_link_plot", "ORDER_NAMES"]

INSTALL_HINT = "pip install 'escmvq[plot]'"
ORDER_NAMES = {2: "QPSK", 4: "16-QAM", 6: "64-QAM", 8: "256-QAM"}
_ORDER_COLOURS = {2: "#1f77b4", 4: "#ff7f0e", 6: "#2ca02c", 8: "#d62728"}
_UNUSED = "0.55"
_ERASED = "#d9d9d9"


class PlotUnavailable(ImportError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailable` (one line, naming the extra) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(f"the link plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def _plt():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _check(cap) -> tuple[int, int, int]:
    n, T = np.shape(cap.y)
    N = np.shape(cap.codebooks)[1]
    for name, shape in (("h", (n,)), ("gamma", (n,)), ("codebooks", (n, N)), ("orders", (n, T)),
                        ("powers", (n, T)), ("label_errors", (n, N))):
        if np.shape(getattr(cap, name)) != shape:
            raise ValueError(f"capture.{name}: expected shape {shape}, got {np.shape(getattr(cap, name))}")
    if n == 0:
        raise ValueError("capture: no tiles")
    if cap.grid[0] * cap.grid[1] != n:
        raise ValueError(f"capture.grid {cap.grid} does not hold {n} tiles")
    return n, T, N


def _used(cap) -> np.ndarray:
    return (np.asarray(cap.orders) > 0) & (np.asarray(cap.powers) > 0)


def _db(x: np.ndarray, floor: float = -40.0) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.maximum(10 * np.log10(np.asarray(x, np.float64)), floor)


def _constellation(ax, cap, max_tiles: int, seed: int) -> None:
    from matplotlib.lines import Line2D

    from escmvq.core import channels, qam

    n = len(cap.y)
    pick = np.arange(n) if n <= max_tiles else np.sort(np.random.default_rng(seed).choice(n, max_tiles, replace=False))
    s = channels.equalize(np.asarray(cap.y)[pick], np.asarray(cap.h)[pick], np.asarray(cap.powers)[pick])
    orders = np.asarray(cap.orders)
    used = _used(cap)
    used_pick, orders_pick = used[pick], orders[pick]
    present = [m for m in ORDER_NAMES if np.any(used & (orders == m))]
    amp = max([float(np.abs(qam.constellation(m).real).max()) for m in present] or [1.0])
    lim = max(1.5, 1.35 * amp)
    handles, outside, shown = [], 0, 0
    n_pts = max(int(np.sum(used_pick)), 1)
    size = float(np.clip(4000.0 / n_pts, 2.0, 14.0))
    for m in sorted(present, reverse=True):  # dense orders first, QPSK on top
        pts = s[used_pick & (orders_pick == m)]
        shown += pts.size
        outside += int(np.sum((np.abs(pts.real) > lim) | (np.abs(pts.imag) > lim)))
        ax.scatter(pts.real, pts.imag, s=size, color=_ORDER_COLOURS[m], alpha=0.4 if size < 6 else 0.75,
                   linewidths=0, rasterized=True, zorder=2)
    for m in present:
        ideal = qam.constellation(m)
        ax.plot(ideal.real, ideal.imag, "+", color="0.15", ms=3 if m >= 6 else 5, mew=0.5, alpha=0.6, zorder=3)
    for m in present:
        k = int(np.sum(used & (orders == m)))
        handles.append(Line2D([], [], ls="none", marker="o", ms=5, color=_ORDER_COLOURS[m],
                              label=f"{ORDER_NAMES[m]} ({k:,})"))
    if present:
        handles.append(Line2D([], [], ls="none", marker="+", color="k", ms=6, label="ideal points"))
    unused = int(np.sum(~used))
    if unused:
        handles.append(Line2D([], [], ls="none", marker="x", color=_UNUSED, ms=5,
                              label=f"unused, not drawn ({unused:,})"))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_box_aspect(1)  # equal scaling (same limits); set_aspect("equal") upsets constrained layout
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("in-phase")
    ax.set_ylabel("quadrature")
    which = "1 tile" if n == 1 else (f"all {n} tiles" if len(pick) == n else f"{len(pick)} of {n} tiles")
    ax.set_title(f"received constellation, equalised\n$y/(h\\sqrt{{p_t}})$, {which}", fontsize=10)
    if shown and outside:
        ax.text(0.02, 0.02, f"{100 * outside / shown:.1f}% of points outside", transform=ax.transAxes,
                fontsize=7, color="0.3", va="bottom")
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2,
              borderaxespad=0, frameon=False, title="symbols, all tiles", title_fontsize=7)


def _representative(cap) -> int:
    g = np.asarray(cap.gamma, np.float64)
    return int(np.argsort(g, kind="stable")[(len(g) - 1) // 2])


def _powers(ax, cap) -> None:
    from matplotlib.lines import Line2D

    n, T = np.shape(cap.powers)
    p = np.asarray(cap.powers, np.float64) / float(cap.noise_var)
    orders = np.asarray(cap.orders)
    r = _representative(cap)
    t = np.arange(T)
    used = _used(cap)[r]
    handles = []
    for m in ORDER_NAMES:
        sel = used & (orders[r] == m)
        if sel.any():
            ax.bar(t[sel], p[r, sel], width=1.0, color=_ORDER_COLOURS[m], linewidth=0)
            handles.append(Line2D([], [], ls="none", marker="s", ms=6, color=_ORDER_COLOURS[m],
                                  label=f"{ORDER_NAMES[m]} ({int(sel.sum())})"))
    if (~used).any():
        ax.plot(t[~used], np.zeros(int((~used).sum())), "x", color=_UNUSED, ms=4, clip_on=False)
        handles.append(Line2D([], [], ls="none", marker="x", color=_UNUSED, ms=5,
                              label=f"unused, $p_t = 0$ ({int((~used).sum())})"))
    if n > 1:
        lo, hi = np.percentile(p, [5, 95], axis=0)
        ax.step(t, hi, where="mid", color="k", lw=0.8, ls=":")
        ax.step(t, lo, where="mid", color="k", lw=0.8, ls=":")
        handles.append(Line2D([], [], color="k", lw=0.8, ls=":", label=f"5-95 % over {n} tiles"))
    mean = float(cap.p_tot) / T / float(cap.noise_var)
    ax.axhline(mean, color="0.4", lw=0.8, ls="--")
    handles.append(Line2D([], [], color="0.4", lw=0.8, ls="--", label="$P_{tot}/T$"))
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(0, max(float(p.max()), mean) * 1.08 or 1.0)
    ax.set_xlabel("channel use $t$")
    ax.set_ylabel("$p_t\\,/\\,\\sigma^2$")
    g = _db(np.asarray(cap.gamma)[r:r + 1])[0]
    which = f"tile {r} (median $\\gamma$ = {g:.1f} dB)" if n > 1 else f"$\\gamma$ = {g:.1f} dB"
    ax.set_title(f"power per symbol\n{which}", fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2,
              borderaxespad=0, frameon=False)


def _codebook_map(fig, ax, cap, r: int) -> None:
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Rectangle

    import matplotlib

    V = int(cap.n_codebooks)
    cb = np.asarray(cap.codebooks)[r]
    lh, lw = cap.latent_hw
    if lh * lw != cb.size:
        lh, lw = 1, cb.size
    cb = np.where((cb >= 0) & (cb < V), cb, V).reshape(lh, lw)
    base = matplotlib.colormaps["viridis"].resampled(max(V, 2))
    cols = [base(v / max(V - 1, 1)) for v in range(V)] + [_ERASED]
    cmap = ListedColormap(cols)
    norm = BoundaryNorm(np.arange(-0.5, V + 1.5), cmap.N)
    im = ax.imshow(cb, cmap=cmap, norm=norm, interpolation="nearest")
    for (i, j), v in np.ndenumerate(cb):
        if v == V:
            txt, col = "-", "0.35"
        else:
            rgb = np.asarray(cols[v][:3])
            txt, col = str(v + 1), "k" if rgb @ [0.299, 0.587, 0.114] > 0.5 else "w"
        ax.text(j, i, txt, ha="center", va="center", fontsize=8 if lw <= 16 else 5, color=col)
    err = np.asarray(cap.label_errors)[r].reshape(lh, lw) & (cb < V)
    for i, j in zip(*np.nonzero(err)):
        ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="red", lw=1.2))
    cbar = fig.colorbar(im, ax=ax, ticks=np.arange(V + 1), shrink=0.9)
    cbar.ax.set_yticklabels([str(v + 1) for v in range(V)] + ["not sent"], fontsize=8)
    cbar.set_label("codebook", fontsize=9)
    ax.set_xticks(range(lw))
    ax.set_yticks(range(lh))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("latent column")
    ax.set_ylabel("latent row")
    n_err, erased = int(err.sum()), int(np.sum(cb == V))
    extra = [f"{n_err} wrong label{'s' * (n_err != 1)} (red)"] + ([f"{erased} not sent"] if erased else [])
    ax.set_title(f"codebook per sub-vector ({lh}x{lw} latent)\n" + ", ".join(extra), fontsize=10)


def _tile_maps(fig, ax_g, ax_m, cap) -> None:
    import matplotlib

    rows, cols = cap.grid
    g = _db(cap.gamma).reshape(rows, cols)
    # aspect "auto": equal-aspect maps of small tile grids make constrained layout give up
    im = ax_g.imshow(g, cmap="magma", interpolation="nearest", aspect="auto")
    fig.colorbar(im, ax=ax_g, shrink=0.85).set_label("$\\gamma$ (dB)", fontsize=9)
    ax_g.set_title("channel per tile\n$\\gamma = |h|^2/\\sigma^2$", fontsize=10)
    V = int(cap.n_codebooks)
    cb = np.asarray(cap.codebooks)
    sent = (cb >= 0) & (cb < V)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sent, cb + 1, 0).sum(1) / sent.sum(1)
    mean = np.where(sent.any(1), mean, np.nan).reshape(rows, cols)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=_ERASED)
    im = ax_m.imshow(np.ma.masked_invalid(mean), cmap=cmap, vmin=1, vmax=max(V, 2), interpolation="nearest",
                     aspect="auto")
    fig.colorbar(im, ax=ax_m, shrink=0.85, ticks=range(1, V + 1)).set_label("mean codebook", fontsize=9)
    erased = 1 - sent.mean()
    sub = f"not sent: {100 * erased:.1f}% of sub-vectors" if erased > 0 else "over the sub-vectors sent"
    ax_m.set_title(f"mean codebook per tile\n{sub}", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_g, ax_m):
        for axis, k in ((ax.xaxis, cols), (ax.yaxis, rows)):
            if k <= 12:
                axis.set_ticks(range(k))
            else:
                axis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tile column")
        ax.set_ylabel("tile row")
        ax.tick_params(labelsize=7)


def _image(ax, img: np.ndarray, title: str) -> None:
    img = np.asarray(img)
    ax.imshow(img, interpolation="nearest" if max(img.shape[:2]) <= 128 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def link_figure(cap, original: np.ndarray, reconstruction: np.ndarray, *, snr_db: float,
                psnr_db: float | None = None, title: str | None = None, max_tiles: int = 48, seed: int = 0,
                layout: str = "constrained"):
    """The matplotlib figure of one link run. ``cap``: a :class:`~escmvq.runtime.link.LinkCapture`
    (or anything with its fields); ``original``, ``reconstruction``: ``[H, W, 3]`` uint8.
    The constellation shows at most ``max_tiles`` tiles (drawn with ``seed``)."""
    n, T, N = _check(cap)
    original, reconstruction = np.asarray(original), np.asarray(reconstruction)
    if psnr_db is None:
        from escmvq.runtime.images import psnr

        psnr_db = psnr(original, reconstruction)
    plt = _plt()
    H, W = original.shape[:2]
    top = ["c", "c", "p", "p", "k", "k"] if n == 1 else ["c"] * 3 + ["p"] * 3 + ["g"] * 3 + ["m"] * 3
    half = len(top) // 2
    if W > 2.5 * H:  # a wide strip: original above reconstruction
        mosaic, ratios = [top, ["o"] * len(top), ["r"] * len(top)], [1, 0.6, 0.6]
    else:
        mosaic, ratios = [top, ["o"] * half + ["r"] * half], [1, 1.25]
    fig = plt.figure(figsize=(14, 8.5) if n == 1 else (18, 10), layout=layout)
    axes = fig.subplot_mosaic(mosaic, height_ratios=ratios)
    _constellation(axes["c"], cap, max_tiles, seed)
    _powers(axes["p"], cap)
    if n == 1:
        _codebook_map(fig, axes["k"], cap, 0)
    else:
        _tile_maps(fig, axes["g"], axes["m"], cap)
    _image(axes["o"], original, f"original ({W}x{H})")
    _image(axes["r"], reconstruction, f"reconstruction (PSNR {psnr_db:.2f} dB)")
    errs = np.asarray(cap.label_errors)
    sent = np.asarray(cap.codebooks) < int(cap.n_codebooks)
    err_rate = errs[sent].mean() if sent.any() else 0.0  # of the sent sub-vectors, as `link` reports it
    uses = n * T
    head = title or "escmvq link"
    fig.suptitle(f"{head}\nSNR {snr_db:g} dB  |  PSNR {psnr_db:.2f} dB  |  {n:,} tile{'s' * (n != 1)}  |  "
                 f"{uses:,} channel uses ({T} per tile)  |  {100 * err_rate:.1f}% of sent labels wrong  |  "
                 f"{N} sub-vectors x {int(cap.n_codebooks)} codebooks per tile", fontsize=12)
    return fig


def render_link_plot(cap, original, reconstruction, *, dpi: int = 100, **kw) -> bytes:
    """:func:`link_figure` as PNG bytes (the figure is closed). Constrained layout gives up on
    some extreme shapes (a 1 x 40 tile strip, ...): the figure is then drawn again with the
    "compressed" variant, which handles those."""
    plt = _plt()
    png = b""
    for layout in ("constrained", "compressed"):
        fig = link_figure(cap, original, reconstruction, layout=layout, **kw)
        try:
            buf = io.BytesIO()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fig.savefig(buf, format="png", dpi=dpi)
        finally:
            plt.close(fig)
        png = buf.getvalue()
        if not any("constrained_layout not applied" in str(w.message) for w in caught):
            break
    return png


def save_link_plot(path: str | os.PathLike, cap, original, reconstruction, force: bool = False, **kw) -> Path:
    """Render and write the PNG atomically (temporary file, then rename); an existing ``path``
    is only replaced with ``force``."""
    from escmvq.runtime.files import atomic_write_bytes, check_output

    check_output(path, force)
    return atomic_write_bytes(path, render_link_plot(cap, original, reconstruction, **kw), force)
