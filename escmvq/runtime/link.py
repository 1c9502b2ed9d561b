"""Whole images through transmitter, channel and receiver (used by ``escmvq tx/rx/link``
and the streaming processes).

Dependencies point one way: each link end handles whole images on its own
(:func:`~escmvq.runtime.transmitter.transmit_image`,
:func:`~escmvq.runtime.receiver.receive_frame`), the channel is
:func:`~escmvq.core.channels.apply_channel`, and this module composes them
(:func:`run_link`, :func:`through_channel`); neither end imports it.

Each tile is its own block-fading realisation (default) or all tiles of an image share
one (``per_image=True``). Random draws come from the ``np.random.Generator`` passed in.

Large images go through in batches of ``max_batch`` tiles: tiles are cut per batch
(:func:`~escmvq.runtime.images.tile_range`), decoded tiles go straight into the uint8
output (:func:`~escmvq.runtime.images.untile_into`), and the channel noise is drawn per
batch (the same draws, in the same order, as for the whole frame at once). :func:`run_link`
keeps no samples unless ``capture``. ``progress(k)`` is called after each batch of ``k`` tiles.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from escmvq.core import channels
from escmvq.core.channels import apply_channel, channel_gamma, draw_h
from escmvq.io import provenance
from escmvq.runtime.frame import KIND_RX, KIND_TX, Frame
from escmvq.runtime.images import psnr, tile_grid, tile_range, untile_into
from escmvq.runtime.csi import apply_channel_csi
from escmvq.runtime.receiver import Receiver, receive_frame, received_batches
from escmvq.runtime.transmitter import Transmitter, transmit_image

# transmit_image / receive_frame live with their link end (one end needs no other) and
# draw_h / apply_channel in escmvq.core.channels; they are re-exported here because the
# tx/rx commands and the stream processes import the whole-image path from this module.
__all__ = ["run_link", "through_channel", "transmit_image", "receive_frame", "draw_h", "apply_channel",
           "LinkReport", "LinkCapture", "STAGES", "link_summary", "LINK_FORMAT", "LINK_VERSION"]

# the `escmvq link --json` document's header (docs/runtime.md, "Result documents")
LINK_FORMAT = "escmvq-link"
LINK_VERSION = 1

STAGES = ("encode", "allocate", "quantize", "modulate", "channel", "demodulate", "dequantize", "decode")


def _add(t: dict, u: dict) -> None:
    for k, v in u.items():
        t[k] = t.get(k, 0.0) + v


def through_channel(frame: Frame, rng: np.random.Generator, max_batch: int = 256) -> tuple[Frame, float]:
    """A transmitted frame -> the received frame (same header, kind 1) and the time taken.

    The noise is drawn batch by batch as :func:`receive_frame` draws it
    (:func:`~escmvq.runtime.receiver.received_batches`). With estimated CSI the received frame
    keeps the received preamble and drops ``h``: its receiver learns the channel from the pilots."""
    if frame.kind == KIND_RX:
        return frame, 0.0
    t0 = time.perf_counter()
    y = np.empty(frame.samples.shape, np.complex64)
    y_pre = np.empty(frame.preamble.shape, np.complex64) if frame.estimated else None
    for i, j, yb, pb, _ in received_batches(frame, rng, max_batch):
        y[i:j] = yb
        if y_pre is not None:
            y_pre[i:j] = pb
    dt = time.perf_counter() - t0
    from dataclasses import replace

    return replace(frame, kind=KIND_RX, samples=y, preamble=y_pre, h=None if frame.estimated else frame.h), dt


@dataclass
class LinkCapture:
    """What happened to every tile of one :func:`run_link` call (``capture=True``): the
    channel, the received samples and the plan both sides derived from ``(P_tot, gamma)``.

    ``n`` tiles in raster order over ``grid``, ``T`` channel uses and ``N`` sub-vectors per tile.
    """
    h: np.ndarray  # [n] complex64 block-fading coefficient of each tile
    y: np.ndarray  # [n, T] complex64 received samples h sqrt(p_t) s_t + noise
    gamma: np.ndarray  # [n] float64 |h|^2 / sigma^2 (what the plans were made from)
    codebooks: np.ndarray  # [n, N] int64 codebook of each sub-vector; == n_codebooks: not sent (erased)
    orders: np.ndarray  # [n, T] int64 bits per QAM symbol (2, 4, 6, 8; 0: channel use left unused)
    powers: np.ndarray  # [n, T] float64 power p_t of each symbol (0 where unused)
    label_errors: np.ndarray  # [n, N] bool: received label != sent label (False where not sent)
    grid: tuple[int, int]  # tiles (rows, cols)
    latent_hw: tuple[int, int]  # sub-vector positions (h, w), N = h * w in raster order
    n_codebooks: int  # V
    p_tot: float
    noise_var: float

    @property
    def n_tiles(self) -> int:
        return int(self.y.shape[0])

    def equalized(self) -> np.ndarray:
        """``y / (h sqrt(p_t))`` ``[n, T]`` complex64 (0 where nothing was sent)."""
        return channels.equalize(self.y, self.h, self.powers)


@dataclass
class LinkReport:
    image: np.ndarray  # reconstruction [H, W, 3] uint8
    psnr_db: float
    channel_uses: int  # T per tile * tiles
    n_tiles: int
    codebook_use: np.ndarray  # [V] fraction of sub-vectors sent with each codebook (1 - sum: not sent)
    label_error_rate: float  # fraction of the sent sub-vectors' labels received wrong
    timings: dict[str, float] = field(default_factory=dict)
    p_tot: float = 0.0
    capture: LinkCapture | None = None  # run_link(..., capture=True) only
    overhead_channel_uses: int = 0  # pilots + plan header of every tile (csi="pilots"), not in channel_uses
    header_failures: int = 0  # tiles whose plan header failed (decoded with every sub-vector "not sent")


def run_link(tx: Transmitter, rx: Receiver, img: np.ndarray, snr_db: float, rng: np.random.Generator,
             channel: str = "rayleigh", per_image: bool = False, noise_var: float = 1.0,
             capture: bool = False, max_batch: int = 256, progress=None) -> LinkReport:
    """Transmitter, channel and receiver, batch by batch (the random draws are those of
    :func:`transmit_image` then :func:`receive_frame`: all ``h`` first, then the noise of each
    tile in order). Holds the input, the output and the per-batch work only, unless
    ``capture=True``, which also returns the per-tile channel, received samples and plans in
    ``report.capture`` (same draws, same result; the plans come from the receiver's cache).

    With estimated CSI (``tx`` and ``rx`` built with ``csi="pilots"``) each batch's preamble
    (pilots + plan header) goes through the channel after its data, so the data sees the same
    noise as with perfect CSI; the receiver estimates ``h`` and reads the header
    (:meth:`Receiver.receive_pilots`). ``capture`` is for perfect CSI only."""
    if tx.csi != rx.csi:
        raise ValueError(f"csi: the transmitter uses {tx.csi}, the receiver {rx.csi}: both ends must agree")
    pilots = tx.csi.estimated
    if pilots and capture:
        raise ValueError("capture: the link plot shows perfect-CSI plans; use csi='perfect'")
    t0 = time.perf_counter()
    b = tx.bundle
    ts, T, V = b.tile_size, b.n_symbols, b.codebooks.shape[0]
    H, W = img.shape[:2]
    grid = tile_grid((H, W), ts)
    n = grid[0] * grid[1]
    tile_range(img, ts, 0, 1)  # shape check before any draw
    h = draw_h(rng, n, channel, per_image)
    # the frame header (no samples: a zero-stride placeholder) for the receiver's bundle check
    header = Frame(kind=KIND_TX, channel=channel, bundle_hash=b.hash, snr_db=float(snr_db), p_tot=0.0,
                   noise_var=float(noise_var), image_size=(H, W), tile_size=ts, n_bits=b.n_bits, h=h,
                   samples=np.broadcast_to(np.complex64(0), (n, T)))
    rx.check_frame(header)
    out = np.empty((H, W, 3), np.uint8)
    t_tx, t_rx = {}, {"channel": 0.0}
    use = np.zeros(V + 1, np.int64)
    n_sent = n_wrong = 0
    p_tot = 0.0
    n_pre = n_fail = 0
    keep = {"y": [], "cbs": [], "sent": [], "labels": []} if capture else None
    for i in range(0, n, max_batch):
        j = min(i + max_batch, n)
        r = tx.send(tile_range(img, ts, i, j), snr_db=snr_db, h=h[i:j], noise_var=noise_var)
        _add(t_tx, r.timings)
        p_tot = r.p_tot
        t1 = time.perf_counter()
        y, y_pre = apply_channel_csi(r.samples, r.preamble, h[i:j], rng, noise_var)  # the preamble after the data
        if pilots:
            n_pre += r.preamble.size
        t_rx["channel"] += time.perf_counter() - t1
        if pilots:
            q, read = rx.receive_pilots(y_pre, y, p_tot, noise_var)
            n_fail += int((~read.ok).sum())
        else:
            q = rx.receive(y, h[i:j], p_tot, noise_var)
        _add(t_rx, q.timings)
        untile_into(out, q.tiles, i, grid)
        use += np.bincount(r.codebooks.ravel(), minlength=V + 1)[:V + 1]
        sent_mask = r.codebooks < V
        n_sent += int(sent_mask.sum())
        n_wrong += int(((r.labels != q.labels) & sent_mask).sum())
        if keep is not None:
            for k, v in (("y", y), ("cbs", r.codebooks), ("sent", r.labels), ("labels", q.labels)):
                keep[k].append(v)
        if progress is not None:
            progress(j - i)
    total = time.perf_counter() - t0
    timings = {**t_tx, **t_rx, "end_to_end": total}
    cap = None
    if keep is not None:
        from dataclasses import replace

        frame = replace(header, kind=KIND_RX, p_tot=p_tot, samples=np.concatenate(keep["y"]))
        cap = _capture(rx, frame, np.concatenate(keep["cbs"]), np.concatenate(keep["sent"]),
                       np.concatenate(keep["labels"]), V)
    return LinkReport(image=out, psnr_db=psnr(img, out), channel_uses=n * T, n_tiles=n,
                      codebook_use=use[:V] / use.sum(),
                      label_error_rate=n_wrong / n_sent if n_sent else 0.0,
                      timings=timings, p_tot=p_tot, capture=cap, overhead_channel_uses=n_pre, header_failures=n_fail)


def _capture(rx: Receiver, frame: Frame, cbs: np.ndarray, sent: np.ndarray, labels: np.ndarray, V: int) -> LinkCapture:
    gamma = channel_gamma(frame.h, frame.noise_var)
    plan_cbs, orders, powers, _ = rx.plans.batch(frame.p_tot, gamma)
    _, lh, lw = rx.bundle.latent_shape
    return LinkCapture(h=np.asarray(frame.h, np.complex64).copy(), y=np.asarray(frame.samples, np.complex64).copy(),
                       gamma=gamma, codebooks=np.asarray(plan_cbs, np.int64), orders=np.asarray(orders, np.int64),
                       powers=np.asarray(powers, np.float64), label_errors=(sent != labels) & (cbs < V),
                       grid=tuple(int(g) for g in frame.grid), latent_hw=(int(lh), int(lw)), n_codebooks=int(V),
                       p_tot=float(frame.p_tot), noise_var=float(frame.noise_var))


def link_summary(rep: LinkReport, tx: Transmitter, rx: Receiver, image: str, size: tuple[int, int],
                 snr_db: float, channel: str, per_image: bool, seed: int) -> dict:
    """The ``escmvq link`` result document of ``rep`` (what ``--json`` prints): the format
    header and environment (:func:`escmvq.io.provenance.stamp`), the link settings, PSNR, channel
    uses, label error rate, codebook use (V entries; 1 - sum = not sent), latency per stage in
    ms, the bundle's identity and the receiver's settings. ``size``: (width, height)."""
    b = tx.bundle
    es_n0, eb_n0 = channels.snr_db_to_es_eb(snr_db, b.n_bits, b.n_symbols)
    return {
        **provenance.stamp(LINK_FORMAT, LINK_VERSION),
        "image": str(image), "size": [int(size[0]), int(size[1])], "snr_db": snr_db,
        "es_n0_db": round(es_n0, 4), "eb_n0_db": round(eb_n0, 4),
        "channel": channel, "fading": "per image" if per_image else "per tile", "seed": seed,
        "psnr_db": round(rep.psnr_db, 3), "tiles": rep.n_tiles, "channel_uses": rep.channel_uses,
        "channel_uses_per_tile": b.n_symbols, "bits_per_tile": b.n_bits, "p_tot": rep.p_tot,
        "label_error_rate": rep.label_error_rate,
        "codebook_use": [round(float(u), 4) for u in rep.codebook_use],
        "latency_ms": {k: round(1e3 * rep.timings[k], 3) for k in (*STAGES, "end_to_end") if k in rep.timings},
        "bundle": b.hash_hex, "receiver": rx.settings,
        **({"csi": {**rx.settings["csi"], "overhead_channel_uses_total": rep.overhead_channel_uses,
                    "header_failures": rep.header_failures}} if rx.csi.estimated else {}),
    }
