"""Allocator with erasure states (and the position-aware option) vs without, in one run:
precompute time, number of states, ``Allocator.plan`` latency (2,000 random budgets, SNR
uniform in [-5, 30] dB, Rayleigh gamma), state size, and the share of plans that erase.

    python benchmarks/bench_allocator_erasures.py [--json benchmarks/results/allocator_erasures.json]

Tables as ``bench_allocator.synth_tables`` (trained-like, synthetic); the erasure distortion
of a sub-vector is its codebook-V distortion times U(1.3, 2.5). Targets: plan median
<= 50 us at N = 64 and <= 500 us at N = 576.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_allocator import SIZES, lat_stats, synth_tables, time_calls  # noqa: E402

from escmvq.core import channels  # noqa: E402
from escmvq.core.alloc import Allocator  # noqa: E402

ARMS = {
    "jcamp-exact": {},
    "jcamp-exact+erasures": {"erasures": True},
    "jcamp-exact+erasures+positions": {"erasures": True, "positions": True},
    "jcap-exact+erasures": {"erasures": True, "method": "jcap"},
}


def bench_size(V, N, B, R):
    D, mu = synth_tables(V, N, B)
    rng = np.random.default_rng(1)
    de = D[-1] * rng.uniform(1.3, 2.5, N)
    flip = rng.uniform(1, 10, mu.shape)
    snr = rng.uniform(-5, 30, 2000)
    gam = np.abs(channels.rayleigh(rng, 2000).astype(complex)) ** 2 + 1e-6
    budgets = list(zip(channels.snr_db_to_ptot(snr, N * B).tolist(), gam.tolist()))
    out = {}
    for name, arm in ARMS.items():
        kw = {}
        if arm.get("erasures"):
            kw["erasure_distortion"] = de
        if arm.get("positions"):
            kw.update(positions=True, flip_cost=flip)
        t = time.perf_counter()
        A = Allocator(D, mu, rate=R, method=arm.get("method", "jcamp"), variant="exact", **kw)
        pre = time.perf_counter() - t
        A.plan(*budgets[0])
        plans = [A.plan(p, g) for p, g in budgets[:500]]
        out[name] = {"precompute_s": pre, "n_states": A.n_states, "plan": lat_stats(time_calls(A.plan, budgets)),
                     "state_mb": sum(v.nbytes for v in A.state().values()) / 1e6,
                     "erasing_share": float(np.mean([p.sent_bits is not None for p in plans]))}
        print(f"  N={N} {name}: precompute {pre:.2f} s, plan median {out[name]['plan']['median_us']:.1f} us",
              file=sys.stderr)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/allocator_erasures.json"))
    ap.add_argument("--sizes", default="cifar,stl10")
    a = ap.parse_args(argv)
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
                       "loadavg": os.getloadavg()}, "sizes": {}}
    print("| size | allocator | precompute s | states | plan median us | plan p99 us | state MB | plans that erase |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in a.sizes.split(","):
        r = bench_size(**SIZES[size])
        res["sizes"][size] = r
        for name, x in r.items():
            print(f"| {size} (N={SIZES[size]['N']}) | {name} | {x['precompute_s']:.2f} | {x['n_states']} | "
                  f"{x['plan']['median_us']:.0f} | {x['plan']['p99_us']:.0f} | {x['state_mb']:.1f} | "
                  f"{100 * x['erasing_share']:.0f}% |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
