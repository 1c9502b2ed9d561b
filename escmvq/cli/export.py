"""``escmvq export``: a checkpoint to a self-checked runtime bundle (imports torch lazily)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.choices import Allocator, Variant, choice_option
from escmvq.cli.common import cli_errors, fail, out_console


def _data_file(*names: str) -> Optional[Path]:
    """The first of ``names`` (paths inside the data folder of :func:`escmvq.io.paths.data_root`:
    ``$ESCMVQ_DATA``, else the checkout's ``../shared/data``) that exists; None if none does."""
    from escmvq.io.paths import DataRootError, data_root

    try:
        root = data_root()
    except DataRootError:
        return None
    return next((root / n for n in names if (root / n).exists()), None)


def default_calibration() -> Optional[Path]:
    """``$ESCMVQ_CALIB``, else the CIFAR-10 test split or Kodak in the data folder."""
    if os.environ.get("ESCMVQ_CALIB"):
        return Path(os.environ["ESCMVQ_CALIB"])
    return _data_file("cifar10/test.npz", "kodak")


def default_stats() -> Optional[Path]:
    """``$ESCMVQ_STATS``, else the CIFAR-10 training split in the data folder."""
    if os.environ.get("ESCMVQ_STATS"):
        return Path(os.environ["ESCMVQ_STATS"])
    return _data_file("cifar10/train.npz")


def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `escmvq train`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Bundle folder (default: CHECKPOINT stem + .escmvq)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Real images for the self-check and int8 calibration: "
                                         "CIFAR-style .npz, an image folder or file (default: cifar10/test.npz of $ESCMVQ_DATA or ../shared/data)."),
    n_calib: int = typer.Option(256, "--n-calib", help="Calibration tiles (int8)."),
    n_check: int = typer.Option(64, "--n-check", help="Self-check tiles."),
    rate: int = typer.Option(4, "--rate", min=1, max=8,
                             help="Transmission rate R = L/T, bits per channel use (1..8: at most 256-QAM)."),
    method: Allocator = choice_option("jcamp", "--method", Allocator, "Allocator: jcamp (adaptive modulation) or jcap."),
    variant: Variant = choice_option("exact", "--variant", Variant, "Allocator variant: exact (keeps the budget) or paper."),
    int8: bool = typer.Option(False, "--int8", help="Also write static QDQ int8 encoder/decoder; report the PSNR cost."),
    trt: bool = typer.Option(False, "--trt", help="Also build fp16 TensorRT engines (needs TensorRT)."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing bundle."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Training images for the label prior and the erasure "
                                         "tables (same formats as --calib; default: cifar10/train.npz of $ESCMVQ_DATA or ../shared/data)."),
    n_stats: int = typer.Option(10000, "--n-stats", min=1, help="Tiles drawn from --stats."),
    erasures: bool = typer.Option(True, "--erasures/--no-erasures", help="Exact allocator with 'not sent' states "
                                  "below its cheapest state (needs --stats)."),
    positions: bool = typer.Option(False, "--positions/--no-positions", help="Exact allocator meets every bit's target "
                                   "on its own Gray position and puts costly label bits on the reliable positions."),
    decoding: Optional[str] = typer.Option(
        None, "--decoding", help="Recommend this receiver decoding (hard or soft; soft needs the --stats label prior) "
        "in the manifest: what `--decoding auto`, the receivers' default, then uses. Default: none (hard)."),
    distortion_for: str = typer.Option(
        "hard", "--distortion-for", help="Receiver the allocator's distortion table (31) and erasure floor assume: hard "
        "(the paper's, from the checkpoint) or soft (posterior-mean reconstruction under the --stats label prior)."),
    robust_targets: str = typer.Option(
        "", "--robust-targets", help="Comma-separated BER targets (e.g. 0.25,0.35): allocator rows that send the last "
        "codebook at these targets, scored for the soft receiver (needs --stats). Default: none."),
):
    """Export CHECKPOINT: ONNX encoder/decoder, codebooks, mu, distortion table, allocator
    state and a hashed manifest; checks ONNX Runtime against PyTorch and fails on mismatch.

    Python: ``escmvq.export.pipeline.export_checkpoint(CHECKPOINT, out, calib, method=..., variant=...)``.
    """
    with cli_errors():
        from escmvq.export.pipeline import ExportError, export_checkpoint

        out = output if output is not None else Path(checkpoint.stem + ".escmvq")
        calib = calib if calib is not None else default_calibration()
        if calib is None:
            fail("no calibration images: pass --calib (a CIFAR-style .npz, or a folder of images)")
        stats = stats if stats is not None else default_stats()
        if stats is not None and not stats.exists():
            fail(f"--stats: {stats} not found", 2)
        try:
            targets = tuple(float(t) for t in robust_targets.split(",") if t.strip())
        except ValueError:
            fail(f"--robust-targets: expected comma-separated numbers, got {robust_targets!r}", 2)
        try:
            res = export_checkpoint(checkpoint, out, calib, n_calib=n_calib, n_check=n_check, rate=rate,
                                    method=method, variant=variant, int8=int8, trt=trt, force=force, seed=seed,
                                    stats_source=stats, n_stats=n_stats, erasures=erasures, positions=positions,
                                    decoding=decoding, distortion_for=distortion_for, robust_targets=targets)
        except ExportError as e:
            if getattr(e, "rows", None):
                _print_rows(e.rows, stderr=True)
            raise
        _print_rows(res.rows)
        con = out_console()
        if res.int8:
            con.print(f"int8: PSNR cost {res.int8['psnr_cost_db']:.2f} dB "
                      f"({res.int8['psnr_fp32_db']:.2f} -> {res.int8['psnr_int8_db']:.2f} dB)")
        files = res.manifest["files"]
        con.print(f"wrote {res.path} ({len(files)} files, {sum(f['bytes'] for f in files.values()) / 1e6:.2f} MB), "
                  f"bundle sha256 {res.hash[:16]}")


def _print_rows(rows, stderr: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="self-check: ONNX Runtime vs PyTorch", title_justify="left")
    for c in ("check", "max |diff|", "tolerance", "PSNR torch", "PSNR ORT", "labels equal", ""):
        t.add_column(c, justify="left" if c in ("check", "tolerance") else "right", no_wrap=True)
    f = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        t.add_row(f"{r.name} [{r.shape}]", f(r.max_abs_diff, ".1e"), r.tolerance, f(r.psnr_torch, ".3f"),
                  f(r.psnr_ort, ".3f"), f(r.agreement, ".2%"), "[green]ok[/]" if r.ok else "[red]FAIL[/]")
    Console(stderr=stderr, width=max(Console().width, 150)).print(t)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
