"""The receiver: plan from (P_tot, gamma) -> equalise -> hard QAM decisions -> labels ->
codewords -> decoder (ONNX Runtime). Batched, one plan per row. No torch."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from escmvq.core import channels, pvq
from escmvq.runtime.alloc_adapter import gamma_of
from escmvq.runtime.bundle import Bundle
from escmvq.runtime.endpoint import open_endpoint
from escmvq.runtime.frame import Frame, FrameError
from escmvq.runtime.modem import demodulate
from escmvq.runtime.quantize import dequantize

__all__ = ["Receiver", "RxResult", "FrameMismatch"]


class FrameMismatch(FrameError):
    """A frame that does not belong to this receiver's bundle."""


@dataclass
class RxResult:
    tiles: np.ndarray  # [b, 3, th, tw] float32 (not clipped)
    labels: np.ndarray  # [b, N] received labels
    codebooks: np.ndarray  # [b, N]
    timings: dict[str, float] = field(default_factory=dict)


class Receiver:
    def __init__(self, bundle: Bundle | str | None = None, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, allocator=None):
        """``allocator``: plan with this ``escmvq.runtime.Allocator`` instead of the bundle's
        (see :func:`~escmvq.runtime.endpoint.open_endpoint`)."""
        self.bundle, self.session, self.plans = open_endpoint(bundle, "decoder", device, precision, threads, allocator)
        _, self._h, self._w = self.bundle.latent_shape
        self._B = int(self.bundle.model["B"])

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"z": np.ascontiguousarray(z, np.float32)})[0]

    def check_frame(self, frame: Frame) -> None:
        """Refuse a frame from another bundle (or with shapes this bundle cannot decode)."""
        if frame.bundle_hash != self.bundle.hash:
            raise FrameMismatch(f"frame was made with bundle {frame.bundle_hash.hex()[:16]}, this receiver has "
                                f"{self.bundle.hash_hex[:16]}: refusing to decode")
        if frame.tile_size != self.bundle.tile_size or frame.n_symbols != self.bundle.n_symbols \
                or frame.n_bits != self.bundle.n_bits:
            raise FrameMismatch(f"frame shapes (tile {frame.tile_size}, T={frame.n_symbols}, L={frame.n_bits}) "
                                f"do not match the bundle")

    def receive(self, y: np.ndarray, h: np.ndarray, p_tot: float, noise_var: float = 1.0) -> RxResult:
        """``y [b, T]`` received samples ``h sqrt(p) s + n``, ``h [b]`` (perfect CSI)."""
        t = {}
        y = np.asarray(y)
        h = np.asarray(h, np.complex64)
        b = y.shape[0]
        t0 = time.perf_counter()
        cbs, orders, powers, bit_order = self.plans.batch(p_tot, gamma_of(h, noise_var))
        t1 = time.perf_counter()
        # perfect CSI; a symbol sent with zero power carries no information and comes back as 0
        bits = demodulate(channels.equalize(y, h, powers), orders, bit_order)
        labels = pvq.bits_to_index(bits.reshape(b, -1, self._B))
        t2 = time.perf_counter()
        zq = pvq.from_subvectors(dequantize(labels, self.bundle.codebooks, cbs), self._h, self._w)
        t3 = time.perf_counter()
        x = self.decode(zq)
        t4 = time.perf_counter()
        t.update(allocate=t1 - t0, demodulate=t2 - t1, dequantize=t3 - t2, decode=t4 - t3)
        return RxResult(tiles=x, labels=labels, codebooks=cbs, timings=t)

    def receive_frame(self, frame: Frame, rng: np.random.Generator) -> np.ndarray:
        """A frame (the channel is applied with ``rng`` if it holds transmitted samples) ->
        the reconstructed ``[H, W, 3]`` uint8 image. Refuses frames of another bundle."""
        from escmvq.runtime.link import receive_frame

        return receive_frame(self, frame, rng)[0]
