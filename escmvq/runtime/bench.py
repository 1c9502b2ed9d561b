"""Per-stage latency/throughput of the runtime (``escmvq bench``), MLPerf-edge style:
SingleStream (batch 1: p50/p90/p99 latency) and Offline (batch N: throughput), after a
warm-up, with the environment recorded (host, provider really used, versions, and on a
Jetson the L4T release, nvpmodel mode, jetson_clocks state and power from jetson-stats).
:func:`report` is the whole ``escmvq bench`` run as one call."""
from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from escmvq.core.channels import apply_channel, draw_h
from escmvq.core.vocab import DEVICES, check_name
from escmvq.io import provenance
from escmvq.runtime.bundle import graph_file
from escmvq.runtime.link import STAGES

# the bench report's header (docs/runtime.md, "Result documents")
BENCH_FORMAT = "escmvq-bench"
BENCH_VERSION = 1

__all__ = ["detect_jetson", "environment", "run_bench", "compare_receivers", "stats", "BENCH_STAGES", "DEVICES",
           "report"]

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
    """:func:`escmvq.io.provenance.environment` plus the device, the providers used and those
    this onnxruntime build offers (and the Jetson's state on a Jetson)."""
    import onnxruntime as ort

    env = {**provenance.environment(), "device": device, "providers_used": providers_used,
           "onnxruntime": ort.__version__, "onnxruntime_available_providers": ort.get_available_providers()}
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
    """Time every stage over ``iters`` runs of a batch (fresh channel draw each run):
    :func:`compare_receivers` with one receiver. ``radio_share_of_throughput`` is the median
    over runs of (encode + decode time) / (end-to-end time) of the *same* run, robust to load
    drifting between runs on a shared machine; the ratio of the two medians is recorded too."""
    one = compare_receivers(tx, {"rx": rx}, tiles, batch, snr_db, rng, iters, warmup, channel)["receivers"]["rx"]
    out = one["stages"]
    return {"batch": batch, "stages": out, "peak_rss_mb": _peak_rss_mb(),
            "radio_share_of_throughput": one["radio_share_of_throughput"],
            "ratio_of_median_throughputs": out["end_to_end"]["throughput_per_s"] / out["encode+decode"]["throughput_per_s"]}


def compare_receivers(tx, rxs: dict, tiles: np.ndarray, batch: int, snr_db: float, rng: np.random.Generator,
                      iters: int, warmup: int, channel: str = "rayleigh") -> dict:
    """Paired timing of several receivers (e.g. hard and soft decoding) on the same transmissions.

    tx : Transmitter; rxs : ``{name: Receiver}`` (the first is the reference of the ratios);
    tiles : ``[n, 3, th, tw]`` float32; batch, iters, warmup : ints; rng : np.random.Generator.
    Each run transmits once (fresh fading), applies the channel once, then every receiver
    decodes the same samples, in an order rotated from run to run; a receiver's end-to-end
    time is transmit + channel + its own receive. Pairing the runs keeps load drifting on a
    shared machine out of the ratios.

    Returns ``{"batch", "receivers": {name: {"settings", "stages", "radio_share_of_throughput"}},
    "vs_<first>": {name: {"e2e_median_ms_added", "e2e_median_ratio", "throughput_ratio",
    "paired_added_ms_median"}}}`` (the last: median over runs of the difference of the same run);
    ``radio_share_of_throughput`` is as :func:`run_bench`'s (median over runs of
    (encode + decode) / end-to-end).
    """
    names = list(rxs)
    reps = -(-batch // len(tiles))
    x = np.ascontiguousarray(np.concatenate([tiles] * reps)[:batch])
    per = {k: {s: [] for s in BENCH_STAGES} for k in names}
    for i in range(warmup + iters):
        h = draw_h(rng, batch, channel)
        t0 = time.perf_counter()
        r = tx.send(x, snr_db=snr_db, h=h)
        t1 = time.perf_counter()
        y = apply_channel(r.samples, r.h, rng, r.noise_var)
        t2 = time.perf_counter()
        for j in range(len(names)):
            k = names[(i + j) % len(names)]
            t3 = time.perf_counter()
            o = rxs[k].receive(y, r.h, r.p_tot, r.noise_var)
            t4 = time.perf_counter()
            if i >= warmup:
                for s, v in {**r.timings, **o.timings, "channel": t2 - t1, "end_to_end": (t2 - t0) + (t4 - t3)}.items():
                    per[k][s].append(v)
    out = {"batch": batch, "receivers": {}}
    for k in names:
        st = {s: stats(v, batch) for s, v in per[k].items() if v}
        nets = np.asarray(per[k]["encode"]) + np.asarray(per[k]["decode"])
        st["encode+decode"] = stats(list(nets), batch)
        out["receivers"][k] = {"settings": getattr(rxs[k], "settings", None), "stages": st,
                               "radio_share_of_throughput": float(np.median(nets / np.asarray(per[k]["end_to_end"])))}
    ref = out["receivers"][names[0]]["stages"]["end_to_end"]
    e2e0 = np.asarray(per[names[0]]["end_to_end"])
    vs = {}
    for k in names[1:]:
        e2e = out["receivers"][k]["stages"]["end_to_end"]
        vs[k] = {"e2e_median_ms_added": e2e["median_ms"] - ref["median_ms"],
                 "e2e_median_ratio": e2e["median_ms"] / ref["median_ms"],
                 "throughput_ratio": e2e["throughput_per_s"] / ref["throughput_per_s"],
                 "paired_added_ms_median": 1e3 * float(np.median(np.asarray(per[k]["end_to_end"]) - e2e0))}
    out[f"vs_{names[0]}"] = vs
    return out


def report(bundle=None, device: str = "cpu", batches=(1, 64), iters: int = 100, warmup: int = 10,
           snr_db: float = 10.0, channel: str = "rayleigh", image=None, int8: bool = False,
           threads: int | None = None, seed: int = 0, decoding: str | None = None, log=None) -> dict:
    """Benchmark a bundle's transmitter and receiver: what ``escmvq bench`` measures and prints.

    bundle : folder (None: the shipped model); device : one of :data:`DEVICES`; batches :
    batch sizes (1 = SingleStream, N = Offline); iters, warmup : timed and untimed runs per
    batch size; image : image file cut into tiles (None: random tiles from ``seed``); int8 :
    the bundle's int8 graphs; threads : ONNX Runtime intra-op threads; decoding : the
    receiver's ("hard" | "soft"; None: the runtime's default); log : callable(str) told each
    batch size as it starts. Limits BLAS to one thread (the runtime's own setting).

    Returns ``{"environment", "bundle", "settings", "results"}`` (one :func:`run_bench` per
    batch size); a non-Jetson host with ``device="jetson"`` is a ValueError.
    """
    from escmvq.runtime.backends import used_provider
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.images import load_image, tile
    from escmvq.runtime.receiver import DEFAULT_DECODING, Receiver
    from escmvq.runtime.threads import limit_blas_threads
    from escmvq.runtime.transmitter import Transmitter

    check_name("device", device, DEVICES)
    limit_blas_threads(1)
    if device == "jetson":
        ok, found = detect_jetson()
        if not ok:
            raise ValueError(f"--device jetson: this host is not a Jetson ({found})")
    b = load_bundle(bundle)
    prec = "int8" if int8 else "fp32"
    tx = Transmitter(b, device=device, precision=prec, threads=threads)
    rx = Receiver(b, device=device, precision=prec, threads=threads, decoding=decoding or DEFAULT_DECODING)
    used = {"encoder": used_provider(tx.session), "decoder": used_provider(rx.session)}
    rng = np.random.default_rng(seed)
    if image is not None:
        tiles = tile(load_image(image), b.tile_size)[0]
    else:
        tiles = rng.random((64, 3, *b.tile_size), dtype=np.float32)
    results = []
    for n in batches:
        if log is not None:
            log(f"bench: batch {n}, {warmup} warm-up + {iters} timed runs on {used['encoder']} ...")
        results.append(run_bench(tx, rx, tiles, n, snr_db, rng, iters, warmup, channel))
    files = b.manifest["files"]
    graphs = [graph_file(part, prec) for part in ("encoder", "decoder")]
    return {
        **provenance.stamp(BENCH_FORMAT, BENCH_VERSION),
        "environment": environment(device, used),
        "bundle": {"path": str(b.path), "sha256": b.hash_hex, "precision": prec,
                   "bytes": sum(f["bytes"] for f in files.values()),
                   "model_bytes": sum(files[g]["bytes"] for g in graphs)},
        "settings": {"snr_db": snr_db, "channel": channel, "iters": iters, "warmup": warmup,
                     "tiles": "image " + str(image) if image else "random", "seed": seed,
                     "receiver": rx.settings},
        "results": results,
    }
