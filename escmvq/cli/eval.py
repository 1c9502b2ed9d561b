"""``escmvq eval``: PSNR-vs-SNR sweeps of a bundle (JCAMP, JCAP), K-pair baselines and the
JPEG+LDPC baseline; ``escmvq eval-merge``: one table and figure from several sweeps.

The work is :func:`escmvq.eval.run.run_eval` and :func:`escmvq.eval.merge.merge_results`;
these commands parse, call and print. Heavy imports (onnxruntime, Sionna/torch,
matplotlib) happen inside the commands.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.choices import Channel, ChannelOpt, CsiMode, CsiOpt, EvalDataset, JpegEnergy, JpegHeaders, choice_option
from escmvq.cli.common import cli_errors, fail
from escmvq.cli.choices import PilotsOpt
from escmvq.cli.txrx import Decoding, DecodingOpt, decoding_value
from escmvq.core.vocab import EVAL_METHODS


def _methods(text: str) -> list[str]:
    out = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in out if m not in EVAL_METHODS]
    if not out or bad:
        fail(f"--methods: expected a comma list of {', '.join(EVAL_METHODS)}, got {text!r}", 2)
    return list(dict.fromkeys(out))


def eval_cmd(
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Bundle folder (default: the shipped model)."),
    methods: str = typer.Option("jcamp,jcap", "--methods", help=f"Comma list of {', '.join(EVAL_METHODS)}."),
    channel: Channel = ChannelOpt,
    snr: str = typer.Option("-5:25:2.5", "--snr", help="SNR grid in dB, eq. (53): START:STOP:STEP or a comma list."),
    dataset: EvalDataset = choice_option("cifar10", "--dataset", EvalDataset,
                                         "cifar10 (test split) or kodak (tiles of the model's size)."),
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
    jpeg_energy: JpegEnergy = choice_option("total", "--jpeg-energy", JpegEnergy,
                                            "total (same P_tot as ESC-MVQ) or per-symbol."),
    jpeg_headers: JpegHeaders = choice_option("stripped", "--jpeg-headers", JpegHeaders,
                                              "stripped (quality byte + scan) or full (JFIF file)."),
    pairs: Optional[list[str]] = typer.Option(None, "--pairs", help="A K-pair baseline as NAME=GLOB of bundle folders "
                                              "(e.g. bsc-vq='runs/bsc-vq/*.escmvq'); repeatable."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    decoding: Optional[Decoding] = DecodingOpt,
    csi: CsiMode = CsiOpt, pilots: int = PilotsOpt,
):
    """Run the end-to-end sweep (real QAM, real noise, the receiver's hard or soft decoding --
    the same for every learned method; JPEG+LDPC keeps its LDPC decoder --, the allocator's
    plan on both sides) and report mean PSNR with a 95% confidence interval per SNR point.

    Python: ``escmvq.eval.run.run_eval(EvalConfig(methods=("jcamp", "jcap"), snr_db=[...], ...))``.
    """
    from escmvq.eval.driver import parse_snr_grid
    from escmvq.eval.run import EvalConfig, parse_pair_spec

    meths = _methods(methods)
    try:
        cfg = EvalConfig(
            bundle=bundle, methods=tuple(meths), channel=channel, snr_db=parse_snr_grid(snr), dataset=dataset,
            images=images, realizations=realizations, seed=seed, data_dir=data_dir, batch=batch, threads=threads,
            jpeg_symbol_factor=symbol_factor, jpeg_energy=jpeg_energy, jpeg_headers=jpeg_headers,
            pairs=dict(parse_pair_spec(s) for s in pairs or []), json_out=json_out, plot=plot, bars=bars,
            grid=grid, grid_snr=grid_snr, heatmap=heatmap, mu_cdf=mu_cdf, force=force, csi=csi, pilots=pilots,
            command="escmvq eval " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "escmvq eval")
        cfg.validate()
    except ValueError as e:
        fail(str(e), 2)
    with cli_errors(), _ProgressBar(quiet) as bar:
        from escmvq.eval.run import run_eval

        cfg.decoding = decoding_value(decoding)
        res = run_eval(cfg, progress=bar)
    _print_table(res.doc)
    for p in res.written:
        print(f"wrote {p}", file=sys.stderr)


class _ProgressBar:
    """The sweep's rich progress bar (stdout; off with --quiet), started at the first report,
    once the total is known, and stopped when the sweep ends."""

    def __init__(self, quiet: bool):
        self.quiet, self.prog, self.task, self.description = quiet, None, None, None

    def __enter__(self):
        return self

    def __call__(self, description: str, k: int, total: int) -> None:
        if self.prog is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("img-snr"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 disable=self.quiet, console=None, transient=False, redirect_stdout=False)
            self.prog.start()
            self.task = self.prog.add_task("eval", total=total)
        if description != self.description:
            self.prog.update(self.task, description=description)
            self.description = description
        if k:
            self.prog.advance(self.task, k)

    def __exit__(self, *exc) -> None:
        if self.prog is not None:
            self.prog.stop()


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
    the receiver setting (--decoding) of their learned methods.

    Python: ``escmvq.eval.merge.merge_results([(label, path), ...], keep, rename)`` then
    ``escmvq.eval.run.write_result(doc, json_out, plot, bars)``.
    """
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
        from escmvq.eval.merge import markdown_table, merge_results, parse_source
        from escmvq.eval.run import write_result
        from escmvq.runtime.files import atomic_write, check_output

        for p in outputs:
            check_output(p, force)
        doc = merge_results([parse_source(s) for s in runs], keep, renames)
        _print_table(doc)
        write_result(doc, json_out, plot, bars, force, title)
        if markdown is not None:
            atomic_write(markdown, lambda p: p.write_text(markdown_table(doc)), force)
        for p in outputs:
            print(f"wrote {p}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("eval-merge")(eval_merge_cmd)
