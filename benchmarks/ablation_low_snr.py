"""Ablation of the low-SNR pieces on one trained bundle (same model, same images, same
fading and noise draws for every arm): paper allocator -> exact -> + position-aware ->
+ erasures -> + soft receiver, side arms without the position-aware layout, and the
reference of sending nothing (the decoder fed the training-set mean latent).

Prints one table per channel (mean PSNR per arm, and each arm's paired gain over the arm
it adds to, with its 95% Student-t interval over images) and writes JSON.

    python benchmarks/ablation_low_snr.py --images 1000 --json benchmarks/results/ablation_low_snr.json

The bundle must carry the training-set statistics (``escmvq export`` with ``--stats``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from escmvq.core import pvq
from escmvq.eval.datasets import load_images
from escmvq.eval.stats import mean_ci, psnr_batch
from escmvq.eval.sweep import EscLink, parse_snr_grid, sweep_esc
from escmvq.runtime.alloc_adapter import make_allocator
from escmvq.runtime.bundle import load_bundle

# name -> (allocator settings, receiver decoding, the arm its gain is measured against)
ARMS = {
    "paper": (dict(variant="paper"), "hard", None),
    "exact": (dict(variant="exact"), "hard", "paper"),
    "+positions": (dict(variant="exact", positions=True), "hard", "exact"),
    "+erasures": (dict(variant="exact", positions=True, erasures=True), "hard", "+positions"),
    "+soft": (dict(variant="exact", positions=True, erasures=True), "soft", "+erasures"),
    # side arms: which pieces the defaults keep
    "exact+erasures": (dict(variant="exact", erasures=True), "hard", "exact"),
    "exact+erasures+soft": (dict(variant="exact", erasures=True), "soft", "exact+erasures"),
    "exact+soft": (dict(variant="exact"), "soft", "exact"),
    # erasures with the floor the export chose (the scaled all-sent state kept from that budget up),
    # as the bundle's own allocator has them
    "exact+erasures+floor": (dict(variant="exact", erasures=True, floor=True), "hard", "exact"),
    # what the erasure states add when the receiver is soft already (the shipped bundle's pairing)
    "exact+soft+erasures": (dict(variant="exact", erasures=True), "soft", "exact+soft"),
    "exact+soft+erasures+floor": (dict(variant="exact", erasures=True, floor=True), "soft", "exact+soft"),
}


def allocator(bundle, method: str, variant: str, positions: bool = False, erasures: bool = False, floor: bool = False):
    """The arm's allocator, rebuilt from the bundle's tables; ``floor``: the bundle's erasure floor
    (default: always erase below the cheapest state)."""
    return make_allocator(bundle.distortion, bundle.mu, rate=bundle.rate, method=method, variant=variant,
                          m_max=int(bundle.model.get("m_max", 8)),
                          erasure_distortion=bundle.erasure_distortion if erasures else None,
                          erasure_floor=bundle.model.get("allocator", {}).get("erasure_floor") if floor else None,
                          flip_cost=pvq.flip_cost(bundle.codebooks, bundle.label_prior) if positions else None,
                          positions=positions)


def nothing_psnr(bundle, images: np.ndarray) -> np.ndarray:
    """Per-image PSNR of decoding the training-set mean latent (no transmission)."""
    from escmvq.runtime.receiver import Receiver

    rx = Receiver(bundle)
    _, h, w = bundle.latent_shape
    z = pvq.from_subvectors(bundle.latent_mean[None].astype(np.float32), h, w)
    x = rx.decode(z)[0]
    rec = np.clip(np.rint(x.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    return psnr_batch(images, np.broadcast_to(rec, images.shape))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--method", default="jcamp", choices=["jcamp", "jcap"])
    ap.add_argument("--arms", default="paper,exact,+positions,+erasures,+soft")
    ap.add_argument("--channels", default="rayleigh,awgn")
    ap.add_argument("--snr", default="-5:25:3")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "kodak"], help="kodak: 32x32 tiles of the 24 images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--render", type=Path, default=None, help="print the tables of a JSON written before, and exit")
    a = ap.parse_args(argv)
    if a.render:
        print(render(a.render))
        return 0
    bundle = load_bundle(a.bundle)
    if bundle.latent_mean is None or bundle.erasure_distortion is None:
        print("error: the bundle has no training-set statistics (export it with --stats)", file=sys.stderr)
        return 2
    arms = [s.strip() for s in a.arms.split(",") if s.strip()]
    bad = [s for s in arms if s not in ARMS]
    if bad:
        print(f"error: unknown arms {bad}; known: {list(ARMS)}", file=sys.stderr)
        return 2
    snrs = parse_snr_grid(a.snr)
    images = load_images(a.dataset, a.images)
    ref = nothing_psnr(bundle, images)
    out = {"format": "escmvq-ablation", "version": 1, "bundle": bundle.hash_hex[:16], "method": a.method,
           "dataset": a.dataset,
           "images": int(len(images)), "snr_db": snrs, "seed": a.seed, "send_nothing_psnr": mean_ci(ref),
           "channels": {}}
    for ch in [c.strip() for c in a.channels.split(",") if c.strip()]:
        per = {}
        for name in arms:
            settings, decoding, _ = ARMS[name]
            t0 = time.perf_counter()
            link = EscLink(bundle, a.method, threads=a.threads, allocator=allocator(bundle, a.method, **settings),
                           receiver={"decoding": decoding})
            res = sweep_esc(bundle, images, snrs, methods=(a.method,), channel=ch, seed=a.seed,
                            threads=a.threads, links={a.method: link}, receiver={"decoding": decoding})[a.method]
            per[name] = res.psnr
            print(f"[{ch}] {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = {}
        for name in arms:
            ps = per[name]
            rows[name] = {"psnr_mean": [mean_ci(r)["mean"] for r in ps], "psnr_ci95": [mean_ci(r)["ci"] for r in ps]}
            vs = ARMS[name][2]
            if vs in per:  # paired over images: same images, fading and noise
                d = [mean_ci(r) for r in ps - per[vs]]
                rows[name]["gain_over"] = vs
                rows[name]["gain_mean"] = [x["mean"] for x in d]
                rows[name]["gain_ci95"] = [x["ci"] for x in d]
        out["channels"][ch] = rows
        _print(ch, snrs, arms, rows, mean_ci(ref)["mean"])
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        tmp.replace(a.json)
    return 0


def table(ch, snrs, arms, rows, nothing) -> str:
    """One channel's markdown table (mean PSNR; paired gain over the arm it adds to, 95% CI)."""
    vs = ", ".join(f"{n} vs {rows[n]['gain_over']}" for n in arms if "gain_over" in rows[n])
    out = [f"{ch}: mean PSNR dB (paired gain, 95% CI: {vs}); sending nothing: {nothing:.2f} dB", "",
           "| SNR dB | " + " | ".join(arms) + " |", "|" + " ---: |" * (len(arms) + 1)]
    for s, snr in enumerate(snrs):
        cells = []
        for name in arms:
            r = rows[name]
            c = f"{r['psnr_mean'][s]:.2f}"
            if "gain_mean" in r:
                c += f" ({r['gain_mean'][s]:+.2f} +- {r['gain_ci95'][s]:.2f})"
            cells.append(c)
        out.append(f"| {snr:g} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _print(ch, snrs, arms, rows, nothing) -> None:
    print("\n" + table(ch, snrs, arms, rows, nothing))


def render(path: Path) -> str:
    """The markdown tables of a JSON this script wrote."""
    doc = json.loads(Path(path).read_text())
    return "\n\n".join(table(ch, doc["snr_db"], list(rows), rows, doc["send_nothing_psnr"]["mean"])
                       for ch, rows in doc["channels"].items())


if __name__ == "__main__":
    raise SystemExit(main())
