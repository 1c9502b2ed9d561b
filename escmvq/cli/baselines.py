"""``escmvq train-baselines``: train and export the K pairs of the Sec. V baselines.

The scheduling (one process per pair, resume, skip, lock, ``baselines.json``) is
:func:`escmvq.training.pairs.train_pairs`; this command parses, calls and prints.
Evaluate the pairs with ``escmvq eval --pairs 'bsc-vq=OUT/bundles/*-bsc-vq-*.escmvq' ...``.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.common import fail
from escmvq.core.vocab import BASELINE_PAIRS


def train_baselines_cmd(
    out: Path = typer.Option(..., "--out", help="folder for the runs, bundles/ and baselines.json"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder holding the dataset files"),
    preset: str = typer.Option("cpu", help="base preset every pair derives from"),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, stl10, folder or npz"),
    pairs: str = typer.Option(",".join(BASELINE_PAIRS), "--pairs", help="comma list of METHOD:LEVEL"),
    epochs: int = typer.Option(3, help="epochs per pair (the budget: epochs x steps-per-epoch steps)"),
    steps_per_epoch: int = typer.Option(390, "--steps-per-epoch", help="batches per epoch"),
    jobs: int = typer.Option(2, help="pairs trained side by side"),
    threads: int = typer.Option(1, help="torch threads per pair"),
    seed: int = typer.Option(0, help="seed of every pair"),
    distortion_images: int = typer.Option(10000, "--distortion-images", help="training images for table (31)"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="export calibration images (default as escmvq export)"),
    erasures: bool = typer.Option(False, "--erasures/--no-erasures",
                                  help="export the pairs with the allocator's 'not sent' states (measured worse "
                                       "for every baseline with the soft receiver)"),
) -> None:
    """Train and export baseline pairs (ESC-SVQ, BSC+VQ, BSC+SQ, BlindSC) with equal step budgets.

    Python: ``escmvq.training.pairs.train_pairs(out, data_dir, ["bsc-vq:0.02", ...], preset, ...)``.
    """
    from rich.console import Console
    from rich.table import Table

    from escmvq.training.pairs import PairsBusy, pair_name, train_pairs

    console = Console()
    specs = [s.strip() for s in pairs.split(",") if s.strip()]
    if not specs:
        fail("--pairs: empty")
    if jobs < 1 or threads < 1 or epochs < 1 or steps_per_epoch < 1:
        fail("--jobs, --threads, --epochs and --steps-per-epoch must be at least 1", 2)
    if not data_dir.exists():
        fail(f"--data-dir {data_dir} does not exist", 2)
    try:
        for s in specs:
            pair_name(preset, s)
    except ValueError as e:
        fail(str(e), 2)
    total = epochs * steps_per_epoch
    console.print(f"training {len(specs)} pairs, {jobs} at a time ({total} steps each)", highlight=False)
    try:
        with _pair_bars(console, [pair_name(preset, s) for s in specs], total) as (on_pair, on_progress):
            res = train_pairs(out, data_dir, specs, preset, dataset, epochs, steps_per_epoch, jobs, threads, seed,
                              distortion_images, calib, on_pair=on_pair, on_progress=on_progress,
                              erasures=erasures)
    except PairsBusy as e:
        fail(str(e))
    tab = Table(title=f"baseline pairs ({res.steps} steps each)")
    for c in ("pair", "steps", "minutes", "PSNR clean (eval)", "mu mean", "MB"):
        tab.add_column(c, justify="right")
    for name, s in res.pairs.items():
        tab.add_row(name, str(s["steps"]), f"{(s['train_wall_s'] or 0) / 60:.1f}",
                    f"{s['eval_psnr_clean']:.2f}" if s["eval_psnr_clean"] is not None else "-",
                    f"{s['mu_mean']:.4f}", f"{s['parameter_bytes'] / 1e6:.2f}")
    console.print(tab)
    console.print(f"wrote {res.path}", highlight=False)
    if res.failed:
        fail(f"{len(res.failed)} pair(s) failed: {', '.join(res.failed)}")


@contextmanager
def _pair_bars(console, names: list[str], total: int):
    """One progress bar per pair (training steps, updated per epoch from its metrics.jsonl);
    yields ``(on_pair, on_progress)`` for :func:`escmvq.training.pairs.train_pairs`. A finished
    pair's state is also printed as a line (kept in logs when the output is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        tasks = {n: bars.add_task(n, total=total) for n in names}

        def on_pair(name, state, secs):
            bars.update(tasks[name], completed=total)
            console.print(f"{name}: {state} ({secs / 60:.1f} min)", highlight=False)

        def on_progress(name, steps):
            bars.update(tasks[name], completed=min(steps, total))

        yield on_pair, on_progress


def register(app: typer.Typer) -> None:
    app.command("train-baselines")(train_baselines_cmd)
