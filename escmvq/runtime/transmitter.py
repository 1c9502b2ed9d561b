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
from escmvq.runtime.alloc_adapter import PlanCache, gamma_of
from escmvq.runtime.backends import make_session, trt_cache_dir
from escmvq.runtime.bundle import Bundle, load_bundle
from escmvq.runtime.modem import modulate
from escmvq.runtime.quantize import quantize, search_matrices

__all__ = ["Transmitter", "TxResult", "snr_to_ptot"]


def snr_to_ptot(snr_db: float, n_bits: int, noise_var: float = 1.0) -> float:
    """Eq. (53): ``P_tot = N*B * sigma^2 * 10^(SNR/10)`` (via issue 2's helper)."""
    from escmvq.core.channels import snr_db_to_ptot

    return float(snr_db_to_ptot(float(snr_db), int(n_bits), noise_var=float(noise_var)))


@dataclass
class TxResult:
    samples: np.ndarray  # [b, T] complex64, x_t = sqrt(p_t) s_t
    h: np.ndarray  # [b] complex64
    p_tot: float
    noise_var: float
    codebooks: np.ndarray  # [b, N] 0-based codebook of every sub-vector
    labels: np.ndarray  # [b, N] labels sent
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


class Transmitter:
    def __init__(self, bundle: Bundle | str | None = None, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, allocator=None):
        """``allocator``: an ``escmvq.runtime.Allocator`` to plan with instead of the bundle's
        (e.g. JCAP for a bundle exported with JCAMP); both link ends must use the same one."""
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        name = "encoder.onnx" if precision == "fp32" else f"encoder.{precision}.onnx"
        if not self.bundle.has(name):
            from escmvq.runtime.bundle import BundleError

            raise BundleError(f"bundle has no {precision} encoder ({name}); export with --{precision}")
        cache = trt_cache_dir(self.bundle.hash_hex) if device in ("tensorrt", "jetson") else None
        self.session = make_session(self.bundle.file(name), device=device, threads=threads, cache_dir=cache)
        alloc = self.bundle.allocator if allocator is None else allocator
        self.plans = PlanCache(alloc, n_symbols=self.bundle.n_symbols, n_bits=self.bundle.n_bits)
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
        t1 = time.perf_counter()
        cbs, orders, powers, bit_order = self.plans.batch(p_tot, gamma_of(h, noise_var))
        t2 = time.perf_counter()
        labels = quantize(pvq.to_subvectors(z), self.bundle.codebooks, cbs, self._search)
        t3 = time.perf_counter()
        bits = pvq.index_to_bits(labels, self._B).reshape(b, -1)
        s = modulate(bits, orders, bit_order)
        x = (s * np.sqrt(powers)).astype(np.complex64)
        t4 = time.perf_counter()
        t.update(encode=t1 - t0, allocate=t2 - t1, quantize=t3 - t2, modulate=t4 - t3)
        return TxResult(samples=x, h=h, p_tot=float(p_tot), noise_var=float(noise_var), codebooks=cbs, labels=labels, timings=t)

    def send_image(self, img: np.ndarray, snr_db: float, rng: np.random.Generator, channel: str = "rayleigh",
                   per_image: bool = False, noise_var: float = 1.0):
        """A whole ``[H, W, 3]`` uint8 image -> its transmitted :class:`~escmvq.runtime.frame.Frame`
        (tiled; each tile its own fading draw unless ``per_image``)."""
        from escmvq.runtime.link import transmit_image

        return transmit_image(self, img, snr_db, rng, channel, per_image, noise_var)[0]
