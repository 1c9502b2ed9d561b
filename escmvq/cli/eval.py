"""``escmvq eval``: PSNR-vs-SNR sweeps of a bundle (JCAMP, JCAP) and the JPEG+LDPC baseline.

Heavy imports (onnxruntime, Sionna/torch, matplotlib) happen inside the command.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.common import cli_errors, fail
from escmvq.cli.txrx import Decoding, DecodingOpt, decoding_value

ALL_METHODS = ("jcamp", "jcap", "jpeg-ldpc")
# JPEG + LDPC keeps its own receiver whatever --decoding says
JPEG_LDPC_RECEIVER = {"decoding": "ldpc", "estimate": "belief propagation (Sionna 5G NR LDPC5GDecoder, hard output)",
                      "llr": "maxlog", "prior": None}
# results written before the receiver was recorded all used hard decisions
LEGACY_RECEIVER = {"decoding": "hard", "estimate": None, "llr": None, "prior": None}
LEARNED_KINDS = ("esc-mvq", "pair-set")


def _methods(text: str) -> list[str]:
    out = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in out if m not in ALL_METHODS]
    if not out or bad:
        fail(f"--methods: expected a comma list of {', '.join(ALL_METHODS)}, got {text!r}", 2)
    return list(dict.fromkeys(out))


def _finite(x):
    """JSON-safe: inf/nan -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def eval_cmd(
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Bundle folder (default: the shipped model)."),
    methods: str = typer.Option("jcamp,jcap", "--methods", help="Comma list of jcamp, jcap, jpeg-ldpc."),
    channel: str = typer.Option("rayleigh", "--channel", help="rayleigh (block fading per image) or awgn."),
    snr: str = typer.Option("-5:25:2.5", "--snr", help="SNR grid in dB, eq. (53): START:STOP:STEP or a comma list."),
    dataset: str = typer.Option("cifar10", "--dataset", help="cifar10 (test split) or kodak (tiles of the model's size)."),
    images: int = typer.Option(1000, "--images", "-n", help="Number of test images (tiles for kodak)."),
    realizations: int = typer.Option(1, "--realizations", "-k", help="Fading + noise draws per image."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write Fig. 5 (PSNR vs SNR with 95% CI) as PNG here."),
    bars: Optional[Path] = typer.Option(None, "--bars", help="Write Fig. 7 (grouped bars per SNR point) as PNG here."),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Write Fig. 6 (reconstructions at the SNR nearest --grid-snr)."),
    grid_snr: float = typer.Option(10.0, "--grid-snr", help="SNR of the --grid figure (nearest grid point)."),
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="Write Fig. 8 (mean codebook per sub-vector, JCAMP or the first method)."),
    mu_cdf: Optional[Path] = typer.Option(None, "--mu-cdf", help="Write Fig. 3 (CDF of the bundle's mu per codebook)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every fading and noise draw."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with cifar10/ and kodak/ (default: <repo>/../shared/data)."),
    batch: int = typer.Option(256, "--batch", help="Images per runtime batch (results depend on it through the seeding)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime / torch intra-op threads."),
    symbol_factor: int = typer.Option(8, "--jpeg-symbol-factor", help="JPEG+LDPC symbol budget in units of T (8 for CIFAR)."),
    jpeg_energy: str = typer.Option("total", "--jpeg-energy", help="total (same P_tot as ESC-MVQ) or per-symbol."),
    jpeg_headers: str = typer.Option("stripped", "--jpeg-headers", help="stripped (quality byte + scan) or full (JFIF file)."),
    pairs: Optional[list[str]] = typer.Option(None, "--pairs", help="A K-pair baseline as NAME=GLOB of bundle folders "
                                              "(e.g. bsc-vq='runs/bsc-vq/*.escmvq'); repeatable."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    decoding: Optional[Decoding] = DecodingOpt,
):
    """Run the end-to-end sweep (real QAM, real noise, the receiver's hard or soft decoding --
    the same for every learned method; JPEG+LDPC keeps its LDPC decoder --, the allocator's
    plan on both sides) and report mean PSNR with a 95% confidence interval per SNR point."""
    from escmvq.eval.sweep import CHANNELS, parse_snr_grid

    meths = _methods(methods)
    if channel not in CHANNELS:
        fail(f"--channel: expected rayleigh or awgn, got {channel!r}", 2)
    if dataset not in ("cifar10", "kodak"):
        fail(f"--dataset: expected cifar10 or kodak, got {dataset!r}", 2)
    try:
        snrs = parse_snr_grid(snr)
    except ValueError as e:
        fail(str(e), 2)
    if images < 1 or realizations < 1 or batch < 1 or (threads is not None and threads < 1):
        fail("--images, --realizations, --batch and --threads must be >= 1", 2)
    if symbol_factor < 1:
        fail("--jpeg-symbol-factor must be >= 1", 2)
    if jpeg_energy not in ("total", "per-symbol"):
        fail(f"--jpeg-energy: expected total or per-symbol, got {jpeg_energy!r}", 2)
    if jpeg_headers not in ("stripped", "full"):
        fail(f"--jpeg-headers: expected stripped or full, got {jpeg_headers!r}", 2)
    pair_specs = []
    for spec in pairs or []:
        name, sep, pattern = spec.partition("=")
        if not sep or not name.strip() or not pattern.strip() or name.strip() in ALL_METHODS:
            fail(f"--pairs: expected NAME=GLOB with a new NAME, got {spec!r}", 2)
        import glob

        found = sorted(glob.glob(pattern.strip()))
        if not found:
            fail(f"--pairs {name}: no bundle folder matches {pattern!r}", 2)
        pair_specs.append((name.strip(), found))
    outputs = [p for p in (json_out, plot, bars, grid, heatmap, mu_cdf) if p is not None]
    if len(set(map(str, outputs))) != len(outputs):
        fail("output paths must differ", 2)
    with cli_errors():
        import numpy as np

        from escmvq.eval.datasets import load_images
        from escmvq.runtime.bundle import load_bundle
        from escmvq.runtime.receiver import receiver_settings
        from escmvq.runtime.files import atomic_write, check_output
        from escmvq.runtime.threads import limit_blas_threads

        for p in outputs:  # fail before any work
            check_output(p, force)
        limit_blas_threads(1)
        t_start = time.perf_counter()
        b = load_bundle(bundle)
        imgs = load_images(dataset, images, b.tile_size, data_dir)
        esc = [m for m in meths if m in ("jcamp", "jcap")]
        total = len(imgs) * realizations * len(snrs) * (len(meths) + len(pair_specs))
        results = {}
        keep = 8 if grid is not None else 0
        rx_opts = {"decoding": decoding_value(decoding)}  # one receiver setting for every learned method
        rx_doc = receiver_settings(**rx_opts)

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("img-snr"), TimeElapsedColumn(), TimeRemainingColumn(),
                      disable=quiet, console=None, transient=False, redirect_stdout=False) as prog:
            task = prog.add_task("eval", total=total)
            if esc:
                from escmvq.eval.sweep import sweep_esc

                prog.update(task, description="+".join(esc))
                results.update(sweep_esc(b, imgs, snrs, esc, channel, realizations, seed, batch, keep=keep,
                                         threads=threads, progress=lambda k: prog.advance(task, k),
                                         receiver=rx_opts))
            if "jpeg-ldpc" in meths:
                from escmvq.eval.jpeg_ldpc import sweep_jpeg_ldpc

                prog.update(task, description="jpeg-ldpc")
                results["jpeg-ldpc"] = sweep_jpeg_ldpc(
                    imgs, snrs, channel, realizations, seed, batch, keep=keep,
                    progress=lambda k: prog.advance(task, k), n_bits=b.n_bits, n_symbols=b.n_symbols,
                    symbol_factor=symbol_factor, energy=jpeg_energy, headers=jpeg_headers, threads=threads)
                results["jpeg-ldpc"].info["receiver"] = dict(JPEG_LDPC_RECEIVER)
            if pair_specs:
                from escmvq.eval.sweep import PairSet, sweep_pairs

                for name, paths in pair_specs:
                    prog.update(task, description=name)
                    ps = PairSet(paths, threads=threads, receiver=rx_opts)
                    if ps.bundles[0].tile_size != b.tile_size:
                        raise ValueError(f"--pairs {name}: tile size {ps.bundles[0].tile_size} differs from the bundle's")
                    results[name] = sweep_pairs(ps, imgs, snrs, channel, realizations, seed, batch, keep=keep,
                                                progress=lambda k: prog.advance(task, k), name=name)
                    meths.append(name)
        elapsed = time.perf_counter() - t_start
        from escmvq.runtime.bundle import parameter_bytes

        model_bytes = parameter_bytes(b.manifest)
        summaries = {}
        for m in meths:
            s = results[m].summary()
            s["transmissions_per_s"] = len(imgs) * realizations * len(snrs) / max(results[m].seconds, 1e-9)
            if m in ("jcamp", "jcap"):
                s["parameter_bytes"] = model_bytes
            summaries[m] = s
        doc = _finite({
            "format": "escmvq-eval", "version": 1,
            "command": "escmvq eval " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "escmvq eval",
            "bundle": {"path": str(b.path), "hash": b.hash_hex, "tile_size": list(b.tile_size),
                       "V": int(b.model["V"]), "N": int(b.model["N"]), "B": int(b.model["B"]), "T": b.n_symbols,
                       "allocator": b.model.get("allocator"), "source_checkpoint": b.manifest.get("source_checkpoint")},
            "dataset": dataset, "n_images": int(len(imgs)), "realizations": realizations, "channel": channel,
            "seed": seed, "batch": batch, "snr_db": snrs, "elapsed_s": elapsed,
            "receiver": rx_doc,
            "throughput_unit": "transmissions_per_s = images x realisations x SNR points per second of that method",
            "statistic": "mean over images of the per-image PSNR (8-bit, eq. 52) averaged over realisations; "
                         "ci95 = Student-t half-width over images",
            "methods": summaries,
        })
        _print_table(doc)
        _write_result(doc, json_out, plot, bars, force)
        from escmvq.eval import figures

        def fig(path, make):
            atomic_write(path, make, force)

        if grid is not None:
            si = int(np.argmin(np.abs(np.asarray(snrs) - grid_snr)))
            recs = {m: results[m].samples[si] for m in meths}
            fig(grid, lambda p: figures.fig6_grid(imgs[:keep], recs, p,
                                                  f"{dataset}, {channel}, SNR {snrs[si]:g} dB (seed {seed})"))
        if heatmap is not None:
            hm = "jcamp" if "jcamp" in esc else (esc[0] if esc else None)
            if hm is None:
                raise ValueError("--heatmap needs jcamp or jcap in --methods")
            fig(heatmap, lambda p: figures.fig8_codebook_heatmap(summaries[hm]["mean_codebook"], snrs, p,
                                                                 f"Mean assigned codebook ({hm.upper()}, {channel})"))
        if mu_cdf is not None:
            fig(mu_cdf, lambda p: figures.fig3_mu_cdf(b.mu, p))
        for p in outputs:
            print(f"wrote {p}", file=sys.stderr)


def _print_table(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"PSNR (dB, mean +- 95% CI) - {doc['dataset']}, {doc['channel']}, {doc['n_images']} images "
                    f"x {doc['realizations']}")
    t.add_column("SNR (dB)", justify="right")
    for m in doc["methods"]:
        t.add_column(m, justify="right")
    for i, s in enumerate(doc["snr_db"]):
        row = [f"{s:g}"]
        for r in doc["methods"].values():
            ci = r["psnr_ci95"][i]
            row.append(f"{r['psnr_mean'][i]:.2f} +- {ci:.2f}" if ci is not None else f"{r['psnr_mean'][i]:.2f}")
        t.add_row(*row)
    Console().print(t)
    for m, r in doc["methods"].items():
        mem = f", {r['parameter_bytes'] / 1e6:.2f} MB of parameters" if r.get("parameter_bytes") else ""
        pairs = f"{r['pairs']} encoder-decoder pair(s){mem}; " if r.get("pairs") else ""
        print(f"{m}: {pairs}{r['transmissions_per_s']:.1f} transmissions/s (images x realisations x SNR points; "
              f"{r['seconds']:.1f} s)")


def _write_result(doc: dict, json_out: Optional[Path], plot: Optional[Path], bars: Optional[Path], force: bool,
                  title: Optional[str] = None) -> None:
    """Write an eval result (``escmvq eval`` or ``eval-merge``) as JSON, Fig. 5 and Fig. 7,
    each atomically; None skips that output."""
    from escmvq.eval import figures
    from escmvq.runtime.files import atomic_write

    if json_out is not None:
        atomic_write(json_out, lambda p: p.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n"), force)
    if plot is not None:
        atomic_write(plot, lambda p: figures.fig5_psnr_snr(doc, p, title), force)
    if bars is not None:
        atomic_write(bars, lambda p: figures.fig7_bars(doc, p, title), force)


def _source(spec: str) -> tuple[Optional[str], Path]:
    """``PATH`` or ``LABEL=PATH`` (LABEL: letters, digits, ``_ . -``)."""
    import re

    m = re.fullmatch(r"([A-Za-z0-9_.-]+)=(.+)", spec)
    return (m.group(1), Path(m.group(2))) if m and not Path(spec).exists() else (None, Path(spec))


def _common_receiver(sources) -> Optional[dict]:
    """The receiver setting shared by every file with a learned method (files before the
    setting was recorded: hard decisions); a difference is a one-line ValueError."""
    from escmvq.eval.merge import load_sweep

    first = None
    for _, path in sources:
        doc, _ = load_sweep(path)
        if not any(r.get("kind") in LEARNED_KINDS or ("kind" not in r and r.get("pairs"))
                   for r in doc["methods"].values()):
            continue
        rx = doc.get("receiver", LEGACY_RECEIVER)
        if first is None:
            first = (path, rx)
        elif rx != first[1]:
            raise ValueError(f"{path}: receiver {json.dumps(rx)} differs from {first[0]}'s {json.dumps(first[1])}; "
                             "only sweeps with the same receiver setting can be merged")
    return None if first is None else first[1]


def eval_merge_cmd(
    runs: list[str] = typer.Argument(..., help="`escmvq eval` JSON files, each PATH or LABEL=PATH (LABEL "
                                               "prefixes that file's methods as LABEL:method)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma list of merged method names to keep, "
                                                                  "in this order (default: all, in file order)."),
    rename: Optional[list[str]] = typer.Option(None, "--rename", help="OLD=NEW: rename a merged method "
                                               "(after --methods); repeatable."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the merged result as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write Fig. 5 (PSNR vs SNR with 95% CI) as PNG here."),
    bars: Optional[Path] = typer.Option(None, "--bars", help="Write Fig. 7 (grouped bars per SNR point) as PNG here."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the table as markdown here."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the figures."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing output files."),
):
    """Merge sweeps of the same points (dataset, channel, SNR grid, images, realisations, seed,
    batch) into one table, JSON and figure; refuses sweeps that differ in any of them or in
    the receiver setting (--decoding) of their learned methods."""
    outputs = [p for p in (json_out, plot, bars, markdown) if p is not None]
    if len(set(map(str, outputs))) != len(outputs):
        fail("output paths must differ", 2)
    keep = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    if keep is not None and (not keep or len(set(keep)) != len(keep)):
        fail(f"--methods: expected a comma list of distinct method names, got {methods!r}", 2)
    renames = {}
    for spec in rename or []:
        old, sep, new = spec.partition("=")
        if not sep or not old.strip() or not new.strip() or old.strip() in renames:
            fail(f"--rename: expected OLD=NEW once per method, got {spec!r}", 2)
        renames[old.strip()] = new.strip()
    with cli_errors():
        from escmvq.eval.merge import markdown_table, merge_sweeps
        from escmvq.runtime.files import atomic_write, check_output

        for p in outputs:
            check_output(p, force)
        sources = [_source(s) for s in runs]
        receiver = _common_receiver(sources)
        doc = merge_sweeps(sources, keep, renames)
        if receiver is not None:
            doc["receiver"] = receiver
        _print_table(doc)
        _write_result(doc, json_out, plot, bars, force, title)
        if markdown is not None:
            atomic_write(markdown, lambda p: p.write_text(markdown_table(doc)), force)
        for p in outputs:
            print(f"wrote {p}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("eval-merge")(eval_merge_cmd)
