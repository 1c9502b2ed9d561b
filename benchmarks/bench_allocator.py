"""Allocator benchmark: latency of Allocator.plan vs the iterative algorithms, precompute
time, speed-up over literal Algorithm 3, and total distortion of exact vs paper variants.

    python benchmarks/bench_allocator.py [--json benchmarks/results/allocator.json] [--quick]

Prints rich tables and writes JSON. Tables are synthetic but trained-like (see
``synth_tables``): codebook v's bit-flip probabilities sit above mu_min^(v) =
[0.0005, 0.001, 0.0045, 0.02, 0.05] with a long tail (Fig. 3 of the paper), and the
distortion of a sub-vector grows with its codebook's mu (codebook 0 = best).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from escmvq.core import channels  # noqa: E402
from escmvq.core.alloc import Allocator, jcamp, jcap, jcap_literal  # noqa: E402

MU_MIN = np.array([0.0005, 0.001, 0.0045, 0.02, 0.05])
SIZES = {"cifar": dict(V=5, N=64, B=9, R=4), "stl10": dict(V=5, N=576, B=9, R=4)}
COMBOS = [("jcap", "exact"), ("jcap", "paper"), ("jcamp", "exact"), ("jcamp", "paper")]


def synth_tables(V, N, B, seed=0):
    """mu[v] = mu_min^(v) * exp(Exp(1)) (clipped to 0.5): most bits near the floor, a tail
    towards 0.5; distortion = quantisation error (worse for noisier codebooks) + bit-flip
    damage weighted towards the label's most significant bits."""
    rng = np.random.default_rng(seed)
    mu = np.minimum(MU_MIN[:V, None, None] * np.exp(rng.exponential(1.0, (V, N, B))), 0.5)
    q = rng.uniform(0.2, 1.0, N)[None, :] * (1 + 0.08 * np.arange(V)[:, None])
    w = 4.0 * 2.0 ** (-np.arange(B) / 2)
    D = q + (mu * w).sum(axis=2) * rng.uniform(0.5, 1.5, N)[None, :]
    return D, mu


def lat_stats(ts):
    ts = np.asarray(ts) * 1e6
    return {"median_us": float(np.median(ts)), "p99_us": float(np.percentile(ts, 99)), "n": int(ts.size)}


def time_calls(fn, args_list, repeat=1):
    ts = []
    for _ in range(repeat):
        for a in args_list:
            t = time.perf_counter()
            fn(*a)
            ts.append(time.perf_counter() - t)
    return ts


def bench_size(name, V, N, B, R, quick, console):
    D, mu = synth_tables(V, N, B)
    nb = N * B
    rng = np.random.default_rng(1)
    res = {"V": V, "N": N, "B": B, "R": R, "T": nb // R}
    # budgets: SNR uniform in [-5, 30] dB (eq. 53), Rayleigh gamma
    snr = rng.uniform(-5, 30, 2000)
    gam = np.abs(channels.rayleigh(rng, 2000).astype(complex)) ** 2 + 1e-6
    rand_budgets = list(zip(channels.snr_db_to_ptot(snr, nb).tolist(), gam.tolist()))
    # a fixed grid for the slow iterative algorithms (AWGN, gamma = 1)
    grid_db = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0] if N <= 64 else ([10.0] if quick else [5.0, 15.0])
    grid = [(channels.snr_db_to_ptot(s, nb), 1.0) for s in grid_db]
    res["grid_snr_db"] = grid_db
    allocs = {}
    for method, variant in COMBOS:
        key = f"{method}-{variant}"
        t = time.perf_counter()
        A = Allocator(D, mu, rate=R, method=method, variant=variant)
        pre = time.perf_counter() - t
        allocs[key] = A
        A.plan(*rand_budgets[0])
        r = {"precompute_s": pre, "n_states": A.n_states}
        r["plan_random"] = lat_stats(time_calls(A.plan, rand_budgets))
        r["plan_grid"] = lat_stats(time_calls(A.plan, grid, repeat=max(1, 600 // len(grid))))
        f = jcap if method == "jcap" else jcamp
        it = time_calls(lambda p, g: f(D, mu, p, g, rate=R, variant=variant), grid)
        r["iterative_grid"] = lat_stats(it)
        st = A.state()
        r["state_bytes"] = int(sum(v.nbytes for v in st.values()))
        res[key] = r
        console.print(f"  {name} {key}: precompute {pre:.2f}s, plan median {r['plan_random']['median_us']:.1f} us")
    lit = time_calls(lambda p, g: jcap_literal(D, mu, p, g, rate=R), grid)
    res["literal_alg3_grid"] = lat_stats(lit)
    for key in ("jcap-exact", "jcap-paper"):
        res[key]["speedup_vs_literal_alg3"] = res["literal_alg3_grid"]["median_us"] / res[key]["plan_grid"]["median_us"]
    # distortion sweep (35a), AWGN and Rayleigh-averaged
    sweep = []
    sweep_db = np.arange(-5.0, 31.0, 2.5)
    g_ray = gam[:300]
    for s in sweep_db:
        p = channels.snr_db_to_ptot(s, nb)
        row = {"snr_db": float(s)}
        for key, A in allocs.items():
            pl = A.plan(p, 1.0)
            ray = [A.plan(p, g) for g in g_ray]
            row[key] = {
                "awgn": pl.distortion,
                "awgn_valid": pl.valid,
                "awgn_symbols": pl.n_symbols,
                "awgn_min_power": float(pl.powers.min()),
                "rayleigh_mean": float(np.mean([x.distortion for x in ray])),
                "rayleigh_invalid_frac": float(np.mean([not x.valid for x in ray])),
            }
        sweep.append(row)
    res["distortion_sweep"] = sweep
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="benchmarks/results/allocator.json")
    ap.add_argument("--quick", action="store_true", help="one grid point for the slow STL-10 iterative runs")
    ap.add_argument("--sizes", default="cifar,stl10")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    out = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "sizes": {},
    }
    for name in args.sizes.split(","):
        console.print(f"[bold]{name}[/bold] ...")
        out["sizes"][name] = bench_size(name, **SIZES[name], quick=args.quick, console=console)

    t = Table(title="Allocator latency (Allocator.plan: 2000 random SNR in [-5,30] dB, Rayleigh gamma; iterative: AWGN grid)")
    for c in ("size", "method", "precompute s", "states", "plan median us", "plan p99 us", "iterative median ms", "iterative p99 ms", "speed-up vs literal Alg. 3"):
        t.add_column(c, justify="right")
    for name, r in out["sizes"].items():
        for method, variant in COMBOS:
            k = f"{method}-{variant}"
            x = r[k]
            sp = x.get("speedup_vs_literal_alg3")
            t.add_row(
                f"{name} (N={r['N']})",
                k,
                f"{x['precompute_s']:.2f}",
                str(x["n_states"]),
                f"{x['plan_random']['median_us']:.1f}",
                f"{x['plan_random']['p99_us']:.1f}",
                f"{x['iterative_grid']['median_us'] / 1e3:.1f}",
                f"{x['iterative_grid']['p99_us'] / 1e3:.1f}",
                f"{sp:,.0f}x" if sp else "",
            )
        t.add_row(f"{name} (N={r['N']})", "literal Alg. 3", "", "", "", "", f"{r['literal_alg3_grid']['median_us'] / 1e3:.1f}", f"{r['literal_alg3_grid']['p99_us'] / 1e3:.1f}", "")
    console.print(t)

    for name, r in out["sizes"].items():
        t = Table(title=f"{name}: total distortion sum_i D_i(v_i) (AWGN / Rayleigh mean); * = plan leaves the budget")
        t.add_column("SNR dB", justify="right")
        for method, variant in COMBOS:
            t.add_column(f"{method}-{variant}", justify="right")
        for row in r["distortion_sweep"]:
            cells = [f"{row['snr_db']:.1f}"]
            for method, variant in COMBOS:
                x = row[f"{method}-{variant}"]
                star = "" if x["awgn_valid"] else "*"
                cells.append(f"{x['awgn']:.2f}{star} / {x['rayleigh_mean']:.2f}")
            t.add_row(*cells)
        console.print(t)

    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
