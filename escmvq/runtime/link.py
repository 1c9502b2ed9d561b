"""Whole images through transmitter, channel and receiver (used by ``escmvq tx/rx/link``
and the streaming processes).

Each tile is its own block-fading realisation (default) or all tiles of an image share
one (``per_image=True``). Random draws come from the ``np.random.Generator`` passed in.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from escmvq.runtime.frame import KIND_RX, KIND_TX, Frame
from escmvq.runtime.images import psnr, tile, untile
from escmvq.runtime.receiver import Receiver
from escmvq.runtime.transmitter import Transmitter

__all__ = ["draw_h", "apply_channel", "transmit_image", "receive_frame", "run_link", "LinkReport", "STAGES"]

STAGES = ("encode", "allocate", "quantize", "modulate", "channel", "demodulate", "dequantize", "decode")


def draw_h(rng: np.random.Generator, n: int, channel: str, per_image: bool = False) -> np.ndarray:
    """Channel coefficients ``[n]`` complex64: ones (AWGN) or CN(0, 1) (Rayleigh)."""
    from escmvq.core import channels

    if channel == "awgn":
        return np.ones(n, np.complex64)
    if channel != "rayleigh":
        raise ValueError(f"channel: expected awgn or rayleigh, got {channel!r}")
    if per_image:
        return np.repeat(np.asarray(channels.rayleigh(rng, 1), np.complex64), n)
    return np.asarray(channels.rayleigh(rng, n), np.complex64)


def apply_channel(x: np.ndarray, h: np.ndarray, rng: np.random.Generator, noise_var: float) -> np.ndarray:
    """``y = h x + n`` (x already carries sqrt(p_t)) via issue 2's channel."""
    from escmvq.core import channels

    return np.asarray(channels.apply(x, h, np.ones(x.shape[1], np.float64), rng, noise_var=noise_var), np.complex64)


def _add(t: dict, u: dict) -> None:
    for k, v in u.items():
        t[k] = t.get(k, 0.0) + v


def transmit_image(tx: Transmitter, img: np.ndarray, snr_db: float, rng: np.random.Generator,
                   channel: str = "rayleigh", per_image: bool = False, noise_var: float = 1.0,
                   max_batch: int = 256) -> tuple[Frame, dict, np.ndarray, np.ndarray]:
    """``img [H, W, 3]`` uint8 -> (transmitted frame, stage timings, codebooks [n, N], labels [n, N])."""
    tiles, grid = tile(img, tx.bundle.tile_size)
    h = draw_h(rng, len(tiles), channel, per_image)
    xs, cbs, labels, timings, p_tot = [], [], [], {}, None
    for i in range(0, len(tiles), max_batch):
        r = tx.send(tiles[i:i + max_batch], snr_db=snr_db, h=h[i:i + max_batch], noise_var=noise_var)
        xs.append(r.samples)
        cbs.append(r.codebooks)
        labels.append(r.labels)
        _add(timings, r.timings)
        p_tot = r.p_tot
    frame = Frame(kind=KIND_TX, channel=channel, bundle_hash=tx.bundle.hash, snr_db=float(snr_db), p_tot=p_tot,
                  noise_var=float(noise_var), image_size=img.shape[:2], tile_size=tx.bundle.tile_size,
                  n_bits=tx.bundle.n_bits, h=h, samples=np.concatenate(xs))
    return frame, timings, np.concatenate(cbs), np.concatenate(labels)


def through_channel(frame: Frame, rng: np.random.Generator) -> tuple[Frame, float]:
    """A transmitted frame -> the received frame (same header, kind 1) and the time taken."""
    if frame.kind == KIND_RX:
        return frame, 0.0
    t0 = time.perf_counter()
    y = apply_channel(frame.samples, frame.h, rng, frame.noise_var)
    dt = time.perf_counter() - t0
    from dataclasses import replace

    return replace(frame, kind=KIND_RX, samples=y), dt


def receive_frame(rx: Receiver, frame: Frame, rng: np.random.Generator, max_batch: int = 256) -> tuple[np.ndarray, dict, np.ndarray]:
    """A frame (transmitted: the channel is applied here; or received) -> (image uint8, timings, labels)."""
    rx.check_frame(frame)
    frame, dt = through_channel(frame, rng)
    timings = {"channel": dt}
    out, labels = [], []
    for i in range(0, frame.n_tiles, max_batch):
        r = rx.receive(frame.samples[i:i + max_batch], frame.h[i:i + max_batch], frame.p_tot, frame.noise_var)
        out.append(r.tiles)
        labels.append(r.labels)
        _add(timings, r.timings)
    img = untile(np.concatenate(out), frame.grid, frame.image_size)
    return img, timings, np.concatenate(labels)


@dataclass
class LinkReport:
    image: np.ndarray  # reconstruction [H, W, 3] uint8
    psnr_db: float
    channel_uses: int  # T per tile * tiles
    n_tiles: int
    codebook_use: np.ndarray  # [V] fraction of sub-vectors sent with each codebook
    label_error_rate: float  # fraction of sub-vector labels received wrong
    timings: dict[str, float] = field(default_factory=dict)
    p_tot: float = 0.0


def run_link(tx: Transmitter, rx: Receiver, img: np.ndarray, snr_db: float, rng: np.random.Generator,
             channel: str = "rayleigh", per_image: bool = False, noise_var: float = 1.0) -> LinkReport:
    t0 = time.perf_counter()
    frame, t_tx, cbs, sent = transmit_image(tx, img, snr_db, rng, channel, per_image, noise_var)
    out, t_rx, labels = receive_frame(rx, frame, rng)
    total = time.perf_counter() - t0
    timings = {**t_tx, **t_rx, "end_to_end": total}
    V = tx.bundle.codebooks.shape[0]
    use = np.bincount(cbs.ravel(), minlength=V)[:V] / cbs.size
    return LinkReport(image=out, psnr_db=psnr(img, out), channel_uses=frame.n_tiles * frame.n_symbols,
                      n_tiles=frame.n_tiles, codebook_use=use,
                      label_error_rate=float(np.mean(sent != labels)), timings=timings, p_tot=frame.p_tot)

