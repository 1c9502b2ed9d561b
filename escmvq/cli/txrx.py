"""``escmvq tx``, ``rx``, ``link`` and ``stream``: the torch-free transmitter and receiver."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.common import cli_errors, fail, fresh_path, out_console, parse_snr

BundleOpt = typer.Option(None, "--bundle", "-b", help="Bundle folder (default: the shipped model).")
SeedOpt = typer.Option(0, "--seed", help="Seed of the channel draws (np.random.Generator).")
ChannelOpt = typer.Option("rayleigh", "--channel", help="rayleigh (block fading, perfect CSI) or awgn.")
PerImageOpt = typer.Option(False, "--per-image", help="One fading realisation per image instead of per tile.")
DeviceOpt = typer.Option("cpu", "--device", help="ONNX Runtime device: cpu, cuda, tensorrt.")
Int8Opt = typer.Option(False, "--int8", help="Use the bundle's int8 encoder/decoder (export --int8).")
ForceOpt = typer.Option(False, "--force", "-f", help="Overwrite an existing output file.")


def _channel(name: str) -> str:
    if name not in ("rayleigh", "awgn"):
        fail(f"--channel: expected rayleigh or awgn, got {name!r}", 2)
    return name


def tx_cmd(
    image: Path = typer.Argument(..., help="Image file (any size/mode Pillow reads)."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB, eq. (53)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Frame file (default: IMAGE stem + .tx)."),
    bundle: Optional[Path] = BundleOpt, channel: str = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, int8: bool = Int8Opt, force: bool = ForceOpt,
    received: bool = typer.Option(False, "--through-channel",
                                  help="Apply the channel here and store the received samples (rx only decodes)."),
):
    """Encode, allocate and modulate IMAGE; write the transmitted frame (.tx)."""
    snr_db, channel = parse_snr(snr), _channel(channel)
    with cli_errors():
        import numpy as np

        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)

        from escmvq.runtime.files import atomic_write_bytes, check_output
        from escmvq.runtime.images import load_image
        from escmvq.runtime.link import transmit_image
        from escmvq.runtime.transmitter import Transmitter

        out = output if output is not None else fresh_path(Path(image.stem), ".tx")
        check_output(out, force)
        img = load_image(image)
        tx = Transmitter(bundle, device=device, precision="int8" if int8 else "fp32")
        rng = np.random.default_rng(seed)
        frame, _, _, _ = transmit_image(tx, img, snr_db, rng, channel, per_image)
        if received:
            from escmvq.runtime.link import through_channel

            frame, _ = through_channel(frame, rng)
        atomic_write_bytes(out, frame.to_bytes(), force)
        print(f"wrote {out}: {'received' if received else 'transmitted'} samples, {frame.n_tiles} tiles x "
              f"{frame.n_symbols} channel uses, {channel}, SNR {snr_db:g} dB, "
              f"bundle {tx.bundle.hash_hex[:12]}")


def rx_cmd(
    frame_path: Path = typer.Argument(..., metavar="FRAME", help="A .tx frame written by `escmvq tx`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Decoded PNG (default: FRAME stem + .rx.png)."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="Original image: print the PSNR."),
    bundle: Optional[Path] = BundleOpt, seed: int = SeedOpt, device: str = DeviceOpt, int8: bool = Int8Opt,
    force: bool = ForceOpt,
):
    """Apply the channel (for a transmitted frame) and decode a .tx frame to a PNG."""
    with cli_errors():
        import numpy as np

        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)

        from escmvq.runtime.files import atomic_write, check_output
        from escmvq.runtime.frame import FrameError, parse
        from escmvq.runtime.images import load_image, psnr, save_png
        from escmvq.runtime.link import receive_frame
        from escmvq.runtime.receiver import Receiver

        out = output if output is not None else fresh_path(Path(frame_path.stem), ".rx.png")
        check_output(out, force)
        if not frame_path.is_file():
            raise FrameError(f"{frame_path}: no such file")
        if frame_path.stat().st_size > 1 << 32:
            raise FrameError(f"{frame_path}: {frame_path.stat().st_size} bytes is too large for a .tx frame")
        try:
            frame = parse(frame_path.read_bytes())
        except FrameError as e:
            raise FrameError(f"{frame_path}: {e}") from None
        rx = Receiver(bundle, device=device, precision="int8" if int8 else "fp32")
        img, _, _ = receive_frame(rx, frame, np.random.default_rng(seed))
        ref = load_image(reference) if reference is not None else None
        if ref is not None and ref.shape != img.shape:
            fail(f"--reference: {reference} is {ref.shape[1]}x{ref.shape[0]}, the frame holds {img.shape[1]}x{img.shape[0]}")
        atomic_write(out, lambda p: save_png(img, p), force)
        msg = f"wrote {out}: {img.shape[1]}x{img.shape[0]} from {frame.n_tiles} tiles"
        if ref is not None:
            msg += f", PSNR {psnr(ref, img):.2f} dB"
        print(msg)


def link_cmd(
    image: Path = typer.Argument(..., help="Image file (any size/mode Pillow reads)."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB, eq. (53)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Side-by-side PNG (default: IMAGE stem + .link.png, never overwritten)."),
    bundle: Optional[Path] = BundleOpt, channel: str = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, int8: bool = Int8Opt, force: bool = ForceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
):
    """Transmitter, channel and receiver in one go: PSNR, channel uses, codebook use,
    per-stage latency, and a side-by-side PNG (input | output)."""
    snr_db, channel = parse_snr(snr), _channel(channel)
    with cli_errors():
        import numpy as np

        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)

        from escmvq.runtime.files import atomic_write, check_output
        from escmvq.runtime.images import load_image, save_png, side_by_side
        from escmvq.runtime.link import STAGES, run_link
        from escmvq.runtime.receiver import Receiver
        from escmvq.runtime.transmitter import Transmitter

        out = output if output is not None else fresh_path(Path(image.stem + ".link"), ".png")
        check_output(out, force)
        img = load_image(image)
        prec = "int8" if int8 else "fp32"
        tx = Transmitter(bundle, device=device, precision=prec)
        rx = Receiver(tx.bundle, device=device, precision=prec)
        rep = run_link(tx, rx, img, snr_db, np.random.default_rng(seed), channel, per_image)
        atomic_write(out, lambda p: save_png(side_by_side(img, rep.image), p), force)
        b = tx.bundle
        summary = {
            "image": str(image), "size": [int(img.shape[1]), int(img.shape[0])], "snr_db": snr_db,
            "channel": channel, "fading": "per image" if per_image else "per tile", "seed": seed,
            "psnr_db": round(rep.psnr_db, 3), "tiles": rep.n_tiles, "channel_uses": rep.channel_uses,
            "channel_uses_per_tile": b.n_symbols, "bits_per_tile": b.n_bits, "p_tot": rep.p_tot,
            "label_error_rate": rep.label_error_rate,
            "codebook_use": [round(float(u), 4) for u in rep.codebook_use],
            "latency_ms": {k: round(1e3 * rep.timings[k], 3) for k in (*STAGES, "end_to_end") if k in rep.timings},
            "bundle": b.hash_hex, "output": str(out),
        }
        if as_json:
            print(json.dumps(summary, indent=1))
            return
        _print_link(summary)


def _print_link(s: dict) -> None:
    from rich.table import Table

    con = out_console()
    con.print(f"[bold]escmvq link[/] {s['image']} ({s['size'][0]}x{s['size'][1]}, {s['tiles']} tiles), "
              f"SNR {s['snr_db']:g} dB, {s['channel']} ({s['fading']}), seed {s['seed']}")
    t = Table(show_header=False, box=None)
    t.add_row("PSNR", f"[bold]{s['psnr_db']:.2f} dB[/]")
    t.add_row("channel uses", f"{s['channel_uses']:,} ({s['channel_uses_per_tile']} per tile, "
                              f"{s['bits_per_tile']} bits per tile)")
    t.add_row("label errors", f"{100 * s['label_error_rate']:.2f}% of sub-vectors")
    t.add_row("codebook use", "  ".join(f"{v + 1}: {100 * u:.1f}%" for v, u in enumerate(s["codebook_use"])))
    con.print(t)
    lt = Table(title="latency per stage (whole image)")
    lt.add_column("stage")
    lt.add_column("ms", justify="right")
    lt.add_column("us / tile", justify="right")
    for k, v in s["latency_ms"].items():
        lt.add_row(k.replace("_", " "), f"{v:.2f}", f"{1e3 * v / s['tiles']:.1f}")
    con.print(lt)
    con.print(f"side by side (input | output): {s['output']}")


SocketOpt = typer.Option(None, "--socket", help="Unix socket path (default: a fresh one in the temp folder).")


def stream_rx_cmd(
    socket_path: Path = typer.Option(..., "--socket", help="Unix socket to listen on."),
    outdir: Path = typer.Option(Path("."), "--outdir", "-o", help="Folder for the decoded PNGs."),
    bundle: Optional[Path] = BundleOpt, seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt,
):
    """Receiver process: listen on a socket, apply the channel, decode each frame, write PNGs; one JSON line per image."""
    with cli_errors():
        from escmvq.runtime.stream import serve_receiver
        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)
        if not outdir.is_dir():
            fail(f"--outdir: {outdir} is not a folder")
        serve_receiver(str(socket_path), bundle, outdir, seed, force, device)


def stream_tx_cmd(
    images: list[Path] = typer.Argument(..., help="Images to stream."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB."),
    socket_path: Path = typer.Option(..., "--socket", help="Unix socket of a running `escmvq stream-rx`."),
    bundle: Optional[Path] = BundleOpt, channel: str = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt,
):
    """Transmitter process: stream IMAGES to a running receiver; one JSON line per image."""
    snr_db, channel = parse_snr(snr), _channel(channel)
    with cli_errors():
        from escmvq.runtime.stream import run_transmitter
        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)
        recs = run_transmitter(str(socket_path), images, snr_db, bundle, seed, channel, per_image, device)
        if not all(r.get("ok") for r in recs):
            fail(f"{sum(not r.get('ok') for r in recs)} of {len(recs)} images failed")


def stream_cmd(
    images: list[Path] = typer.Argument(..., help="Images to stream."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB."),
    outdir: Path = typer.Option(Path("."), "--outdir", "-o", help="Folder for the decoded PNGs."),
    bundle: Optional[Path] = BundleOpt, channel: str = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt,
):
    """Start a receiver process and stream IMAGES to it from this (transmitter) process."""
    snr_db, channel = parse_snr(snr), _channel(channel)
    with cli_errors():
        import subprocess
        import sys
        import tempfile

        from escmvq.runtime.stream import run_transmitter
        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)
        if not outdir.is_dir():
            fail(f"--outdir: {outdir} is not a folder")
        sock = Path(tempfile.mkdtemp(prefix="escmvq-")) / "rx.sock"
        cmd = [sys.executable, "-m", "escmvq.cli.main", "stream-rx", "--socket", str(sock), "--outdir", str(outdir),
               "--seed", str(seed + 1), "--device", device] + (["--bundle", str(bundle)] if bundle else []) + \
              (["--force"] if force else [])
        rx = subprocess.Popen(cmd)
        try:
            recs = run_transmitter(str(sock), images, snr_db, bundle, seed, channel, per_image, device)
            code = rx.wait(timeout=120)
        finally:
            if rx.poll() is None:
                rx.terminate()
            sock.parent.rmdir() if sock.parent.exists() and not any(sock.parent.iterdir()) else None
        if code != 0 or not all(r.get("ok") for r in recs):
            fail(f"stream: {sum(not r.get('ok') for r in recs)} of {len(recs)} images failed (receiver exit {code})")


def register(app: typer.Typer) -> None:
    app.command("tx")(tx_cmd)
    app.command("rx")(rx_cmd)
    app.command("link")(link_cmd)
    app.command("stream")(stream_cmd)
    app.command("stream-tx")(stream_tx_cmd)
    app.command("stream-rx")(stream_rx_cmd)
