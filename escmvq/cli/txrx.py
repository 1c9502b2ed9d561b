"""``escmvq tx``, ``rx``, ``link`` and ``stream``: the torch-free transmitter and receiver."""
from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Optional

import typer

from escmvq.cli.choices import Channel, ChannelOpt, CsiMode, CsiOpt, PilotsOpt
from escmvq.cli.common import cli_errors, fail, fresh_path, out_console, parse_snr, tile_progress

BundleOpt = typer.Option(None, "--bundle", "-b", help="Bundle folder (default: the shipped model).")
SeedOpt = typer.Option(0, "--seed", help="Seed of the channel draws (np.random.Generator).")
PerImageOpt = typer.Option(False, "--per-image", help="One fading realisation per image instead of per tile.")
DeviceOpt = typer.Option("cpu", "--device", help="ONNX Runtime device: cpu, cuda, tensorrt.")
Int8Opt = typer.Option(False, "--int8", help="Use the bundle's int8 encoder/decoder (export --int8).")
ForceOpt = typer.Option(False, "--force", "-f", help="Overwrite an existing output file.")


class Decoding(str, enum.Enum):
    """Values of ``--decoding`` (== ``escmvq.runtime.receiver.DECODINGS``; a test checks)."""
    auto = "auto"
    hard = "hard"
    soft = "soft"


def _decoding(value):
    """typer parser of ``--decoding``: a bad value is one line on stderr and exit 2."""
    if value is None or isinstance(value, Decoding):
        return value
    try:
        return Decoding(str(value).strip().lower())
    except ValueError:
        fail(f"--decoding: expected one of {', '.join(d.value for d in Decoding)}, got {value!r}", 2)


# default None = the runtime's escmvq.runtime.receiver.DEFAULT_DECODING (not imported here:
# the CLI must start without numpy/scipy/onnxruntime)
DecodingOpt = typer.Option(None, "--decoding", parser=_decoding, show_default=False,
                           help="Receiver: hard (QAM decisions -> labels -> codewords), soft (bit LLRs -> "
                                "label posterior -> MMSE codeword) or auto (what the bundle recommends, else hard). "
                                "Default: the runtime's DEFAULT_DECODING (auto).")


def decoding_value(d) -> str:
    """``--decoding`` (None: not given) -> the receiver's ``decoding`` string."""
    if d is None:
        from escmvq.runtime.receiver import DEFAULT_DECODING

        return DEFAULT_DECODING
    return Decoding(d).value


def csi_config(csi: str, pilots: int):
    """``--csi`` / ``--pilots`` -> the :class:`~escmvq.runtime.csi.CsiConfig` of both link ends."""
    from escmvq.runtime.csi import CsiConfig

    return CsiConfig(mode=str(csi), pilots=int(pilots))


def _default_output(image: Path, suffix: str) -> Path:
    """The default output of tx/rx (no ``-o``): ``STEM + suffix`` in the current folder, stepping
    to ``STEM-1 + suffix``, ... rather than overwriting (see :func:`_said_default_output`)."""
    return fresh_path(Path(image.stem), suffix)


def _said_default_output(image: Path, suffix: str, out: Path) -> None:
    """After writing a default output: say on stderr where it went (and why not STEM + suffix)."""
    import sys

    first = Path(image.stem + suffix)
    why = f"{first} exists, " if out != first else ""
    print(f"note: no -o given: wrote {out.resolve()} ({why}-o PATH chooses the output)", file=sys.stderr)


def _n_tiles(img, bundle) -> int:
    from escmvq.runtime.images import tile_grid

    rows, cols = tile_grid(img.shape[:2], bundle.tile_size)
    return rows * cols


def tx_cmd(
    image: Path = typer.Argument(..., help="Image file (any size/mode Pillow reads)."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB, eq. (53)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Frame file (default: IMAGE stem + .tx)."),
    bundle: Optional[Path] = BundleOpt, channel: Channel = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, int8: bool = Int8Opt, force: bool = ForceOpt,
    received: bool = typer.Option(False, "--through-channel",
                                  help="Apply the channel here and store the received samples (rx only decodes)."),
    sigmf: bool = typer.Option(False, "--sigmf",
                               help="Write a SigMF recording instead of a .tx frame: -o NAME gives NAME.sigmf-data "
                                    "(cf32_le samples, tile after tile) and NAME.sigmf-meta (needs "
                                    "pip install 'escmvq\\[radio]')."),
    sample_rate: float = typer.Option(1e6, "--sample-rate", metavar="HZ",
                                      help="--sigmf: the nominal sample rate written to core:sample_rate."),
    csi: CsiMode = CsiOpt, pilots: int = PilotsOpt,
):
    """Encode, allocate and modulate IMAGE; write the transmitted frame (.tx, or a SigMF recording with --sigmf).

    --csi pilots puts pilots and a plan header before every tile's data (frame version 3); rx
    reads the mode from the frame.

    Python: ``escmvq.runtime.transmitter.transmit_image(Transmitter(bundle), load_image(IMAGE), snr_db, rng, channel)``;
    ``escmvq.runtime.sigmf.write_sigmf(frame, NAME)``.
    """
    snr_db = parse_snr(snr)
    if sigmf:
        _tx_sigmf_checks(output, force, sample_rate)
    with cli_errors():
        import numpy as np

        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)

        from escmvq.runtime.files import atomic_write_bytes, check_output
        from escmvq.runtime.images import load_image
        from escmvq.runtime.transmitter import transmit_image
        from escmvq.runtime.transmitter import Transmitter

        suffix = ".sigmf-meta" if sigmf else ".tx"
        out = output if output is not None else _default_output(image, suffix)
        if sigmf:
            from escmvq.runtime.sigmf import sigmf_paths

            for p in sigmf_paths(out):
                check_output(p, force)
        else:
            check_output(out, force)
        img = load_image(image)
        tx = Transmitter(bundle, device=device, precision="int8" if int8 else "fp32", csi=csi_config(csi, pilots))
        rng = np.random.default_rng(seed)
        with tile_progress(_n_tiles(img, tx.bundle), img.shape[0] * img.shape[1], "tx") as advance:
            frame, _, _, _ = transmit_image(tx, img, snr_db, rng, channel, per_image, progress=advance)
        if received:
            from escmvq.runtime.link import through_channel

            frame, _ = through_channel(frame, rng)
        if sigmf:
            from escmvq.runtime.sigmf import write_sigmf

            data_path, out = write_sigmf(frame, out, sample_rate, seed=seed, force=force)
            wrote = f"{data_path} and {out.name} (SigMF, {sample_rate:g} Hz)"
        else:
            atomic_write_bytes(out, frame.to_bytes(), force)
            wrote = str(out)
        if output is None:
            _said_default_output(image, suffix, out)
        print(f"wrote {wrote}: {'received' if received else 'transmitted'} samples, {frame.n_tiles} tiles x "
              f"{_tile_uses(frame)}, {channel}, SNR {snr_db:g} dB, bundle {tx.bundle.hash_hex[:12]}")


def _tile_uses(frame) -> str:
    """Channel uses per tile as ``tx`` reports them (with estimated CSI, the overhead too)."""
    if not frame.estimated:
        return frame.tile_layout
    return f"{frame.tile_layout} (csi pilots, +{100 * frame.n_preamble / frame.n_symbols:.1f}%)"


def _tx_sigmf_checks(output: Optional[Path], force: bool, sample_rate: float) -> None:
    """``tx --sigmf``: the sigmf package and a usable sample rate, before any work."""
    import math

    if not (math.isfinite(sample_rate) and sample_rate > 0):
        fail(f"--sample-rate: expected a positive number of Hz, got {sample_rate:g}", 2)
    with cli_errors():
        from escmvq.runtime.sigmf import require_sigmf

        require_sigmf()


def rx_cmd(
    frame_path: Path = typer.Argument(..., metavar="FRAME", help="A .tx frame written by `escmvq tx`, or a SigMF "
                                                                 "recording (NAME.sigmf-meta, from `escmvq tx --sigmf` "
                                                                 "or a radio)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Decoded PNG (default: FRAME stem + .rx.png)."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="Original image: print the PSNR."),
    bundle: Optional[Path] = BundleOpt, seed: int = SeedOpt, device: str = DeviceOpt, int8: bool = Int8Opt,
    force: bool = ForceOpt, decoding: Optional[Decoding] = DecodingOpt,
):
    """Apply the channel (for transmitted samples) and decode a .tx frame or a SigMF recording to a PNG.

    A frame with estimated CSI (tx --csi pilots) is decoded from its pilots and plan headers;
    tiles whose header failed are counted and decoded as not sent.

    Python: ``escmvq.runtime.receiver.receive_frame(Receiver(bundle), frame.parse(data), rng)``
    (a recording: ``escmvq.runtime.sigmf.read_sigmf(NAME)`` gives the frame).
    """
    with cli_errors():
        import numpy as np

        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)

        from escmvq.runtime.files import atomic_write, check_output
        from escmvq.runtime.images import load_image, psnr, save_png
        from escmvq.runtime.receiver import receive_frame
        from escmvq.runtime.receiver import Receiver

        out = output if output is not None else _default_output(frame_path, ".rx.png")
        check_output(out, force)
        frame = _read_frame(frame_path)
        rx = Receiver(bundle, device=device, precision="int8" if int8 else "fp32", decoding=decoding_value(decoding))
        failed = []
        with tile_progress(frame.n_tiles, frame.image_size[0] * frame.image_size[1], "rx") as advance:
            img, _, _ = receive_frame(rx, frame, np.random.default_rng(seed), progress=advance, header_failures=failed)
        ref = load_image(reference) if reference is not None else None
        if ref is not None and ref.shape != img.shape:
            fail(f"--reference: {reference} is {ref.shape[1]}x{ref.shape[0]}, the frame holds {img.shape[1]}x{img.shape[0]}")
        atomic_write(out, lambda p: save_png(img, p), force)
        if output is None:
            _said_default_output(frame_path, ".rx.png", out)
        msg = f"wrote {out}: {img.shape[1]}x{img.shape[0]} from {frame.n_tiles} tiles"
        if frame.estimated:
            msg += (f" (csi pilots, {frame.csi.pilots} pilots per tile): plan header failed on {len(failed)} of "
                    f"{frame.n_tiles} tiles (decoded as not sent)")
        if ref is not None:
            msg += f", PSNR {psnr(ref, img):.2f} dB"
        print(msg)


def _read_frame(path: Path):
    """The frame in ``path``: a SigMF recording by its suffix (``.sigmf-meta`` / ``.sigmf-data``),
    else a ``.tx`` frame; any defect is a one-line FrameError naming the file."""
    from escmvq.runtime.frame import FrameError, parse

    if path.suffix in (".sigmf-meta", ".sigmf-data"):
        from escmvq.runtime.sigmf import read_sigmf

        return read_sigmf(path)
    if not path.is_file():
        raise FrameError(f"{path}: no such file")
    if path.stat().st_size > 1 << 32:
        raise FrameError(f"{path}: {path.stat().st_size} bytes is too large for a .tx frame")
    try:
        return parse(path.read_bytes())
    except FrameError as e:
        raise FrameError(f"{path}: {e}") from None


def link_cmd(
    image: Path = typer.Argument(..., help="Image file (any size/mode Pillow reads)."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB, eq. (53)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Side-by-side PNG (default: IMAGE stem + .link.png, never overwritten)."),
    bundle: Optional[Path] = BundleOpt, channel: Channel = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, int8: bool = Int8Opt, force: bool = ForceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="PATH",
                                        help="Also write a PNG figure of the link: received constellation, power per "
                                             "symbol, codebooks / channel per tile, input and output (needs "
                                             "matplotlib: pip install 'escmvq\\[plot]'; never overwritten without "
                                             "--force)."),
    decoding: Optional[Decoding] = DecodingOpt,
    csi: CsiMode = CsiOpt, pilots: int = PilotsOpt,
):
    """Transmitter, channel and receiver in one go: PSNR, channel uses, codebook use,
    per-stage latency, and a side-by-side PNG (input | output).

    Python: ``escmvq.runtime.link.run_link(Transmitter(bundle), Receiver(bundle), load_image(IMAGE), snr_db, rng, channel)``.
    """
    snr_db = parse_snr(snr)
    with cli_errors():
        import numpy as np

        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)

        from escmvq.runtime.files import atomic_write, check_output
        from escmvq.runtime.images import load_image, save_side_by_side_png
        from escmvq.runtime.link import link_summary, run_link
        from escmvq.runtime.receiver import Receiver
        from escmvq.runtime.transmitter import Transmitter

        out = output if output is not None else fresh_path(Path(image.stem + ".link"), ".png")
        check_output(out, force)
        if plot is not None and csi != "perfect":
            fail("--plot: draws the perfect-CSI plans; drop --csi pilots", 2)
        if plot is not None:  # refuse before any work: no matplotlib, a bad or existing path
            _check_plot_path(plot, out, force)
        img = load_image(image)
        prec = "int8" if int8 else "fp32"
        cfg = csi_config(csi, pilots)
        tx = Transmitter(bundle, device=device, precision=prec, csi=cfg)
        rx = Receiver(tx.bundle, device=device, precision=prec, decoding=decoding_value(decoding), csi=cfg)
        with tile_progress(_n_tiles(img, tx.bundle), img.shape[0] * img.shape[1], "link") as advance:
            rep = run_link(tx, rx, img, snr_db, np.random.default_rng(seed), channel, per_image,
                           capture=plot is not None, progress=advance)
        png = None
        if plot is not None:  # rendered before anything is written: a failure leaves no output at all
            from escmvq.runtime.linkplot import render_link_plot

            png = render_link_plot(rep.capture, img, rep.image, snr_db=snr_db, psnr_db=rep.psnr_db,
                                   title=f"escmvq link: {image.name} ({img.shape[1]}x{img.shape[0]}), {channel} "
                                         f"({'per image' if per_image else 'per tile'}), seed {seed}")
        atomic_write(out, lambda p: save_side_by_side_png(img, rep.image, p), force)
        if png is not None:
            from escmvq.runtime.files import atomic_write_bytes

            atomic_write_bytes(plot, png, force)
        summary = link_summary(rep, tx, rx, str(image), (img.shape[1], img.shape[0]), snr_db, channel, per_image, seed)
        summary["output"] = str(out)
        if plot is not None:
            summary["plot"] = str(plot)
        if as_json:
            print(json.dumps(summary, indent=1))
            return
        _print_link(summary)


def _check_plot_path(plot: Path, out: Path, force: bool) -> None:
    """``link --plot``: matplotlib present, a .png path other than the side-by-side output,
    not an existing file (unless ``force``); else a one-line error."""
    from escmvq.runtime.files import check_output
    from escmvq.runtime.linkplot import require_matplotlib

    require_matplotlib()
    if plot.suffix.lower() != ".png":
        fail(f"--plot: {plot} is not a .png path", 2)
    if plot.resolve() == out.resolve():
        fail(f"--plot: {plot} is also the side-by-side output (-o)", 2)
    check_output(plot, force)


def _print_link(s: dict) -> None:
    from rich.table import Table

    con = out_console()
    con.print(f"[bold]escmvq link[/] {s['image']} ({s['size'][0]}x{s['size'][1]}, {s['tiles']} tiles), "
              f"SNR {s['snr_db']:g} dB, {s['channel']} ({s['fading']}), seed {s['seed']}")
    t = Table(show_header=False, box=None)
    t.add_row("PSNR", f"[bold]{s['psnr_db']:.2f} dB[/]")
    t.add_row("channel uses", f"{s['channel_uses']:,} ({s['channel_uses_per_tile']} per tile, "
                              f"{s['bits_per_tile']} bits per tile)")
    t.add_row("label errors", f"{100 * s['label_error_rate']:.2f}% of the sent sub-vectors")
    if s.get("receiver"):
        rx = s["receiver"]
        t.add_row("receiver", ", ".join(f"{k} {v}" + (" (auto: the bundle's choice)" if k == "decoding" and rx.get("auto") else "")
                                        for k, v in rx.items() if v is not None and k not in ("csi", "auto")))
    if s.get("csi"):
        c = s["csi"]
        t.add_row("CSI", f"pilots ({c['pilots']} pilots + {c['header_channel_uses']} header channel uses per tile, "
                         f"{c['overhead_channel_uses_total']:,} in all, {100 * c['overhead_fraction']:.1f}% of T); "
                         f"plan header failed on {c['header_failures']} of {s['tiles']} tiles")
    t.add_row("codebook use", "  ".join(f"{v + 1}: {100 * u:.1f}%" for v, u in enumerate(s["codebook_use"]))
              + f"  not sent: {100 * (1 - sum(s['codebook_use'])):.1f}%")
    con.print(t)
    lt = Table(title="latency per stage (whole image)")
    lt.add_column("stage")
    lt.add_column("ms", justify="right")
    lt.add_column("us / tile", justify="right")
    for k, v in s["latency_ms"].items():
        lt.add_row(k.replace("_", " "), f"{v:.2f}", f"{1e3 * v / s['tiles']:.1f}")
    con.print(lt)
    con.print(f"side by side (input | output): {s['output']}")
    if s.get("plot"):
        con.print(f"link plot: {s['plot']}")


SocketOpt = typer.Option(None, "--socket", help="Unix socket path (default: a fresh one in the temp folder).")


def stream_rx_cmd(
    socket_path: Path = typer.Option(..., "--socket", help="Unix socket to listen on."),
    outdir: Path = typer.Option(Path("."), "--outdir", "-o", help="Folder for the decoded PNGs."),
    bundle: Optional[Path] = BundleOpt, seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt,
    decoding: Optional[Decoding] = DecodingOpt,
):
    """Receiver process: listen on a socket, apply the channel, decode each frame, write PNGs; one JSON line per image.

    Serves one transmitter at a time (others wait their turn) and exits when a stream has ended and nobody waits.
    Replaces only a stale socket at --socket; refuses a file, a folder or a socket a receiver answers on.

    Python: ``escmvq.runtime.stream.serve_receiver(socket, bundle, outdir, seed, force, device)``."""
    with cli_errors():
        from escmvq.runtime.stream import serve_receiver
        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)
        if not outdir.is_dir():
            fail(f"--outdir: {outdir} is not a folder")
        serve_receiver(str(socket_path), bundle, outdir, seed, force, device, decoding=decoding_value(decoding))


def stream_tx_cmd(
    images: list[Path] = typer.Argument(..., help="Images to stream."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB."),
    socket_path: Path = typer.Option(..., "--socket", help="Unix socket of a running `escmvq stream-rx`."),
    bundle: Optional[Path] = BundleOpt, channel: Channel = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, csi: CsiMode = CsiOpt, pilots: int = PilotsOpt,
):
    """Transmitter process: stream IMAGES to a running receiver; one JSON line per image.

    Python: ``escmvq.runtime.stream.run_transmitter(socket, images, snr_db, bundle, seed, channel)``.
    """
    snr_db = parse_snr(snr)
    with cli_errors():
        from escmvq.runtime.stream import run_transmitter
        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)
        recs = run_transmitter(str(socket_path), images, snr_db, bundle, seed, channel, per_image, device,
                               csi=csi_config(csi, pilots))
        if not all(r.get("ok") for r in recs):
            fail(f"{sum(not r.get('ok') for r in recs)} of {len(recs)} images failed")


def stream_cmd(
    images: list[Path] = typer.Argument(..., help="Images to stream."),
    snr: str = typer.Option(..., "--snr", help="SNR in dB."),
    outdir: Path = typer.Option(Path("."), "--outdir", "-o", help="Folder for the decoded PNGs."),
    bundle: Optional[Path] = BundleOpt, channel: Channel = ChannelOpt, per_image: bool = PerImageOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt, decoding: Optional[Decoding] = DecodingOpt,
    csi: CsiMode = CsiOpt, pilots: int = PilotsOpt,
):
    """Start a receiver process and stream IMAGES to it from this (transmitter) process.

    --csi pilots: every frame carries pilots and plan headers; the receiver reads the mode from each frame.

    Python: ``escmvq.runtime.stream.run_transmitter`` to a ``serve_receiver`` in another process.
    """
    snr_db = parse_snr(snr)
    with cli_errors():
        import shutil
        import subprocess
        import sys
        import tempfile

        from escmvq.runtime.stream import run_transmitter
        from escmvq.runtime.threads import limit_blas_threads

        limit_blas_threads(1)
        if not outdir.is_dir():
            fail(f"--outdir: {outdir} is not a folder")
        tmp = Path(tempfile.mkdtemp(prefix="escmvq-"))
        rx = None
        try:  # the temporary folder and socket go on every exit path (errors, Ctrl-C, SIGTERM)
            sock = tmp / "rx.sock"
            cmd = [sys.executable, "-m", "escmvq.cli.main", "stream-rx", "--socket", str(sock), "--outdir",
                   str(outdir), "--seed", str(seed + 1), "--device", device, "--decoding", decoding_value(decoding)] + \
                  (["--bundle", str(bundle)] if bundle else []) + \
                  (["--force"] if force else [])
            rx = subprocess.Popen(cmd)
            recs = run_transmitter(str(sock), images, snr_db, bundle, seed, channel, per_image, device,
                                   receiver_alive=lambda: rx.poll() is None, csi=csi_config(csi, pilots))
            code = rx.wait(timeout=120)
        finally:
            if rx is not None and rx.poll() is None:
                rx.terminate()  # SIGTERM: the receiver removes its socket
                try:
                    rx.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    rx.kill()
                    rx.wait()
            shutil.rmtree(tmp, ignore_errors=True)
        if code != 0 or not all(r.get("ok") for r in recs):
            fail(f"stream: {sum(not r.get('ok') for r in recs)} of {len(recs)} images failed (receiver exit {code})")


def register(app: typer.Typer) -> None:
    app.command("tx")(tx_cmd)
    app.command("rx")(rx_cmd)
    app.command("link")(link_cmd)
    app.command("stream")(stream_cmd)
    app.command("stream-tx")(stream_tx_cmd)
    app.command("stream-rx")(stream_rx_cmd)
