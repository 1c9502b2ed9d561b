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


def bench_cmd(
    device: Device = choice_option("cpu", "--device", Device,
                                   "cpu, cuda, tensorrt (ONNX Runtime providers) or jetson (TensorRT fp16)."),
    batch: str = typer.Option("1,64", "--batch", help="Comma-separated batch sizes (1 = SingleStream, N = Offline)."),
    iters: int = typer.Option(100, "--iters", help="Timed runs per batch size."),
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
    """Median/p90/p99 latency and throughput per stage (encode .. decode, end to end).

    Python: ``escmvq.runtime.bench.report(bundle, device="cpu", batches=(1, 64), iters=100, ...)``.
    """
    sizes, snr_db = _batches(batch), parse_snr(snr)
    if iters < 1 or warmup < 0:
        fail("--iters must be >= 1 and --warmup >= 0", 2)
    with cli_errors():
        from escmvq.runtime.bench import report

        rep = report(bundle, device, sizes, iters, warmup, snr_db, channel, image, int8, threads, seed,
                     decoding_value(decoding), log=lambda m: print(m, file=sys.stderr))
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
        t = Table(title=f"batch {r['batch']} ({mode}); peak RSS {r['peak_rss_mb']:.0f} MB; "
                        f"link/nets throughput {100 * r['radio_share_of_throughput']:.0f}%", title_justify="left")
        for c in ("stage", "median ms", "p90 ms", "p99 ms", "items/s"):
            t.add_column(c, justify="left" if c == "stage" else "right")
        for k, s in r["stages"].items():
            t.add_row(k.replace("_", " "), f"{s['median_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['p99_ms']:.3f}",
                      f"{s['throughput_per_s']:.0f}")
        con.print(t)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
