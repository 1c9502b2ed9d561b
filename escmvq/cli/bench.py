"""``escmvq bench``: per-stage latency and throughput of the torch-free runtime."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.choices import Channel, ChannelOpt, Device, choice_option
from escmvq.cli.common import cli_errors, fail, out_console, parse_snr
from escmvq.cli.txrx import Decoding, DecodingOpt, decoding_value



def _batches(text: str) -> list[int]:
    try:
        out = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        fail(f"--batch: expected comma-separated integers, got {text!r}", 2)
    if not out or any(b < 1 or b > 4096 for b in out):
        fail(f"--batch: sizes must be 1..4096, got {text!r}", 2)
    return out


def _format_list(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not out or any(f not in ("fp32", "int8") for f in out):
        fail(f"--formats: expected a comma-separated list of fp32, int8, got {text!r}", 2)
    return out


def bench_cmd(
    device: Device = choice_option("cpu", "--device", Device,
                                   "cpu, cuda, tensorrt (ONNX Runtime providers) or jetson (TensorRT fp16)."),
    batch: str = typer.Option("1,64", "--batch", help="Comma-separated batch sizes (1 = SingleStream, N = Offline)."),
    iters: int = typer.Option(100, "--iters", help="Minimum timed runs (queries) per batch size."),
    min_duration: float = typer.Option(1.0, "--min-duration", metavar="SECONDS",
                                       help="The timed loop runs at least this long, repeating queries past --iters "
                                            "(MLPerf's habit; its SingleStream rule is 600 s and 1024 queries)."),
    max_duration: float = typer.Option(600.0, "--max-duration", metavar="SECONDS",
                                       help="Stop a timed loop after this long even short of --iters or "
                                            "--min-duration (the result is then marked not valid)."),
    formats: Optional[str] = typer.Option(None, "--formats", metavar="LIST",
                                          help="Compare graph formats, e.g. fp32,int8: one table row each with "
                                               "latency and PSNR on the same tiles (default: fp32, or int8 with "
                                               "--int8)."),
    power: Optional[bool] = typer.Option(None, "--power/--no-power",
                                         help="Sample board power with jetson-stats (jtop) during the timed loops "
                                              "(default: on a Jetson when jtop is installed)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed warm-up runs."),
    snr: str = typer.Option("10", "--snr", help="SNR in dB."),
    channel: Channel = ChannelOpt,
    image: Optional[Path] = typer.Option(None, "--image", help="Image to cut into tiles (default: random tiles)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b"),
    int8: bool = typer.Option(False, "--int8", help="Benchmark the bundle's int8 graphs."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout (progress on stderr)."),
    decoding: Optional[Decoding] = DecodingOpt,
):
    """SingleStream p90 (the headline), median/p90/p99 latency and throughput per stage, per format with its PSNR.

    Python: ``escmvq.runtime.bench.report(bundle, device="cpu", batches=(1, 64), iters=100, ...)``.
    """
    sizes, snr_db, fmts = _batches(batch), parse_snr(snr), _format_list(formats)
    if iters < 1 or warmup < 0:
        fail("--iters must be >= 1 and --warmup >= 0", 2)
    if not 0 <= min_duration <= max_duration:
        fail(f"--min-duration ({min_duration:g}) and --max-duration ({max_duration:g}): need 0 <= min <= max", 2)
    if int8 and fmts is not None:
        fail("--int8 and --formats: give one of them (--formats int8 is --int8)", 2)
    with cli_errors():
        from escmvq.runtime.bench import report

        rep = report(bundle, device, sizes, iters, warmup, snr_db, channel, image, int8, threads, seed,
                     decoding_value(decoding), log=lambda m: print(m, file=sys.stderr), formats=fmts,
                     min_duration=min_duration, max_duration=max_duration, power=power)
        if as_json:
            print(json.dumps(rep, indent=1))
        else:
            _print(rep)


def _print(rep: dict) -> None:
    from rich.table import Table

    con = out_console()
    env, b = rep["environment"], rep["bundle"]
    con.print(f"[bold]escmvq bench[/] on {env['host']} ({env['machine']}, {env['cpu_count']} CPUs), device "
              f"{env['device']}: encoder on {env['providers_used']['encoder']}, decoder on "
              f"{env['providers_used']['decoder']}; onnxruntime {env['onnxruntime']}")
    con.print(f"bundle {b['sha256'][:12]} ({b['precision']}): model {b['model_bytes'] / 1e6:.2f} MB, "
              f"bundle {b['bytes'] / 1e6:.2f} MB; receiver: "
              + ", ".join(f"{k} {v}" for k, v in rep["settings"]["receiver"].items() if v is not None))
    for r in rep["results"]:
        mode = "SingleStream" if r["batch"] == 1 else "Offline"
        tm = r["timed"]
        t = Table(title=f"{r['format']}, batch {r['batch']} ({mode}); {tm['queries']} queries in "
                        f"{tm['duration_s']:.2f} s{'' if r['valid'] else ' [bold red]NOT VALID[/]: '}"
                        f"{'; '.join(r['invalid_reasons'])}; peak RSS {r['peak_rss_mb']:.0f} MB; "
                        f"link/nets throughput {100 * r['radio_share_of_throughput']:.0f}%", title_justify="left")
        for c in ("stage", "median ms", "p90 ms", "p99 ms", "items/s"):
            t.add_column(c, justify="left" if c == "stage" else "right")
        for k, s in r["stages"].items():
            t.add_row(k.replace("_", " "), f"{s['median_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['p99_ms']:.3f}",
                      f"{s['throughput_per_s']:.0f}")
        con.print(t)
    _print_formats(con, rep)


def _print_formats(con, rep: dict) -> None:
    """The formats table (one row per format, as ``yolo benchmark`` prints) and the headline."""
    from rich.table import Table

    rows = rep["formats"]
    t = Table(title="formats (" + rep["settings"]["psnr"] + ")", title_justify="left")
    power = any("mean_w" in r for r in rows)
    cols = ["format", "batch", "p90 ms", "median ms", "items/s (batch)", "PSNR dB", "PSNR clean dB", "valid"]
    for c in cols + (["mean W", "mJ/tile"] if power else []):
        t.add_column(c, justify="left" if c == "format" else "right")
    for r in rows:
        cells = [r["format"], str(r["latency_batch"]), f"{r['p90_ms']:.3f}", f"{r['median_ms']:.3f}",
                 f"{r['throughput_per_s']:.0f} ({r['throughput_batch']})", f"{r['psnr_db']:.2f}",
                 f"{r['psnr_clean_db']:.2f}", "yes" if r["valid"] else "[bold red]no[/]"]
        if power:
            cells += [_num(r.get("mean_w"), ".2f"), _num(r.get("mj_per_tile"), ".3f")]
        t.add_row(*cells)
    con.print(t)
    h = rep["headline"]
    if h is not None:
        con.print(f"[bold]SingleStream p90 {h['p90_ms']:.3f} ms[/] ({h['format']}, end to end at batch 1; median "
                  f"{h['median_ms']:.3f} ms){'' if h['valid'] else ' [bold red]NOT VALID[/]'}")
    if rep["power"]["source"] is None and rep["environment"]["device"] == "jetson":
        con.print(f"power: {rep['power']['note']}")


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
