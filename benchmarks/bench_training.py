#!/usr/bin/env python
"""Training throughput (images/s) per stage of Algorithm 1 and peak memory, per preset.

Stage v runs the encoder once and the decoder on v codebooks' samples (one batched pass),
so it costs more than stage 1. Each preset runs in its own process so that its peak
resident memory (ru_maxrss) is its own. A few iterations each, on random 32x32 batches
of the preset's batch size; prints a table and writes JSON.

    python benchmarks/bench_training.py --presets cpu paper --iters 10 --warmup 3 --threads 2 --out benchmarks/results/training.json

The trainer's robustness options (``--options``), each in its own process on the given presets:
``default`` (Algorithm 1), ``commit-clean``, ``enc-grad-1``, ``gray`` (Gray flips and
erasures), ``joint`` (all V decoded every step from the start: stage V's cost from step 0)
``joint-draw`` (one codebook per sample: one decoder pass), ``cond`` (the reliability-aware
decoder), ``cond-mix`` (it with mixed maps and Gray/erasure noise), ``posterior`` (the
conditioned decoder fed posterior-mean codewords, Gray noise, erasures on codebook 5), ``c5``
(the default's options: conditioned decoder, Gray noise, erasures on codebook 5) and
``freeze-encoder`` / ``freeze-codebook1`` (c5 with codebook 1's path held from stage 2 on),
``freeze-encoder-eu`` (freeze-encoder with a uniform erasure rate per image). The joint schedules only
run stage V; the others every requested stage.

    python benchmarks/bench_training.py --presets cpu --options default commit-clean enc-grad-1 gray joint joint-draw --stages 1 5 --iters 6 --warmup 2 --out benchmarks/results/training_options.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# the default bundle's options: conditioned decoder, Gray noise, erasures on codebook 5
_C5 = {"decoder_cond": "codebook", "noise": "gray", "erase_prob": (0.0, 0.0, 0.0, 0.0, 0.3)}
OPTIONS = {
    "default": {},
    "commit-clean": {"commit_clean": True},
    "enc-grad-1": {"encoder_grad_codebooks": 1},
    "gray": {"noise": "gray", "erase_prob": (0.0, 0.0, 0.0, 0.1, 0.3)},
    "joint": {"schedule": "joint"},
    "joint-draw": {"schedule": "joint-draw"},
    "cond": {"decoder_cond": "codebook"},
    "cond-mix": {"decoder_cond": "codebook", "cond_mix": 0.3, "noise": "gray", "erase_prob": (0.0, 0.0, 0.0, 0.1, 0.3)},
    "posterior": {**_C5, "decoder_input": "posterior"},
    "c5": _C5,
    "freeze-encoder": {**_C5, "freeze": "encoder"},
    "freeze-codebook1": {**_C5, "freeze": "codebook1"},
    "freeze-encoder-eu": {**_C5, "freeze": "encoder", "erase_dist": "uniform"},
    # the default's last pass: a sixth codebook (--codebooks 6; its stage weights as that option's),
    # codebook 1's decoder path held
    "six-codebooks": {**_C5, "freeze": "codebook1", "erase_dist": "uniform", "V": 6,
                      "mu_min": (0.0005, 0.001, 0.0045, 0.02, 0.05, 0.2),
                      "epochs_per_stage": (0, 0, 0, 0, 0, 1), "erase_prob": (0.0, 0.0, 0.0, 0.0, 0.3, 0.3)},
}


def child(preset_name: str, iters: int, warmup: int, threads: int, stages: list[int], option: str = "default") -> dict:
    import torch

    from escmvq.training import quantizer as Q
    from escmvq.training.model import ESCMVQ
    from escmvq.training.presets import get_preset

    torch.set_num_threads(threads)
    p = get_preset(preset_name)
    kw = dict(OPTIONS[option])
    if "V" in kw:
        kw["lambdas"] = p.lambdas_for(kw["V"])
    if "erase_prob" in kw and p.V != 5:
        kw["erase_prob"] = (0.0,) * (p.V - 1) + (0.3,)
    p = p.replace(**kw)
    if p.schedule != "sequential":
        stages = [p.V]  # a joint schedule runs stage V from the first step
    model = ESCMVQ(p)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p.batch_size, 3, *p.image_size, generator=g)
    with torch.no_grad():
        model.init_codebook_from_data(model.encoder(x), 0, g)
        for v in range(1, p.V):
            model.copy_codebook(v - 1, v)
    rows = []
    for v in stages:
        if v >= 2:
            model.freeze_codebook1_path()  # no-op unless the option holds codebook 1's path
        times = []
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            loss, _ = model(x, v, Q.tau_at(0, p.tau0, p.tau_decay, p.tau_every), g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.restore_frozen()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        rows.append({"stage": v, "batch": p.batch_size, "step_ms_median": 1e3 * med,
                     "step_ms_min": 1e3 * times[0], "images_per_s": p.batch_size / med})
    return {"preset": preset_name, "option": option, "hidden": p.hidden, "res_hidden": p.res_hidden,
            "params": sum(t.numel() for t in model.parameters()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "stages": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--options", nargs="+", default=["default"], choices=sorted(OPTIONS),
                    help="trainer robustness options to measure, each in its own process")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "training.json"))
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_option", default="default", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(child(a._child, a.iters, a.warmup, a.threads, a.stages, a._option)))
        return 0
    load_before = os.getloadavg()[0]
    results = []
    for name in a.presets:
        for opt in a.options:
            cmd = [sys.executable, __file__, "--_child", name, "--_option", opt, "--iters", str(a.iters),
                   "--warmup", str(a.warmup), "--threads", str(a.threads), "--stages", *map(str, a.stages)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"error: preset {name} option {opt} failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
                return 1
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"ESC-MVQ training throughput ({a.threads} threads, {a.iters} iters, median step)")
    for c in ("preset", "option", "stage", "batch", "step ms", "images/s", "peak RSS MiB"):
        tab.add_column(c, justify="right")
    for res in results:
        for r in res["stages"]:
            tab.add_row(res["preset"], res.get("option", "default"), str(r["stage"]), str(r["batch"]), f"{r['step_ms_median']:.0f}",
                        f"{r['images_per_s']:.0f}", f"{res['peak_rss_mib']:.0f}")
    Console().print(tab)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "threads": a.threads, "iters": a.iters, "options": a.options, "warmup": a.warmup, "results": results,
                               "load_avg_1min_before": load_before, "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
