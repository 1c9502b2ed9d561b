"""Per-stage latency/throughput of the runtime (``escmvq bench``), MLPerf-edge style:
SingleStream (batch 1: p50/p90/p99 latency; p90 end to end is the headline) and Offline
(batch N: throughput), after a warm-up, with the environment recorded (host, provider really
used, versions, and on a Jetson the L4T release, nvpmodel mode, jetson_clocks state and power
from jetson-stats).

MLPerf's run rules are followed in kind: the timed loop runs at least ``iters`` queries *and*
at least ``min_duration`` seconds (a fast query repeats until the duration is reached, so a
tail percentile rests on many samples, and a slow one still gets its count), and a result
says whether it met both (``valid``, with the reasons when not: a ``max_duration`` cap can
stop a loop first). One row per model format (fp32, int8) carries the PSNR the format
reaches on the same tiles beside its latency, as ``yolo benchmark`` does.
:func:`report` is the whole ``escmvq bench`` run as one call."""
from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import threading
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
# 2: ``iters`` is a minimum (the loop also runs ``min_duration``), results carry their format,
# ``timed`` and ``valid``; ``headline``, ``formats`` and ``power`` added
BENCH_VERSION = 2

__all__ = ["detect_jetson", "environment", "run_bench", "compare_receivers", "stats", "BENCH_STAGES", "DEVICES",
           "report", "FORMATS", "validity", "tile_psnr", "PowerSampler", "power_summary", "jtop_power_source",
           "DEFAULT_MIN_DURATION_S", "DEFAULT_MAX_DURATION_S"]

FORMATS = ("fp32", "int8")  # the bundle's graph precisions (export writes int8 with --int8)
DEFAULT_MIN_DURATION_S = 1.0  # MLPerf's submission rule is 600 s and 1024 queries for SingleStream
DEFAULT_MAX_DURATION_S = 600.0  # a safety stop per batch size on slow hardware (the result is then not valid)

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


def validity(queries: int, duration_s: float, min_queries: int, min_duration_s: float) -> tuple[bool, list[str]]:
    """MLPerf's validity of a timed loop: (both minimums met, the reasons when not)."""
    why = []
    if queries < min_queries:
        why.append(f"{queries} timed queries < the minimum {min_queries}")
    if duration_s < min_duration_s:
        why.append(f"timed loop ran {duration_s:.3g} s < the minimum {min_duration_s:g} s")
    return not why, why


def run_bench(tx, rx, tiles: np.ndarray, batch: int, snr_db: float, rng: np.random.Generator, iters: int,
              warmup: int, channel: str = "rayleigh", log=lambda m: None, min_duration: float = 0.0,
              max_duration: float | None = None, sampler=None) -> dict:
    """Time every stage over at least ``iters`` runs and ``min_duration`` seconds of a batch
    (fresh channel draw each run): :func:`compare_receivers` with one receiver.
    ``radio_share_of_throughput`` is the median over runs of (encode + decode time) /
    (end-to-end time) of the *same* run, robust to load drifting between runs on a shared
    machine; the ratio of the two medians is recorded too. ``sampler``: a
    :class:`PowerSampler` run during the timed loop (its summary per tile goes in ``power``)."""
    r = compare_receivers(tx, {"rx": rx}, tiles, batch, snr_db, rng, iters, warmup, channel,
                          min_duration=min_duration, max_duration=max_duration, sampler=sampler)
    one = r["receivers"]["rx"]
    out = one["stages"]
    res = {"batch": batch, "stages": out, "peak_rss_mb": _peak_rss_mb(),
           "radio_share_of_throughput": one["radio_share_of_throughput"],
           "ratio_of_median_throughputs": out["end_to_end"]["throughput_per_s"] / out["encode+decode"]["throughput_per_s"],
           "timed": r["timed"], "valid": r["valid"], "invalid_reasons": r["invalid_reasons"]}
    if sampler is not None:
        res["power"] = sampler.summary(r["timed"]["queries"] * batch)
    return res


def compare_receivers(tx, rxs: dict, tiles: np.ndarray, batch: int, snr_db: float, rng: np.random.Generator,
                      iters: int, warmup: int, channel: str = "rayleigh", min_duration: float = 0.0,
                      max_duration: float | None = None, sampler=None) -> dict:
    """Paired timing of several receivers (e.g. hard and soft decoding) on the same transmissions.

    tx : Transmitter; rxs : ``{name: Receiver}`` (the first is the reference of the ratios);
    tiles : ``[n, 3, th, tw]`` float32; batch, iters, warmup : ints; rng : np.random.Generator.
    Each run transmits once (fresh fading), applies the channel once, then every receiver
    decodes the same samples, in an order rotated from run to run; a receiver's end-to-end
    time is transmit + channel + its own receive. Pairing the runs keeps load drifting on a
    shared machine out of the ratios. The timed runs go on until at least ``iters`` runs and
    ``min_duration`` seconds (after the warm-up) are done, or ``max_duration`` seconds have
    passed (at least one run); ``sampler.start()`` / ``.stop()`` bracket them.

    Returns ``{"batch", "timed": {"queries", "duration_s", "min_queries", "min_duration_s",
    "max_duration_s"}, "valid", "invalid_reasons", "receivers": {name: {"settings", "stages", "radio_share_of_throughput"}},
    "vs_<first>": {name: {"e2e_median_ms_added", "e2e_median_ratio", "throughput_ratio",
    "paired_added_ms_median"}}}`` (the last: median over runs of the difference of the same run);
    ``radio_share_of_throughput`` is as :func:`run_bench`'s (median over runs of
    (encode + decode) / end-to-end).
    """
    names = list(rxs)
    reps = -(-batch // len(tiles))
    x = np.ascontiguousarray(np.concatenate([tiles] * reps)[:batch])
    per = {k: {s: [] for s in BENCH_STAGES} for k in names}
    i, timed, start, elapsed = 0, 0, None, 0.0
    try:
        while True:
            if i == warmup:
                if sampler is not None:
                    sampler.start()
                start = time.perf_counter()
            if start is not None:
                elapsed = time.perf_counter() - start
                if timed >= iters and elapsed >= min_duration:
                    break
                if max_duration is not None and timed >= 1 and elapsed >= max_duration:
                    break
            _one_run(tx, rxs, names, x, batch, snr_db, rng, channel, i, warmup, per)
            i += 1
            timed += i > warmup
    finally:
        if sampler is not None:
            sampler.stop()
    ok, why = validity(timed, elapsed, iters, min_duration)
    out = {"batch": batch, "timed": {"queries": timed, "duration_s": elapsed, "min_queries": iters,
                                     "min_duration_s": min_duration, "max_duration_s": max_duration},
           "valid": ok, "invalid_reasons": why, "receivers": {}}
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


def _one_run(tx, rxs, names, x, batch, snr_db, rng, channel, i, warmup, per) -> None:
    """Run ``i`` of :func:`compare_receivers`: one transmission, one channel, every receiver
    (order rotated by ``i``); the times are kept once the warm-up is over."""
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


def _tiles_u8(t: np.ndarray) -> np.ndarray:
    """Tiles in [0, 1] -> uint8, rounded as the receiver's output image is (``images.untile``)."""
    return np.clip(np.rint(np.asarray(t, np.float64) * 255.0), 0, 255).astype(np.uint8)


def tile_psnr(tx, rx, tiles: np.ndarray, snr_db: float, channel: str, seed: int, batch: int = 64) -> dict:
    """PSNR (dB) of the reconstruction of ``tiles`` over all of them (uint8, as images are scored):

    - ``psnr_db``: through the bench's channel at ``snr_db`` (fading and noise drawn from
      ``seed``, so every format sees the same draws);
    - ``psnr_clean_db``: the same transmissions with no channel errors (the receiver gets
      ``h x`` without noise): what the model, its quantisation and the plan chosen at
      ``snr_db`` cost (the plan still drops codebooks at a low SNR).
    """
    from escmvq.core.metrics import psnr

    rng = np.random.default_rng(seed)
    ref = _tiles_u8(tiles)
    out, clean = np.empty_like(ref), np.empty_like(ref)
    for i in range(0, len(tiles), batch):
        t = tiles[i:i + batch]
        r = tx.send(t, snr_db=snr_db, h=draw_h(rng, len(t), channel))
        y = apply_channel(r.samples, r.h, rng, r.noise_var)
        out[i:i + len(t)] = _tiles_u8(rx.receive(y, r.h, r.p_tot, r.noise_var).tiles)
        noiseless = (r.samples * r.h[:, None]).astype(np.complex64)
        clean[i:i + len(t)] = _tiles_u8(rx.receive(noiseless, r.h, r.p_tot, r.noise_var).tiles)
    return {"psnr_db": float(psnr(ref, out)), "psnr_clean_db": float(psnr(ref, clean)), "tiles": int(len(tiles))}


def power_summary(watts: list[float], duration_s: float, items: int) -> dict:
    """Mean power over a timed loop and the energy per item: ``mean_w``, ``energy_j`` =
    mean W x duration, ``mj_per_tile`` = 1000 energy / items (``None`` fields without samples)."""
    if not watts or items <= 0:
        return {"samples": len(watts), "duration_s": duration_s, "mean_w": None, "energy_j": None,
                "mj_per_tile": None}
    mean_w = float(np.mean(np.asarray(watts, np.float64)))
    energy = mean_w * duration_s
    return {"samples": len(watts), "duration_s": duration_s, "mean_w": mean_w, "energy_j": energy,
            "mj_per_tile": 1e3 * energy / items}


class PowerSampler:
    """Read ``source()`` (watts) every ``interval_s`` in a thread between :meth:`start` and
    :meth:`stop`: the timed loop runs meanwhile, so the mean is the board power while the
    link works. The first reading is taken at :meth:`start`, the last at :meth:`stop`."""

    def __init__(self, source, interval_s: float = 0.05, clock=time.perf_counter):
        self.source, self.interval_s, self.clock = source, interval_s, clock
        self.watts: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = None
        self._t0 = self._t1 = None

    def _read(self) -> None:
        try:
            self.watts.append(float(self.source()))
        except Exception as e:  # noqa: BLE001 - a sensor hiccup must not end the benchmark
            self.errors.append(f"{type(e).__name__}: {e}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def start(self) -> None:
        self.watts, self.errors = [], []
        self._stop.clear()
        self._t0, self._t1 = self.clock(), None
        self._read()
        self._thread = threading.Thread(target=self._loop, name="escmvq-power", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._read()
        self._t1 = self.clock()

    def summary(self, items: int) -> dict:
        dur = (self._t1 - self._t0) if self._t0 is not None and self._t1 is not None else 0.0
        out = power_summary(self.watts, dur, items)
        out["interval_s"] = self.interval_s
        if self.errors:
            out["read_errors"] = len(self.errors)
            out["first_error"] = self.errors[0]
        return out


_JTOP_MISSING = ("power sampling needs jetson-stats (the jtop service) on a Jetson: sudo pip3 install -U "
                 "jetson-stats, then reboot")


def jtop_power_source():
    """(source, close): the Jetson's total board power in W from jetson-stats' ``jtop``
    (``jtop().power["tot"]["power"]``, mW). Raises RuntimeError with one line when jtop is
    absent or its service does not answer. Written against jetson-stats 4.x; not run on a
    Jetson here."""
    try:
        from jtop import jtop
    except ImportError:
        raise RuntimeError(_JTOP_MISSING) from None
    j = jtop()
    try:
        j.start()
    except Exception as e:  # noqa: BLE001 - jtop raises its own JtopException
        raise RuntimeError(f"jtop did not start ({e}): is the jtop service running? ({_JTOP_MISSING})") from None

    def source() -> float:
        return float(j.power["tot"]["power"]) / 1e3

    return source, j.close


def _formats(formats, int8: bool) -> list[str]:
    if formats is None:
        return ["int8" if int8 else "fp32"]
    out = list(dict.fromkeys(formats))
    for f in out:
        check_name("format", f, FORMATS)
    if not out:
        raise ValueError(f"formats: give one or more of {', '.join(FORMATS)}")
    if int8 and out != ["int8"]:
        raise ValueError("int8=True and formats disagree: give one of them")
    return out


def report(bundle=None, device: str = "cpu", batches=(1, 64), iters: int = 100, warmup: int = 10,
           snr_db: float = 10.0, channel: str = "rayleigh", image=None, int8: bool = False,
           threads: int | None = None, seed: int = 0, decoding: str | None = None, log=None,
           formats=None, min_duration: float = DEFAULT_MIN_DURATION_S,
           max_duration: float | None = DEFAULT_MAX_DURATION_S, power: bool | None = None,
           power_source=None) -> dict:
    """Benchmark a bundle's transmitter and receiver: what ``escmvq bench`` measures and prints.

    bundle : folder (None: the shipped model); device : one of :data:`DEVICES`; batches :
    batch sizes (1 = SingleStream, N = Offline); iters : minimum timed runs per batch size;
    min_duration / max_duration : the timed loop runs at least ``min_duration`` s and stops at
    ``max_duration`` s (None: never; a loop stopped short of ``iters`` or ``min_duration`` is
    not ``valid``); warmup : untimed runs; image : image file cut into tiles (None: random
    tiles from ``seed``); formats : graph precisions to compare (default ``["int8"]`` if
    ``int8`` else ``["fp32"]``), each timed and scored by :func:`tile_psnr` on the same tiles;
    threads : ONNX Runtime intra-op threads; decoding : the receiver's ("hard" | "soft";
    None: the runtime's default); power : sample the board power during every timed loop
    (None: on a Jetson, when jetson-stats is there; True: required, an error without it);
    power_source : a ``(source, close)`` pair to use instead of jtop's; log : callable(str)
    told each batch size as it starts. Limits BLAS to one thread (the runtime's own setting).

    Returns ``{"format", "version", "created_utc", "environment", "bundle", "settings",
    "headline", "formats", "valid", "power", "results"}`` (one :func:`run_bench` per format and
    batch size); a non-Jetson host with ``device="jetson"`` is a ValueError.
    """
    from escmvq.runtime.backends import used_provider
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.images import load_image, tile
    from escmvq.runtime.receiver import DEFAULT_DECODING, Receiver
    from escmvq.runtime.threads import limit_blas_threads
    from escmvq.runtime.transmitter import Transmitter

    check_name("device", device, DEVICES)
    fmts = _formats(formats, int8)
    if iters < 1 or min_duration < 0 or (max_duration is not None and max_duration < min_duration):
        raise ValueError(f"iters >= 1 and 0 <= min_duration <= max_duration, got {iters}, {min_duration}, "
                         f"{max_duration}")
    limit_blas_threads(1)
    if device == "jetson":
        ok, found = detect_jetson()
        if not ok:
            raise ValueError(f"--device jetson: this host is not a Jetson ({found})")
    power_note, power_from = None, "given power_source"
    if power is False:
        power_source = None
    elif power_source is None and (power or device == "jetson"):
        try:
            power_source, power_from = jtop_power_source(), "jtop (jetson-stats): total board power"
        except RuntimeError as e:
            if power:
                raise
            power_note = str(e)
    b = load_bundle(bundle)
    rng = np.random.default_rng(seed)
    if image is not None:
        tiles = tile(load_image(image), b.tile_size)[0]
    else:
        tiles = rng.random((64, 3, *b.tile_size), dtype=np.float32)
    results, rows, used = [], [], {}
    source, close = power_source if power_source is not None else (None, None)
    try:
        for prec in fmts:
            tx = Transmitter(b, device=device, precision=prec, threads=threads)
            rx = Receiver(b, device=device, precision=prec, threads=threads, decoding=decoding or DEFAULT_DECODING)
            used = used or {"encoder": used_provider(tx.session), "decoder": used_provider(rx.session)}
            score = tile_psnr(tx, rx, tiles, snr_db, channel, seed)
            mine = []
            for n in batches:
                if log is not None:
                    log(f"bench: batch {n} ({prec}), {warmup} warm-up + at least {iters} timed runs and "
                        f"{min_duration:g} s on {used_provider(tx.session)} ...")
                sampler = PowerSampler(source) if source is not None else None
                r = run_bench(tx, rx, tiles, n, snr_db, rng, iters, warmup, channel, min_duration=min_duration,
                              max_duration=max_duration, sampler=sampler)
                mine.append({"format": prec, **r})
            results += mine
            rows.append(_format_row(prec, mine, score))
    finally:
        if close is not None:
            close()
    files = b.manifest["files"]
    graphs = [graph_file(part, fmts[0]) for part in ("encoder", "decoder")]
    first = rows[0]
    headline = None
    if first["singlestream"]:
        headline = {"scenario": "SingleStream", "metric": "end-to-end latency p90 at batch 1 (ms)",
                    "format": first["format"], "p90_ms": first["p90_ms"], "median_ms": first["median_ms"],
                    "valid": first["valid"]}
    return {
        **provenance.stamp(BENCH_FORMAT, BENCH_VERSION, environment(device, used)),
        "bundle": {"path": str(b.path), "sha256": b.hash_hex, "precision": fmts[0],
                   "bytes": sum(f["bytes"] for f in files.values()),
                   "model_bytes": sum(files[g]["bytes"] for g in graphs),
                   "model_bytes_per_format": {p: sum(files[graph_file(part, p)]["bytes"]
                                                     for part in ("encoder", "decoder")) for p in fmts}},
        "settings": {"snr_db": snr_db, "channel": channel, "iters": iters, "min_queries": iters,
                     "min_duration_s": min_duration, "max_duration_s": max_duration, "warmup": warmup,
                     "tiles": "image " + str(image) if image else "random", "seed": seed,
                     "formats": fmts, "receiver": rx.settings,
                     "psnr": ("over the tiles of " + str(image) if image else
                              "over 64 random tiles (uniform noise: compares formats, says nothing of image quality)")
                             + f"; psnr_db at {snr_db:g} dB through the {channel} channel (draws from the seed, the "
                               "same for every format), psnr_clean_db with no channel errors"},
        "headline": headline,
        "formats": rows,
        "valid": all(r["valid"] for r in results),
        "power": ({"source": power_from} if source is not None
                  else {"source": None, "note": power_note or "not sampled (only on a Jetson, or with power=True)"}),
        "results": results,
    }


def _format_row(prec: str, results: list[dict], score: dict) -> dict:
    """One row of the formats table: the SingleStream latency (batch 1, else the smallest batch)
    and the Offline throughput (the largest batch) of a format, with its PSNR."""
    small = min(results, key=lambda r: r["batch"])
    large = max(results, key=lambda r: r["batch"])
    e2e = small["stages"]["end_to_end"]
    row = {"format": prec, "latency_batch": small["batch"], "singlestream": small["batch"] == 1,
           "p90_ms": e2e["p90_ms"], "median_ms": e2e["median_ms"], "throughput_batch": large["batch"],
           "throughput_per_s": large["stages"]["end_to_end"]["throughput_per_s"],
           "psnr_db": score["psnr_db"], "psnr_clean_db": score["psnr_clean_db"],
           "valid": all(r["valid"] for r in results)}
    if "power" in small:
        row["mean_w"], row["mj_per_tile"] = small["power"]["mean_w"], small["power"]["mj_per_tile"]
    return row
