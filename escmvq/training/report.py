"""Per-codebook evaluation of a checkpoint, and the Fig. 3 CDF of the trained mu.

For each codebook v on a test split: PSNR (52) with no bit errors, and PSNR with the bits
of every sub-vector flipped by the BSC of its own trained ``mu^(v)`` (numpy
:func:`escmvq.core.pvq.bsc`, the same binary mapper as the runtime), averaged over
``draws`` independent draws; codebook usage (perplexity, dead codewords) and mu statistics.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from escmvq.core import pvq
from escmvq.io.figures import mu_cdf
from escmvq.training import quantizer as Q
from escmvq.training.checkpoint import load_checkpoint
from escmvq.training.trainer import psnr_per_image, to_input

__all__ = ["evaluate_checkpoint", "write_report", "plot_mu_cdf", "report_markdown"]


@torch.no_grad()
def evaluate_checkpoint(ckpt_path, images: np.ndarray, draws: int = 5, seed: int = 0, batch: int = 250,
                        model_ckpt=None) -> dict:
    """Evaluate every codebook of the checkpoint on uint8 ``images [n, H, W, 3]``."""
    model, ck = model_ckpt if model_ckpt is not None else load_checkpoint(ckpt_path)
    model.eval()
    p = model.preset
    norm = ck["normalisation"]
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    mu = np.asarray(ck["mu"], dtype=np.float64)  # [V, N, B]
    # sigmoid input behind mu = mu_min + (0.5 - mu_min) sigmoid(raw); None where mu is fixed
    raw = None if p.mu_fixed is not None else model.mu_raw.detach().double().numpy()
    cbs = model.codebooks.detach()
    V, K, B = p.V, p.K, p.B
    rng = np.random.default_rng(seed)
    clean = [[] for _ in range(V)]
    noisy = [[[] for _ in range(draws)] for _ in range(V)]
    counts = np.zeros((V, K), np.int64)
    t0 = time.time()
    for i in range(0, len(images), batch):
        xu = torch.from_numpy(images[i:i + batch])
        z = model.encoder(to_input(xu, mean, std))
        hw = tuple(z.shape[-2:])
        zs = Q.to_subvectors(z).numpy()
        for v in range(V):
            idx = pvq.nearest_codeword(zs, cbs[v].numpy())  # [b, N], numpy quantizer (7)
            counts[v] += np.bincount(idx.ravel(), minlength=K)
            xh = model.decode(Q.from_subvectors(cbs[v][torch.from_numpy(idx)], *hw), v)
            clean[v].append(psnr_per_image(xu, xh, mean, std).numpy())
            bits = pvq.index_to_bits(idx, B)
            for d in range(draws):
                rx = pvq.bits_to_index(pvq.bsc(bits, mu[v][None], rng))
                xh = model.decode(Q.from_subvectors(cbs[v][torch.from_numpy(rx)], *hw), v)
                noisy[v][d].append(psnr_per_image(xu, xh, mean, std).numpy())
    rows = []
    for v in range(V):
        c = np.concatenate(clean[v])
        per_draw = [float(np.concatenate(noisy[v][d]).mean()) for d in range(draws)]
        pr = counts[v] / max(counts[v].sum(), 1)
        nz = pr[pr > 0]
        m = mu[v]
        rows.append({
            "codebook": v + 1,
            "psnr_clean": float(c.mean()),
            "psnr_own_mu": float(np.mean(per_draw)),
            "psnr_own_mu_std": float(np.std(per_draw)),
            "psnr_own_mu_draws": per_draw,
            "expected_bit_errors_per_image": float(m.sum()),
            "mu_mean": float(m.mean()), "mu_median": float(np.median(m)),
            "mu_min": float(m.min()), "mu_max": float(m.max()),
            "mu_p10": float(np.quantile(m, 0.1)), "mu_p90": float(np.quantile(m, 0.9)),
            "mu_min_bound": float(p.mu_min[v]), "lambda": float(p.lambdas[v]),
            **_raw_stats(None if raw is None else raw[v]),
            "dead_codewords": int((counts[v] == 0).sum()),
            "dead_fraction": float((counts[v] == 0).mean()),
            "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
            "distortion_mean": None if ck.get("distortion") is None else float(np.asarray(ck["distortion"])[v].mean()),
        })
    noisy_psnr = [r["psnr_own_mu"] for r in rows]
    mu_means = [r["mu_mean"] for r in rows]
    order = np.argsort(mu_means)
    monotone = bool(all(noisy_psnr[order[j]] > noisy_psnr[order[j + 1]] for j in range(V - 1)))
    return {
        "checkpoint": str(ckpt_path),
        "preset": p.name,
        "dataset": ck.get("dataset"),
        "test_images": int(len(images)),
        "draws": draws,
        "seed": seed,
        "psnr_definition": "mean over images of 10*log10(255^2/MSE), decoder output clamped and rounded to 8 bits",
        "codebooks": rows,
        "psnr_falls_as_mu_rises": monotone,
        "max_dead_fraction": float(max(r["dead_fraction"] for r in rows)),
        "train": {k: ck.get(k) for k in ("command", "train_wall_s", "stage", "epoch", "step", "seed",
                                          "distortion_images", "world_size", "stage_elapsed")},
        "eval_seconds": time.time() - t0,
    }


def _raw_stats(raw: np.ndarray | None) -> dict:
    """Where the sigmoid input of one codebook's mu sits: its mean/min/max, the fraction of
    bits with sigmoid(raw) < 0.01 (mu within 1 % of the way from its floor to 0.5) and the mean
    slope sigmoid'(raw), which scales every gradient reaching mu."""
    if raw is None:
        return {"mu_raw_mean": None, "mu_raw_min": None, "mu_raw_max": None, "mu_near_floor_fraction": None,
                "mu_raw_slope_mean": None}
    s = expit(raw)
    return {"mu_raw_mean": float(raw.mean()), "mu_raw_min": float(raw.min()), "mu_raw_max": float(raw.max()),
            "mu_near_floor_fraction": float((s < 0.01).mean()), "mu_raw_slope_mean": float((s * (1 - s)).mean())}


def report_markdown(rep: dict) -> str:
    lines = [
        f"# ESC-MVQ `{rep['preset']}` on {rep['dataset']}: per-codebook results",
        "",
        f"Test images: {rep['test_images']}; bit errors drawn {rep['draws']} times from each codebook's own "
        f"trained mu (seed {rep['seed']}). PSNR: {rep['psnr_definition']}.",
        "",
        "| v | lambda | mu_min | mu mean | mu median | mu min..max | E[bit errors]/image | PSNR clean (dB) | "
        "PSNR own mu (dB) | dead codewords | perplexity | D (31) mean | raw mean (min..max) | near floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["codebooks"]:
        dm = "-" if r["distortion_mean"] is None else f"{r['distortion_mean']:.4f}"
        rw = ("- | -" if r.get("mu_raw_mean") is None else
              f"{r['mu_raw_mean']:.1f} ({r['mu_raw_min']:.1f}..{r['mu_raw_max']:.1f}) | "
              f"{100 * r['mu_near_floor_fraction']:.0f}%")
        lines.append(
            f"| {r['codebook']} | {r['lambda']:g} | {r['mu_min_bound']:g} | {r['mu_mean']:.4f} | {r['mu_median']:.4f} | "
            f"{r['mu_min']:.4f}..{r['mu_max']:.4f} | {r['expected_bit_errors_per_image']:.1f} | {r['psnr_clean']:.2f} | "
            f"{r['psnr_own_mu']:.2f} ± {r['psnr_own_mu_std']:.2f} | {r['dead_codewords']} ({100 * r['dead_fraction']:.1f}%) | "
            f"{r['perplexity']:.0f} | {dm} | {rw} |")
    lines += [
        "",
        f"PSNR under own mu falls as mu rises: **{rep['psnr_falls_as_mu_rises']}**; "
        f"largest dead fraction: {100 * rep['max_dead_fraction']:.1f}%. raw: the input of "
        "mu = mu_min + (0.5 - mu_min) sigmoid(raw); near floor: share of bits with sigmoid(raw) < 0.01.",
    ]
    t = rep.get("train") or {}
    if t.get("command"):
        lines += ["", f"Training command: `{t['command']}`"]
    if t.get("train_wall_s"):
        lines += [f"Training wall time: {t['train_wall_s'] / 60:.1f} min (stage times: "
                  + ", ".join(f"{s / 60:.1f}" for s in (t.get("stage_elapsed") or [])) + " min)"]
    return "\n".join(lines) + "\n"


def write_report(rep: dict, prefix) -> tuple[Path, Path]:
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    js = prefix.with_name(prefix.name + ".report.json")
    md = prefix.with_name(prefix.name + ".report.md")
    js.write_text(json.dumps(rep, indent=2) + "\n")
    md.write_text(report_markdown(rep))
    return js, md


def plot_mu_cdf(mu: np.ndarray, out, title: str | None = None, mu_min=None) -> Path:
    """Fig. 3: empirical CDF of ``mu[v]`` per codebook (log x axis), written as PNG (the
    folder is created if needed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return mu_cdf(mu, out, title, mu_min)
