"""Training and exporting the K pairs of the Sec. V baselines: a small job scheduler.

Every pair is one ``escmvq train --baseline METHOD:LEVEL`` run followed by ``escmvq export
--method jcap --no-erasures`` (the baselines' fixed modulation; without the "not sent" states
unless asked: they cost the pairs up to 1.6 dB with the soft receiver, docs/evaluation.md
"Same receiver for every method"), each in its own process (``jobs`` run
side by side, ``threads`` torch threads each: separate processes keep the torch thread
pools apart). A pair whose bundle exists is skipped; one with a ``last.ckpt`` resumes;
``baselines.json`` is rewritten as each pair finishes (an interrupted run keeps what is
done), and a lock file keeps a second driver out of the same ``out``. Layout under ``out``::

    OUT/NAME/            run folder (last.ckpt, final.ckpt, train.log, export.log)
    OUT/bundles/NAME.escmvq
    OUT/baselines.json   per pair: preset, steps, wall time, eval PSNR, mu, bundle hash, bytes

Evaluate them with ``escmvq eval --pairs 'bsc-vq=OUT/bundles/*-bsc-vq-*.escmvq' ...``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from escmvq.core.vocab import BASELINE_PAIRS
from escmvq.training.metrics import METRICS_FILE, read_metrics

__all__ = ["DEFAULT_PAIRS", "PairsBusy", "PairsResult", "train_pairs", "pair_name", "pair_paths", "pair_step"]

DEFAULT_PAIRS = BASELINE_PAIRS


class PairsBusy(RuntimeError):
    """Another driver is training pairs in the same folder."""


@dataclass
class PairsResult:
    """path : ``baselines.json``; steps : training steps per pair; pairs : ``{name: summary}`` of
    every finished pair, in the order asked; states : ``[(name, state)]`` in finishing order,
    state "exists", "trained" or "STEP failed: <last log line> (see LOG)"."""
    path: Path
    steps: int
    pairs: dict = field(default_factory=dict)
    states: list = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [n for n, st in self.states if "failed" in st]


def pair_name(preset: str, spec: str) -> str:
    """The run name of pair ``spec`` (METHOD:LEVEL) derived from ``preset``; ValueError for a bad spec."""
    from escmvq.training.baselines import preset_from_spec
    from escmvq.training.presets import get_preset

    return preset_from_spec(get_preset(preset), spec).name


def _run(cmd: list[str], log: Path) -> int:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode


def pair_paths(out: Path, name: str) -> tuple[Path, Path]:
    """``(OUT/NAME, OUT/bundles/NAME.escmvq)``: a pair's run folder and its bundle."""
    return out / name, out / "bundles" / f"{name}.escmvq"


def pair_step(out: Path, name: str) -> int:
    """Training steps pair ``name`` has finished so far, from the last line of its run's
    ``metrics.jsonl`` (written by the trainer at the end of every epoch); 0 before the first."""
    recs = read_metrics(pair_paths(Path(out), name)[0] / METRICS_FILE)
    return int(recs[-1]["step"]) if recs else 0


def _failure(step: str, log: Path) -> str:
    """``"STEP failed: <the log's last non-empty line> (see LOG)"`` (a failing command's one-line error)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return f"{step} failed: {lines[-1] if lines else 'no output'} (see {log})"


def _summary(run: Path, bundle: Path) -> dict:
    import torch

    ck = torch.load(run / "final.ckpt", map_location="cpu", weights_only=True)
    hist = ck.get("history") or [{}]
    from escmvq.runtime.bundle import manifest_hash, parameter_bytes

    man = json.loads((bundle / "manifest.json").read_text())
    mu = ck["mu"]
    return {
        "preset": ck["preset"], "steps": int(ck.get("step", 0)), "train_wall_s": ck.get("train_wall_s"),
        "eval_psnr_clean": (hist[-1].get("eval_psnr") or [None])[0], "mu_mean": float(mu.mean()),
        "mu_median": float(mu.median()), "bundle": str(bundle), "bundle_sha256": manifest_hash(man).hex(),
        "parameter_bytes": parameter_bytes(man),
        "command": ck.get("command"),
    }


def _write_summary(path: Path, summaries: dict[str, dict], steps: int) -> None:
    """(Re)write ``baselines.json`` at ``path`` with the finished pairs' summaries."""
    from escmvq.runtime.files import atomic_write

    doc = {"format": "escmvq-baselines", "version": 1, "steps_per_pair": steps, "pairs": summaries}
    atomic_write(path, lambda p: p.write_text(json.dumps(doc, indent=1)), force=True)


def _lock(out: Path):
    """An exclusive lock on ``OUT/.train-baselines.lock``: two drivers on one folder would train the
    same pairs twice into the same checkpoints. Returns the open file (the lock lives as long as it);
    :class:`PairsBusy` when another driver holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    f = open(out / ".train-baselines.lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise PairsBusy(f"another escmvq train-baselines is running in {out} (lock {out / '.train-baselines.lock'})") from None
    return f


def train_pairs(out, data_dir, specs=DEFAULT_PAIRS, preset: str = "cpu", dataset: str = "cifar10", epochs: int = 3,
                steps_per_epoch: int = 390, jobs: int = 2, threads: int = 1, seed: int = 0,
                distortion_images: int = 10000, calib=None, on_pair=None, on_progress=None,
                poll_s: float = 5.0, erasures: bool = False) -> PairsResult:
    """Train and export the pairs ``specs`` (METHOD:LEVEL each) with equal step budgets
    (``epochs * steps_per_epoch``) under ``out``, ``jobs`` at a time.

    calib : export calibration images (None: as ``escmvq export``); erasures : export the
    pairs with the allocator's erasure states (``escmvq export --erasures``); on_pair :
    callable(name, state, seconds) told as each pair finishes; on_progress : callable(name, steps)
    told every ``poll_s`` seconds with each pair's finished training steps (:func:`pair_step`,
    one update per epoch). A failing pair does not stop
    the others (see :attr:`PairsResult.failed`). Raises :class:`PairsBusy` (before touching
    any pair) when another driver holds ``out``'s lock, ValueError for a bad spec.
    """
    out, data_dir = Path(out), Path(data_dir)
    specs = list(specs)
    names = [pair_name(preset, s) for s in specs]
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "escmvq.cli.main"]

    def one(spec: str, name: str) -> tuple[str, str, float]:
        run, bundle = pair_paths(out, name)
        if (bundle / "manifest.json").is_file():
            return name, "exists", 0.0
        run.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        if not (run / "final.ckpt").is_file():
            cmd = exe + ["train", "--preset", preset, "--baseline", spec, "--dataset", dataset, "--data-dir", str(data_dir),
                         "--out", str(run), "--epochs", str(epochs), "--steps-per-epoch", str(steps_per_epoch),
                         "--threads", str(threads), "--seed", str(seed), "--log-every", "0",
                         "--distortion-images", str(distortion_images)]
            if (run / "last.ckpt").is_file():
                cmd.append("--resume")
            if _run(cmd, run / "train.log"):
                return name, _failure("train", run / "train.log"), time.time() - t0
        cmd = exe + ["export", str(run / "final.ckpt"), "-o", str(bundle), "--method", "jcap",
                     "--erasures" if erasures else "--no-erasures"]
        if calib is not None:
            cmd += ["--calib", str(calib)]
        if _run(cmd, run / "export.log"):
            return name, _failure("export", run / "export.log"), time.time() - t0
        return name, "trained", time.time() - t0

    lock = _lock(out)
    res = PairsResult(path=out / "baselines.json", steps=epochs * steps_per_epoch)
    done: dict[str, dict] = {}  # summary of every finished pair, read once

    def finished() -> dict[str, dict]:  # in the order asked
        return {n: done[n] for n in names if n in done}

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(one, spec, name) for spec, name in zip(specs, names)}
            while pending:
                ready, pending = wait(pending, timeout=poll_s if on_progress is not None else None,
                                      return_when=FIRST_COMPLETED)
                if on_progress is not None:
                    for name in names:
                        on_progress(name, pair_step(out, name))
                for fut in ready:
                    name, state, secs = fut.result()
                    if on_pair is not None:
                        on_pair(name, state, secs)
                    res.states.append((name, state))
                    run, bundle = pair_paths(out, name)
                    if (run / "final.ckpt").is_file() and (bundle / "manifest.json").is_file():
                        done[name] = _summary(run, bundle)
                    _write_summary(res.path, finished(), res.steps)  # after every pair: an interrupted run keeps it
    finally:
        if lock is not None:
            lock.close()
    res.pairs = finished()
    return res
