"""``escmvq train-baselines``: train and export the K pairs of the Sec. V baselines.

Every pair is one ``escmvq train --baseline METHOD:LEVEL`` run followed by ``escmvq export
--method jcap`` (the baselines' fixed modulation), each in its own process (``--jobs``
run side by side, ``--threads`` torch threads each). A pair whose bundle exists is skipped;
one with a ``last.ckpt`` resumes; ``baselines.json`` is rewritten as each pair finishes, and a
lock file keeps a second driver out of the same ``--out``. Layout under ``--out``::

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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.common import fail

# One pair per operating point, spread over the SNR range (the paper trains 5/5/21/3).
DEFAULT_PAIRS = ("esc-svq:1", "esc-svq:3", "esc-svq:5", "bsc-vq:0.001", "bsc-vq:0.02", "bsc-vq:0.1",
                 "bsc-sq:0.001", "bsc-sq:0.02", "bsc-sq:0.1", "blindsc:1", "blindsc:5")


def _pair_name(preset: str, spec: str) -> str:
    from escmvq.training.baselines import preset_from_spec
    from escmvq.training.presets import get_preset

    return preset_from_spec(get_preset(preset), spec).name


def _run(cmd: list[str], log: Path) -> int:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode


def _paths(out: Path, name: str) -> tuple[Path, Path]:
    """``(OUT/NAME, OUT/bundles/NAME.escmvq)``: a pair's run folder and its bundle."""
    return out / name, out / "bundles" / f"{name}.escmvq"


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
    same pairs twice into the same checkpoints. Returns the open file (the lock lives as long as it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    f = open(out / ".train-baselines.lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        fail(f"another escmvq train-baselines is running in {out} (lock {out / '.train-baselines.lock'})")
    return f


def train_baselines_cmd(
    out: Path = typer.Option(..., "--out", help="folder for the runs, bundles/ and baselines.json"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder holding the dataset files"),
    preset: str = typer.Option("cpu", help="base preset every pair derives from"),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, stl10, folder or npz"),
    pairs: str = typer.Option(",".join(DEFAULT_PAIRS), "--pairs", help="comma list of METHOD:LEVEL"),
    epochs: int = typer.Option(3, help="epochs per pair (the budget: epochs x steps-per-epoch steps)"),
    steps_per_epoch: int = typer.Option(390, "--steps-per-epoch", help="batches per epoch"),
    jobs: int = typer.Option(2, help="pairs trained side by side"),
    threads: int = typer.Option(1, help="torch threads per pair"),
    seed: int = typer.Option(0, help="seed of every pair"),
    distortion_images: int = typer.Option(10000, "--distortion-images", help="training images for table (31)"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="export calibration images (default as escmvq export)"),
) -> None:
    """Train and export baseline pairs (ESC-SVQ, BSC+VQ, BSC+SQ, BlindSC) with equal step budgets."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    specs = [s.strip() for s in pairs.split(",") if s.strip()]
    if not specs:
        fail("--pairs: empty")
    if jobs < 1 or threads < 1 or epochs < 1 or steps_per_epoch < 1:
        fail("--jobs, --threads, --epochs and --steps-per-epoch must be at least 1", 2)
    if not data_dir.exists():
        fail(f"--data-dir {data_dir} does not exist", 2)
    try:
        names = [_pair_name(preset, s) for s in specs]
    except ValueError as e:
        fail(str(e), 2)
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "escmvq.cli.main"]

    def one(spec: str, name: str) -> tuple[str, str, float]:
        run, bundle = _paths(out, name)
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
        cmd = exe + ["export", str(run / "final.ckpt"), "-o", str(bundle), "--method", "jcap"]
        if calib is not None:
            cmd += ["--calib", str(calib)]
        if _run(cmd, run / "export.log"):
            return name, _failure("export", run / "export.log"), time.time() - t0
        return name, "trained", time.time() - t0

    lock = _lock(out)
    steps = epochs * steps_per_epoch
    results: list[tuple[str, str]] = []
    done: dict[str, dict] = {}  # summary of every finished pair, read once

    def finished() -> dict[str, dict]:  # in --pairs order
        return {n: done[n] for n in names if n in done}

    path = out / "baselines.json"
    try:
        with console.status(f"training {len(specs)} pairs, {jobs} at a time ({steps} steps each)"):
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(one, spec, name) for spec, name in zip(specs, names)]
                for fut in as_completed(futures):
                    name, state, secs = fut.result()
                    console.print(f"{name}: {state} ({secs / 60:.1f} min)", highlight=False)
                    results.append((name, state))
                    run, bundle = _paths(out, name)
                    if (run / "final.ckpt").is_file() and (bundle / "manifest.json").is_file():
                        done[name] = _summary(run, bundle)
                    _write_summary(path, finished(), steps)  # after every pair: an interrupted run keeps it
    finally:
        if lock is not None:
            lock.close()
    summary = finished()
    tab = Table(title=f"baseline pairs ({steps} steps each)")
    for c in ("pair", "steps", "minutes", "PSNR clean (eval)", "mu mean", "MB"):
        tab.add_column(c, justify="right")
    for name, s in summary.items():
        tab.add_row(name, str(s["steps"]), f"{(s['train_wall_s'] or 0) / 60:.1f}",
                    f"{s['eval_psnr_clean']:.2f}" if s["eval_psnr_clean"] is not None else "-",
                    f"{s['mu_mean']:.4f}", f"{s['parameter_bytes'] / 1e6:.2f}")
    console.print(tab)
    console.print(f"wrote {path}", highlight=False)
    failed = [n for n, st in results if "failed" in st]
    if failed:
        fail(f"{len(failed)} pair(s) failed: {', '.join(failed)}")


def register(app: typer.Typer) -> None:
    app.command("train-baselines")(train_baselines_cmd)
