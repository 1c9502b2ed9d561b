#!/usr/bin/env python
"""Evaluation throughput: images x realisations per second per method, and the projected
time of the full Fig. 5 sweep (target: all methods, 11 SNR points, the 10,000
CIFAR-10 test images, one fading realisation each, under 30 minutes on the 2-core machine).

    python benchmarks/bench_eval.py --bundle escmvq/models/default --images 512 \
        [--methods jcamp,jcap,jpeg-ldpc] [--threads 2] [--json benchmarks/results/eval.json]

A "transmission" is one image x one realisation at one SNR point, end to end (the encoder
runs once per image batch and is shared by the SNR points and the ESC-MVQ methods; its
time is split evenly between them). The SNR points are spread over the paper's range
(-5..25 dB) because the JPEG+LDPC cost depends on the SNR (modulation order, BP stages).
Not a test: run it on an otherwise idle machine and record the load average it reports.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(REPO / "escmvq" / "models" / "default"))
    ap.add_argument("--methods", default="jcamp,jcap,jpeg-ldpc")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--snr", default="-5,2.5,10,17.5,25", help="SNR points (dB) timed")
    ap.add_argument("--channel", default="rayleigh")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--full-images", type=int, default=10_000, help="images of the projected full sweep")
    ap.add_argument("--full-snrs", type=int, default=11, help="SNR points of the projected full sweep")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from escmvq.eval.datasets import load_cifar10_test
    from escmvq.eval.sweep import parse_snr_grid, sweep_esc
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.threads import limit_blas_threads

    limit_blas_threads(1)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    snrs = parse_snr_grid(a.snr)
    b = load_bundle(a.bundle)
    imgs = load_cifar10_test(a.images)
    load0 = os.getloadavg()
    rows = {}
    esc = [m for m in methods if m in ("jcamp", "jcap")]
    if esc:
        t0 = time.perf_counter()
        res = sweep_esc(b, imgs, snrs, esc, a.channel, 1, 0, a.batch, threads=a.threads)
        wall = time.perf_counter() - t0
        for m in esc:
            rows[m] = {"seconds": res[m].seconds, "transmissions_per_s": len(imgs) * len(snrs) / res[m].seconds,
                       "psnr_mean": res[m].summary()["psnr_mean"]}
        rows["_esc_wall_s"] = wall
    if "jpeg-ldpc" in methods:
        from escmvq.eval.jpeg_ldpc import sweep_jpeg_ldpc

        r = sweep_jpeg_ldpc(imgs, snrs, a.channel, 1, 0, a.batch, n_bits=b.n_bits, n_symbols=b.n_symbols,
                            threads=a.threads)
        s = r.summary()
        rows["jpeg-ldpc"] = {"seconds": r.seconds, "setup_s": r.info["setup_s"],
                             "transmissions_per_s": len(imgs) * len(snrs) / r.seconds,
                             "psnr_mean": s["psnr_mean"], "fail_rate": s["fail_rate"],
                             "mean_bp_iterations": s["mean_bp_iterations"]}
    full = a.full_images * a.full_snrs
    proj = {m: full / rows[m]["transmissions_per_s"] for m in methods}
    out = {
        "command": "python benchmarks/bench_eval.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": load0, "loadavg_end": os.getloadavg()},
        "bundle": {"path": str(b.path), "hash": b.hash_hex[:16], "source_checkpoint": b.manifest.get("source_checkpoint")},
        "images": len(imgs), "snr_db": snrs, "channel": a.channel, "threads": a.threads,
        "methods": rows,
        "projected_full_sweep_s": {**proj, "total": sum(proj.values()),
                                   "images": a.full_images, "snr_points": a.full_snrs},
    }
    for m in methods:
        print(f"{m:10s} {rows[m]['transmissions_per_s']:9.1f} images x realisations / s per SNR point "
              f"-> full sweep {proj[m] / 60:6.1f} min")
    print(f"{'total':10s} projected {sum(proj.values()) / 60:.1f} min for {a.full_images} images x {a.full_snrs} SNRs "
          f"(load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f})")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
