"""The paper's figures from sweep results (matplotlib, Agg backend; never opens a window).

- :func:`fig3_mu_cdf`: CDF of the trained bit-flip probabilities per codebook (Fig. 3).
- :func:`fig5_psnr_snr`: mean PSNR vs SNR with 95% intervals, one line per method (Fig. 5).
- :func:`fig6_grid`: originals and each method's reconstructions at one SNR (Fig. 6).
- :func:`fig7_bars`: grouped bars per SNR point, one per method (Fig. 7).
- :func:`fig8_codebook_heatmap`: mean assigned codebook per sub-vector vs SNR (Fig. 8).

Every function writes a PNG atomically (temporary file in the same folder, then rename), so
a failure leaves no partial file, and returns the path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from escmvq.io.figures import mu_cdf
from escmvq.io.figures import pyplot as _plt
from escmvq.io.figures import save_figure as save_atomic

__all__ = ["fig3_mu_cdf", "fig5_psnr_snr", "fig6_grid", "fig7_bars", "fig8_codebook_heatmap", "save_atomic"]

_STYLE = {"jcamp": ("ESC-MVQ (JCAMP)", "C0", "o"), "jcap": ("ESC-MVQ (JCAP)", "C1", "s"),
          "jpeg-ldpc": ("JPEG+LDPC", "C7", "x"), "esc-svq": ("ESC-SVQ", "C2", "^"),
          "bsc-vq": ("BSC+VQ", "C3", "v"), "bsc-sq": ("BSC+SQ", "C4", "D"), "blindsc": ("BlindSC", "C5", "P")}


def _label(name: str, i: int = 0) -> tuple[str, str, str, str]:
    """Label, colour, marker and line style of method ``name``; unknown names get a colour no
    known method uses (``C8``, ``C9``, ``C6``, by position ``i``). A merged ``LABEL:method``
    (``escmvq eval-merge``) keeps the method's colour and marker, dashed, labelled ``[LABEL]``."""
    prefix, sep, base = name.rpartition(":")
    if sep and base in _STYLE:
        lab, col, mk = _STYLE[base]
        return f"{lab} [{prefix}]", col, mk, "--"
    return (*_STYLE.get(name, (name, ("C8", "C9", "C6")[i % 3], ".")), "-")


def fig3_mu_cdf(mu: np.ndarray, path, title: str = "CDF of trained bit-flip probabilities") -> Path:
    """mu : ``[V, N, B]`` floats in (0, 0.5] (codebook 0 = lowest). One CDF curve per codebook."""
    return mu_cdf(mu, path, title)


def snr_axis_label(result: dict) -> str:
    """The SNR axis: eq. (53)'s SNR, which is Eb/N0 per label bit, and Es/N0's offset when the
    result records it (``es_n0_db`` beside ``snr_db``)."""
    es, snr = result.get("es_n0_db"), result.get("snr_db")
    if es and snr and len(es) == len(snr):
        return f"SNR = Eb/N0 (dB), eq. (53); Es/N0 = SNR + {float(es[0]) - float(snr[0]):.2f} dB"
    return "SNR (dB), eq. (53)"


def fig5_psnr_snr(result: dict, path, title: str | None = None) -> Path:
    """result : the sweep JSON (``{"snr_db": [S], "channel": str, "methods": {name:
    {"psnr_mean": [S], "psnr_ci95": [S], ...}}}``). Lines with 95% interval bars."""
    snr = np.asarray(result["snr_db"], np.float64)
    methods = result.get("methods") or {}
    if not methods:
        raise ValueError("result: no methods to plot")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (name, r) in enumerate(methods.items()):
        lab, col, mk, ls = _label(name, i)
        mean = np.asarray(r["psnr_mean"], np.float64)
        ci = np.asarray([np.nan if c is None else c for c in r["psnr_ci95"]], np.float64)
        ax.errorbar(snr, mean, yerr=np.where(np.isfinite(ci), ci, 0.0), label=lab, color=col, marker=mk,
                    markersize=4, capsize=2, linewidth=1.2, linestyle=ls)
    ax.set_xlabel(snr_axis_label(result))
    ax.set_ylabel("PSNR (dB)")
    n = next(iter(methods.values())).get("n_images")
    ax.set_title(title or f"{result.get('dataset', '')} over {result.get('channel', '')}, {n} images "
                           f"x {result.get('realizations', 1)} (95% CI)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_atomic(fig, path)


def fig7_bars(result: dict, path, title: str | None = None) -> Path:
    """Fig. 7: grouped bars, one group per SNR point and one bar per method, with the 95%
    interval as error bar. ``result``: the sweep JSON as for :func:`fig5_psnr_snr`."""
    snr = np.asarray(result["snr_db"], np.float64)
    methods = result.get("methods") or {}
    if not methods:
        raise ValueError("result: no methods to plot")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(snr) + 1), 4))
    width = 0.8 / len(methods)
    x = np.arange(len(snr))
    for i, (name, r) in enumerate(methods.items()):
        lab, col, _, ls = _label(name, i)
        ci = np.asarray([0.0 if c is None else c for c in r["psnr_ci95"]], np.float64)
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, r["psnr_mean"], width, yerr=ci, label=lab, color=col,
               capsize=2, hatch="//" if ls == "--" else None)
    ax.set_xticks(x, [f"{v:g}" for v in snr])
    ax.set_xlabel(snr_axis_label(result))
    ax.set_ylabel("PSNR (dB)")
    lo = min(min(r["psnr_mean"]) for r in methods.values())
    ax.set_ylim(max(0.0, lo - 3.0), None)
    n = next(iter(methods.values())).get("n_images")
    ax.set_title(title or f"training strategies, {result.get('dataset', '')} over {result.get('channel', '')}, "
                          f"{n} images (95% CI)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_atomic(fig, path)


def fig6_grid(originals: np.ndarray, recs: dict, path, title: str = "") -> Path:
    """originals : ``[k, H, W, 3]`` uint8; recs : ``{method: [k, H, W, 3] uint8}``. Rows:
    original, then one per method; columns: images; PSNR under each reconstruction."""
    from escmvq.eval.stats import psnr_batch

    originals = np.asarray(originals)
    k = len(originals)
    if k == 0 or originals.ndim != 4:
        raise ValueError(f"originals: expected [k, H, W, 3] with k >= 1, got {originals.shape}")
    plt = _plt()
    rows = 1 + len(recs)
    fig, axes = plt.subplots(rows, k, figsize=(1.3 * k, 1.45 * rows), squeeze=False, layout="constrained")
    for j in range(k):
        axes[0, j].imshow(originals[j])
    axes[0, 0].set_ylabel("original", fontsize=7)
    for i, (name, rec) in enumerate(recs.items(), start=1):
        rec = np.asarray(rec)
        ps = psnr_batch(originals, rec)
        for j in range(k):
            axes[i, j].imshow(rec[j])
            axes[i, j].set_xlabel(f"{ps[j]:.1f} dB", fontsize=6, labelpad=1)
        axes[i, 0].set_ylabel(_label(name)[0], fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_atomic(fig, path, dpi=150)


def fig8_codebook_heatmap(mean_codebook: np.ndarray, snrs, path, title: str = "") -> Path:
    """mean_codebook : ``[S, N]`` mean assigned codebook (1-based) per sub-vector at each of
    the ``S`` SNRs. Heatmap: sub-vector index across, SNR down."""
    m = np.asarray(mean_codebook, np.float64)
    snrs = np.asarray(snrs, np.float64)
    if m.ndim != 2 or m.shape[0] != snrs.size:
        raise ValueError(f"mean_codebook: expected [S={snrs.size}, N], got {m.shape}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * m.shape[0] + 1.2))
    im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(snrs.size))
    ax.set_yticklabels([f"{s:g}" for s in snrs], fontsize=7)
    ax.set_ylabel("SNR (dB)")
    ax.set_xlabel("sub-vector index i")
    fig.colorbar(im, ax=ax, label="mean codebook index")
    ax.set_title(title or "Mean assigned codebook per sub-vector")
    return save_atomic(fig, path)
