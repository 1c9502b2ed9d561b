"""The transmitter: tiles -> encoder (ONNX Runtime) -> plan from (P_tot, gamma) ->
per-sub-vector codebook search -> bits -> mixed-order QAM -> power scaling.

Batched: row r of a batch is one tile with its own channel coefficient ``h[r]`` (block
fading), hence its own plan. No torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from escmvq.core import pvq
from escmvq.core.channels import channel_gamma, draw_h, snr_db_to_ptot
from escmvq.runtime.bundle import Bundle
from escmvq.runtime.csi import PreambleTx, check_csi
from escmvq.runtime.endpoint import open_endpoint
from escmvq.runtime.frame import KIND_TX, Frame
from escmvq.runtime.images import tile_grid, tile_range
from escmvq.runtime.modem import modulate
from escmvq.runtime.quantize import quantize, search_matrices

__all__ = ["Transmitter", "TxResult", "send_subvectors", "snr_to_ptot", "transmit_image"]


def snr_to_ptot(snr_db: float, n_bits: int, noise_var: float = 1.0) -> float:
    """Eq. (53): ``P_tot = N*B * sigma^2 * 10^(SNR/10)`` (via ``core.channels.snr_db_to_ptot``)."""
    return float(snr_db_to_ptot(float(snr_db), int(n_bits), noise_var=float(noise_var)))


def send_subvectors(zs: np.ndarray, codebooks: np.ndarray, search: np.ndarray, plans, B: int, p_tot: float,
                    h: np.ndarray, noise_var: float = 1.0, timings: dict | None = None,
                    gamma: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Everything the transmitter does after the encoder: plan, quantize, bits, QAM, power.

    zs : ``[b, N, D]`` float32 encoder sub-vectors; codebooks : ``[V, K, D]`` float32;
    search : ``quantize.search_matrices(codebooks)``; plans : a ``PlanCache``; B : bits per
    label; p_tot : float > 0; h : ``[b]`` complex64 (one plan per row from ``|h|^2/noise_var``);
    gamma : ``[b]`` float64 to plan with instead (the plan header's quantised value, estimated CSI).
    Returns (samples ``[b, T]`` complex64 ``sqrt(p_t) s_t``, codebooks ``[b, N]`` int64 (V = not
    sent), labels ``[b, N]`` int64); stage times in seconds go into ``timings`` when given.
    """
    t0 = time.perf_counter()
    cbs, orders, powers, bit_order = plans.batch(p_tot, channel_gamma(h, noise_var) if gamma is None else gamma)
    t1 = time.perf_counter()
    # a sub-vector the plan does not send (codebook V) is quantized with codebook V-1: its
    # label's bits sit after the plan's sent bits in bit_order, so they never reach a symbol
    labels = quantize(zs, codebooks, np.minimum(cbs, len(codebooks) - 1), search)
    t2 = time.perf_counter()
    bits = pvq.index_to_bits(labels, B).reshape(len(zs), -1)
    x = (modulate(bits, orders, bit_order) * np.sqrt(powers)).astype(np.complex64)
    if timings is not None:
        timings.update(allocate=t1 - t0, quantize=t2 - t1, modulate=time.perf_counter() - t2)
    return x, cbs, labels


@dataclass
class TxResult:
    samples: np.ndarray  # [b, T] complex64, x_t = sqrt(p_t) s_t
    h: np.ndarray  # [b] complex64
    p_tot: float
    noise_var: float
    codebooks: np.ndarray  # [b, N] 0-based codebook of every sub-vector
    labels: np.ndarray  # [b, N] labels sent
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    preamble: np.ndarray | None = None  # [b, n_pre] complex64 pilots + plan header (csi="pilots" only)
    gamma_q: np.ndarray | None = None  # [b] float64 the header's gamma the plans were made from (csi="pilots")


class Transmitter:
    def __init__(self, bundle: Bundle | str | None = None, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, allocator=None, csi=None):
        """``allocator``: plan with this ``escmvq.runtime.Allocator`` instead of the bundle's
        (see :func:`~escmvq.runtime.endpoint.open_endpoint`); ``csi``: "perfect" (default) |
        "pilots" | a :class:`~escmvq.runtime.csi.CsiConfig` (pilots + plan header before each tile)."""
        self.csi = check_csi(csi)
        self.bundle, self.session, self.plans = open_endpoint(bundle, "encoder", device, precision, threads, allocator)
        self.preamble = PreambleTx(self.plans.allocator, self.csi, self.bundle.n_symbols) if self.csi.estimated else None
        self._search = search_matrices(self.bundle.codebooks)
        self._B = int(self.bundle.model["B"])

    def encode(self, tiles: np.ndarray) -> np.ndarray:
        """``[b, 3, th, tw]`` float32 in [0, 1] -> latent ``[b, D, h, w]``."""
        return self.session.run(None, {"x01": np.ascontiguousarray(tiles, np.float32)})[0]

    def send(self, tiles: np.ndarray, snr_db: float | None = None, h: np.ndarray | None = None,
             noise_var: float = 1.0, p_tot: float | None = None) -> TxResult:
        """Transmit a batch of tiles; ``h [b]`` complex (default 1: AWGN), power from ``snr_db``
        (eq. 53) unless ``p_tot`` is given."""
        t = {}
        b = len(tiles)
        if b == 0:
            raise ValueError("tiles: empty batch")
        tiles = np.asarray(tiles, np.float32)
        if tiles.shape[1:] != (3, *self.bundle.tile_size):
            raise ValueError(f"tiles: expected [b, 3, {self.bundle.tile_size[0]}, {self.bundle.tile_size[1]}], got {tiles.shape}")
        h = np.ones(b, np.complex64) if h is None else np.asarray(h, np.complex64).reshape(b)
        if p_tot is None:
            if snr_db is None:
                raise ValueError("give snr_db or p_tot")
            p_tot = snr_to_ptot(snr_db, self.bundle.n_bits, noise_var)
        t0 = time.perf_counter()
        z = self.encode(tiles)
        t["encode"] = time.perf_counter() - t0
        pre = gq = None
        if self.preamble is not None:  # the header's quantised gamma is what both ends plan with
            t0 = time.perf_counter()
            pre, gq = self.preamble.make(p_tot, channel_gamma(h, noise_var))
            t["preamble"] = time.perf_counter() - t0
        x, cbs, labels = send_subvectors(pvq.to_subvectors(z), self.bundle.codebooks, self._search, self.plans,
                                         self._B, p_tot, h, noise_var, timings=t, gamma=gq)
        return TxResult(samples=x, h=h, p_tot=float(p_tot), noise_var=float(noise_var), codebooks=cbs, labels=labels,
                        timings=t, preamble=pre, gamma_q=gq)

    def send_image(self, img: np.ndarray, snr_db: float, rng: np.random.Generator, channel: str = "rayleigh",
                   per_image: bool = False, noise_var: float = 1.0):
        """A whole ``[H, W, 3]`` uint8 image -> its transmitted :class:`~escmvq.runtime.frame.Frame`
        (tiled; each tile its own fading draw unless ``per_image``)."""
        return transmit_image(self, img, snr_db, rng, channel, per_image, noise_var)[0]


def transmit_image(tx: Transmitter, img: np.ndarray, snr_db: float, rng: np.random.Generator,
                   channel: str = "rayleigh", per_image: bool = False, noise_var: float = 1.0,
                   max_batch: int = 256, progress=None) -> tuple[Frame, dict, np.ndarray, np.ndarray]:
    """``img [H, W, 3]`` uint8 -> (transmitted frame, stage timings, codebooks [n, N], labels [n, N]).

    All ``h`` are drawn first (:func:`~escmvq.core.channels.draw_h`), then the tiles go
    through in batches of ``max_batch``; ``progress(k)`` after each batch. With estimated CSI
    (``tx.csi``) the frame also holds every tile's preamble (pilots + plan header; version 3).
    """
    grid = tile_grid(img.shape[:2], tx.bundle.tile_size)
    n = grid[0] * grid[1]
    tile_range(img, tx.bundle.tile_size, 0, 1)  # shape check before any draw
    h = draw_h(rng, n, channel, per_image)
    xs = cbs = labels = pre = None
    timings, p_tot = {}, None
    for i in range(0, n, max_batch):
        j = min(i + max_batch, n)
        r = tx.send(tile_range(img, tx.bundle.tile_size, i, j), snr_db=snr_db, h=h[i:j], noise_var=noise_var)
        if xs is None:
            xs = np.empty((n, *r.samples.shape[1:]), r.samples.dtype)
            cbs = np.empty((n, *r.codebooks.shape[1:]), r.codebooks.dtype)
            labels = np.empty((n, *r.labels.shape[1:]), r.labels.dtype)
            if r.preamble is not None:
                pre = np.empty((n, *r.preamble.shape[1:]), r.preamble.dtype)
        xs[i:j], cbs[i:j], labels[i:j] = r.samples, r.codebooks, r.labels
        if pre is not None:
            pre[i:j] = r.preamble
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        p_tot = r.p_tot
        if progress is not None:
            progress(j - i)
    frame = Frame(kind=KIND_TX, channel=channel, bundle_hash=tx.bundle.hash, snr_db=float(snr_db), p_tot=p_tot,
                  noise_var=float(noise_var), image_size=img.shape[:2], tile_size=tx.bundle.tile_size,
                  n_bits=tx.bundle.n_bits, h=h, samples=xs, csi=tx.csi if pre is not None else None, preamble=pre)
    return frame, timings, cbs, labels
