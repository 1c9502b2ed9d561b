"""Per-stage latency/throughput of the runtime (``escmvq bench``), MLPerf-edge style:
SingleStream (batch 1: p50/p90/p99 latency) and Offline (batch N: throughput), after a
warm-up, with the environment recorded (host, provider really used, versions, and on a
Jetson the L4T release, nvpmodel mode, jetson_clocks state and power from jetson-stats)."""
from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from escmvq.runtime.link import STAGES, apply_channel, draw_h

__all__ = ["detect_jetson", "environment", "run_bench", "stats", "BENCH_STAGES"]

BENCH_STAGES = (*STAGES, "end_to_end")
_DT_MODEL = Path("/proc/device-tree/model")
_TEGRA = Path("/etc/nv_tegra_release")


def _read(p: Path) -> str | None:
    try:
        return p.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (r.stdout or r.stderr).strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def detect_jetson(dt_model: Path = _DT_MODEL, tegra: Path = _TEGRA) -> tuple[bool, str]:
    """(is a Jetson, what was found) from the device-tree model and nv_tegra_release."""
    model, rel = _read(dt_model), _read(tegra)
    is_jetson = bool((model and ("jetson" in model.lower() or "nvidia" in model.lower())) or rel)
    found = f"device-tree model: {model!r}" if model else f"no {dt_model}"
    found += f"; {tegra}: {rel.splitlines()[0]!r}" if rel else f"; no {tegra}"
    return is_jetson, found


def jetson_info() -> dict:
    info = {"l4t_release": (_read(_TEGRA) or "").splitlines()[0] if _read(_TEGRA) else None,
            "device_tree_model": _read(_DT_MODEL),
            "nvpmodel": _run(["nvpmodel", "-q"]),
            "jetson_clocks": _run(["jetson_clocks", "--show"])}
    try:
        from jtop import jtop  # jetson-stats, optional

        with jtop() as j:
            info["power"] = j.power
    except Exception:  # noqa: BLE001 - optional tool
        info["power"] = None
    return info


def environment(device: str, providers_used: dict[str, str]) -> dict:
    import importlib.metadata as md

    import onnxruntime as ort

    env = {
        "host": platform.node(), "machine": platform.machine(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
        "device": device, "providers_used": providers_used,
        "onnxruntime": ort.__version__, "onnxruntime_available_providers": ort.get_available_providers(),
        "numpy": np.__version__,
    }
    try:
        env["escmvq"] = md.version("escmvq")
    except md.PackageNotFoundError:
        pass
    if device == "jetson":
        env["jetson"] = jetson_info()
    return env


def stats(samples: list[float], batch: int) -> dict:
    a = np.asarray(samples, np.float64)
    med = float(np.median(a))
    return {"median_ms": 1e3 * med, "p90_ms": 1e3 * float(np.percentile(a, 90)),
            "p99_ms": 1e3 * float(np.percentile(a, 99)), "mean_ms": 1e3 * float(a.mean()),
            "throughput_per_s": batch / med if med > 0 else float("inf"), "n": int(a.size)}


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def run_bench(tx, rx, tiles: np.ndarray, batch: int, snr_db: float, rng: np.random.Generator, iters: int,
              warmup: int, channel: str = "rayleigh", log=lambda m: None) -> dict:
    """Time every stage over ``iters`` runs of a batch (fresh channel draw each run)."""
    reps = -(-batch // len(tiles))
    x = np.ascontiguousarray(np.concatenate([tiles] * reps)[:batch])
    per: dict[str, list[float]] = {k: [] for k in BENCH_STAGES}
    for i in range(warmup + iters):
        h = draw_h(rng, batch, channel)
        t0 = time.perf_counter()
        r = tx.send(x, snr_db=snr_db, h=h)
        t1 = time.perf_counter()
        y = apply_channel(r.samples, r.h, rng, r.noise_var)
        t2 = time.perf_counter()
        o = rx.receive(y, r.h, r.p_tot, r.noise_var)
        t3 = time.perf_counter()
        if i < warmup:
            continue
        for k, v in {**r.timings, **o.timings, "channel": t2 - t1, "end_to_end": t3 - t0}.items():
            per[k].append(v)
    out = {k: stats(v, batch) for k, v in per.items() if v}
    # encoder + decoder alone (what the radio side must not slow down by more than 30%)
    nets = [a + b for a, b in zip(per["encode"], per["decode"])]
    out["encode+decode"] = stats(nets, batch)
    # link throughput as a share of the networks' throughput: the median over runs of
    # (encode+decode time) / (end-to-end time) of the *same* run, robust to load drifting
    # between runs on a shared machine; the ratio of the two medians is recorded too
    share = float(np.median(np.asarray(nets) / np.asarray(per["end_to_end"])))
    return {"batch": batch, "stages": out, "peak_rss_mb": _peak_rss_mb(), "radio_share_of_throughput": share,
            "ratio_of_median_throughputs": out["end_to_end"]["throughput_per_s"] / out["encode+decode"]["throughput_per_s"]}
