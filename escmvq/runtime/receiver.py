"""The receiver: plan from (P_tot, gamma) -> equalise -> demodulate -> sub-vector estimates
-> decoder (ONNX Runtime). Batched, one plan per row. No torch.

Two ways to demodulate (``decoding``):

- ``"hard"``: per-axis nearest-point QAM decisions -> label bits -> the codeword of that label.
- ``"soft"``: per-bit LLRs (exact log-sum-exp or max-log) with each symbol's own noise
  variance after equalisation, ``sigma^2 / (|h|^2 p_t)`` -> label posterior under the bundle's
  label prior (uniform when the bundle has none, or with ``prior=False``) -> the MMSE
  (posterior-mean) or MAP codeword (:mod:`escmvq.runtime.soft`).

Plans with erasures: a sub-vector on codebook ``V`` (one past the last) is not sent; the
decoder gets the bundle's ``latent_mean`` for it (or the prior-mean codeword of codebook
``V-1`` when the bundle has no latent mean), and its received label is reported as -1.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from escmvq.core import channels, pvq, qam
from escmvq.core.channels import channel_gamma
from escmvq.runtime import soft
from escmvq.runtime.bundle import Bundle, decoder_feed
from escmvq.runtime.csi import CsiConfig, CsiRead, PreambleRx, apply_channel_csi, check_csi
from escmvq.runtime.endpoint import open_endpoint
from escmvq.runtime.frame import KIND_RX, Frame, FrameError
from escmvq.runtime.images import MAX_PIXELS, untile_into
from escmvq.runtime.modem import demodulate, demodulate_llr

__all__ = ["Receiver", "RxResult", "FrameMismatch", "DEFAULT_DECODING", "DECODINGS", "SOFT_ESTIMATES",
           "LLR_MODES", "receiver_settings", "resolve_decoding", "receive_frame", "received_batches"]

DECODINGS = ("auto", "hard", "soft")
# The one default of every receiver (runtime, CLI, eval, bench): "auto" = the decoding the
# bundle recommends (Bundle.recommended_decoding, written by `escmvq export --decoding`,
# from a measurement), hard decisions where it recommends none.
DEFAULT_DECODING = "auto"
SOFT_ESTIMATES = soft.SOFT_ESTIMATES
LLR_MODES = qam.LLR_MODES

_PRIOR_WARNED: set[bytes] = set()  # bundle hashes already told about a missing label_prior


def _choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def receiver_settings(decoding: str = DEFAULT_DECODING, soft_estimate: str = "mmse", llr: str = "exact",
                      prior: bool = True) -> dict:
    """The requested receiver settings as recorded in results (validated; hard decoding has
    no estimate, LLR or prior)."""
    _choice("decoding", decoding, DECODINGS)
    _choice("soft_estimate", soft_estimate, SOFT_ESTIMATES)
    _choice("llr", llr, LLR_MODES)
    if decoding == "hard":
        return {"decoding": "hard", "estimate": None, "llr": None, "prior": None}
    return {"decoding": decoding, "estimate": soft_estimate, "llr": llr, "prior": bool(prior)}


def resolve_decoding(decoding: str, bundle: Bundle) -> str:
    """``decoding`` ("auto" | "hard" | "soft") -> "hard" | "soft" for ``bundle``: "auto" is the
    bundle's recommendation, or "hard" when it has none."""
    _choice("decoding", decoding, DECODINGS)
    if decoding != "auto":
        return decoding
    return bundle.recommended_decoding or "hard"


def _warn_no_prior(bundle: Bundle) -> None:
    if bundle.hash not in _PRIOR_WARNED:
        _PRIOR_WARNED.add(bundle.hash)
        print(f"escmvq: bundle {bundle.hash_hex[:12]} has no label_prior (exported before it existed): "
              "soft decoding uses a uniform label prior", file=sys.stderr, flush=True)


class FrameMismatch(FrameError):
    """A frame that does not belong to this receiver's bundle."""


@dataclass
class RxResult:
    tiles: np.ndarray  # [b, 3, th, tw] float32 (not clipped)
    labels: np.ndarray  # [b, N] received labels (soft: MAP labels; -1: not sent)
    codebooks: np.ndarray  # [b, N] (V: not sent)
    timings: dict[str, float] = field(default_factory=dict)


class Receiver:
    def __init__(self, bundle: Bundle | str | None = None, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, allocator=None, decoding: str = DEFAULT_DECODING,
                 soft_estimate: str = "mmse", llr: str = "exact", prior: bool = True, csi=None):
        """``allocator``: plan with this ``escmvq.runtime.Allocator`` instead of the bundle's
        (see :func:`~escmvq.runtime.endpoint.open_endpoint`). ``decoding``: "auto" (the bundle's
        recommendation, else hard) | "hard" | "soft";
        ``soft_estimate``: "mmse" | "map"; ``llr``: "exact" | "maxlog"; ``prior``: use the
        bundle's label prior (soft decoding; also the not-sent substitute without latent_mean);
        ``csi``: "perfect" (default: :meth:`receive` is handed ``h``) | "pilots" | a
        :class:`~escmvq.runtime.csi.CsiConfig` (:meth:`receive_pilots` estimates ``h`` and reads
        the plan header; it must match the transmitter's)."""
        self.requested = receiver_settings(decoding, soft_estimate, llr, prior)  # validates before any work
        self.csi = check_csi(csi)
        self.bundle, self.session, self.plans = open_endpoint(bundle, "decoder", device, precision, threads, allocator)
        self.preamble = PreambleRx(self.plans.allocator, self.csi, self.bundle.n_symbols) if self.csi.estimated else None
        self._preambles: dict[CsiConfig, PreambleRx] = {}  # per transmitter setting met in frames
        decoding = resolve_decoding(decoding, self.bundle)
        self.decoding, self.soft_estimate, self.llr, self.prior = decoding, soft_estimate, llr, bool(prior)
        _, self._h, self._w = self.bundle.latent_shape
        self._B = int(self.bundle.model["B"])
        self._N = int(self.bundle.model["N"])
        self._V = int(self.bundle.model["V"])
        self._cond = self.bundle.decoder_cond is not None  # the decoder also takes the codebook map
        self._dc = self.bundle.decoder_codebooks  # robust rows: the decoder codebook of each allocator row
        has_prior = self.bundle.label_prior is not None
        prior_table = self.bundle.label_prior if self.prior else None
        if decoding == "soft":  # the posterior tables are built only for the receiver that uses them
            self._soft = soft.SoftTables(self.bundle.codebooks, prior_table, self.bundle.latent_mean, self._N)
            self._subst = self._soft.subst
            if self.prior and not has_prior:
                _warn_no_prior(self.bundle)
        else:
            self._subst = soft.substitutes(self.bundle.codebooks, soft.log_prior_table(prior_table),
                                           self.bundle.latent_mean, self._N)

    @property
    def settings(self) -> dict:
        """The settings in effect, for results: decoding ("hard" | "soft", also when "auto" was
        requested: then ``auto`` is True), estimate, llr and the prior used ("bundle" |
        "uniform (bundle has none)" | "off"; None for hard decoding)."""
        out = receiver_settings(self.decoding, self.soft_estimate, self.llr, self.prior)
        if self.requested["decoding"] == "auto":
            out["auto"] = True
        if self.decoding == "soft":
            out["prior"] = "off" if not self.prior else ("bundle" if self.bundle.label_prior is not None
                                                         else "uniform (bundle has none)")
        if self.csi.estimated:  # perfect CSI adds nothing, so its results read as before
            out["csi"] = self.csi.describe(self.plans.allocator, self.bundle.n_symbols)
        return out

    def decode(self, z: np.ndarray, codebooks: np.ndarray | int = 0) -> np.ndarray:
        """Decoder graph: ``z [b, D, h, w]`` whose sub-vectors came on ``codebooks`` (``[b, N]``,
        ``V`` = not sent; fed only to a reliability-aware decoder) -> ``[b, 3, H, W]``."""
        return self.session.run(None, decoder_feed(z, codebooks, self._V, self._cond, self._dc))[0]

    def check_frame(self, frame: Frame) -> None:
        """Refuse a frame from another bundle (or with shapes this bundle cannot decode)."""
        if frame.bundle_hash != self.bundle.hash:
            raise FrameMismatch(f"frame was made with bundle {frame.bundle_hash.hex()[:16]}, this receiver has "
                                f"{self.bundle.hash_hex[:16]}: refusing to decode")
        if frame.tile_size != self.bundle.tile_size or frame.n_symbols != self.bundle.n_symbols \
                or frame.n_bits != self.bundle.n_bits:
            raise FrameMismatch(f"frame shapes (tile {frame.tile_size}, T={frame.n_symbols}, L={frame.n_bits}) "
                                f"do not match the bundle")
        if frame.estimated:
            need = self.preamble_for(frame.csi).layout.n_symbols
            if frame.header_symbols != need:
                raise FrameMismatch(f"frame's plan header has {frame.header_symbols} QPSK symbols per copy, this "
                                    f"bundle's allocator needs {need}")

    def preamble_for(self, csi: CsiConfig) -> PreambleRx:
        """The receiving side of a transmitter's preamble settings (pilots, header copies and
        scale bits, pilot power, e.g. as a frame records them) with this receiver's estimator."""
        key = replace(csi, estimator=self.csi.estimator)
        if key not in self._preambles:
            self._preambles[key] = PreambleRx(self.plans.allocator, key, self.bundle.n_symbols)
        return self._preambles[key]

    def receive(self, y: np.ndarray, h: np.ndarray, p_tot: float, noise_var: float = 1.0) -> RxResult:
        """``y [b, T]`` received samples ``h sqrt(p) s + n``, ``h [b]`` (perfect CSI),
        ``noise_var`` the noise variance ``sigma^2``."""
        t = {}
        y = np.asarray(y)
        h = np.asarray(h, np.complex64)
        t0 = time.perf_counter()
        plan = self.plans.batch(p_tot, channel_gamma(h, noise_var))
        return self._receive(y, h, plan, noise_var, t, t0)

    def receive_pilots(self, y_pre: np.ndarray, y: np.ndarray, p_tot: float, noise_var: float = 1.0,
                       csi: CsiConfig | None = None) -> tuple[RxResult, CsiRead]:
        """Estimated CSI (``csi="pilots"``): ``y_pre [b, n_pre]`` received pilots + plan header,
        ``y [b, T]`` received data. The plan comes from the header's ``gamma_q``, equalisation
        and LLRs from the pilots' ``h_hat`` (LLR noise ``(sigma^2 + p_t E|e|^2) / (|h_hat|^2 p_t)``
        with ``e`` the estimation error). A tile whose header fails is decoded with every
        sub-vector "not sent". ``csi``: the transmitter's settings (e.g. a frame's) instead of this
        receiver's. Returns (:class:`RxResult`, the :class:`~escmvq.runtime.csi.CsiRead`)."""
        pre = self.preamble if csi is None else self.preamble_for(csi)
        if pre is None:
            raise ValueError("receive_pilots: this receiver was built with csi='perfect'")
        t = {}
        y = np.asarray(y)
        t0 = time.perf_counter()
        read = pre.read(y_pre, p_tot, noise_var)
        t1 = time.perf_counter()
        t["estimate"] = t1 - t0
        # a failed header's tile gets a placeholder plan, then every sub-vector marked not sent
        cbs, orders, powers, bit_order = self.plans.batch(p_tot, np.where(read.ok, read.gamma_q, 1.0))
        cbs = np.where(read.ok[:, None], cbs, int(self.bundle.model["V"]))
        return self._receive(y, read.h_hat, (cbs, orders, powers, bit_order), noise_var, t, t1, read.error_var), read

    def _receive(self, y, h, plan, noise_var: float, t: dict, t0: float, error_var: float = 0.0) -> RxResult:
        """Demodulate, dequantize and decode ``y [b, T]`` under ``plan`` (codebooks, orders, powers,
        bit order of every row) with channel (estimate) ``h [b]``."""
        b = y.shape[0]
        cbs, orders, powers, bit_order = plan
        t1 = time.perf_counter()
        if self.decoding == "hard":
            # a symbol sent with zero power carries no information and comes back as 0
            bits = demodulate(channels.equalize(y, h, powers), orders, bit_order)
            labels = pvq.bits_to_index(bits.reshape(b, -1, self._B))
            t2 = time.perf_counter()
            zs, labels = soft.decode_hard(labels, cbs, self.bundle.codebooks, self._subst)
        else:
            llr = self._llrs(y, h, powers, orders, bit_order, noise_var, error_var)
            t2 = time.perf_counter()
            zs, labels = soft.decode_soft(llr, cbs, self._soft, self.soft_estimate)
        zq = pvq.from_subvectors(zs, self._h, self._w)
        t3 = time.perf_counter()
        x = self.decode(zq, cbs)
        t4 = time.perf_counter()
        t.update(allocate=t1 - t0, demodulate=t2 - t1, dequantize=t3 - t2, decode=t4 - t3)
        return RxResult(tiles=x, labels=labels, codebooks=cbs, timings=t)

    def _llrs(self, y, h, powers, orders, bit_order, noise_var: float, error_var: float = 0.0) -> np.ndarray:
        """Bit LLRs ``[b, N, B]`` float32 of received ``y [b, T]`` under a batch of plans; ``error_var``:
        ``E|h - h_hat|^2`` when ``h`` is an estimate (its error times the unit symbol adds ``p_t
        error_var`` of noise before equalisation)."""
        y_eq = channels.equalize(y, h, powers)  # y / (h sqrt(p_t)); 0 where p_t = 0
        nv = channels.effective_noise_var(h, powers, noise_var)  # sigma^2 / (|h|^2 p_t); inf where p_t = 0
        if error_var:
            h2 = np.abs(np.asarray(h, np.complex128)) ** 2
            with np.errstate(divide="ignore"):
                nv = nv + np.where(h2 > 0, error_var / np.where(h2 > 0, h2, 1.0), np.inf)[:, None]
        return demodulate_llr(y_eq, orders, bit_order, nv, self.llr).reshape(len(y), -1, self._B)

    def bit_llrs(self, y: np.ndarray, h: np.ndarray, p_tot: float, noise_var: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The soft receiver's evidence, as :meth:`receive` computes it (with this receiver's
        ``llr`` mode, whatever its ``decoding``): ``y [b, T]``, ``h [b]`` -> (LLRs ``[b, N, B]``
        float32, positive = bit 0, 0 for bits not sent; codebooks ``[b, N]``, ``V`` = not sent)."""
        y = np.asarray(y)
        h = np.asarray(h, np.complex64)
        cbs, orders, powers, bit_order = self.plans.batch(p_tot, channel_gamma(h, noise_var))
        return self._llrs(y, h, powers, orders, bit_order, noise_var), cbs

    def receive_frame(self, frame: Frame, rng: np.random.Generator) -> np.ndarray:
        """A frame (the channel is applied with ``rng`` if it holds transmitted samples) ->
        the reconstructed ``[H, W, 3]`` uint8 image. Refuses frames of another bundle."""
        return receive_frame(self, frame, rng)[0]


def received_batches(frame: Frame, rng: np.random.Generator, max_batch: int = 256):
    """The received samples of a frame, ``max_batch`` tiles at a time: yields ``(i, j, y [j-i, T],
    y_pre [j-i, P] or None, seconds in the channel)``. A transmitted frame goes through its channel
    here (data, then the preamble: :func:`~escmvq.runtime.csi.apply_channel_csi`), batch by batch,
    the same draws in the same order as :func:`~escmvq.runtime.link.run_link`'s."""
    for i in range(0, frame.n_tiles, max_batch):
        j = min(i + max_batch, frame.n_tiles)
        y, y_pre = frame.samples[i:j], frame.preamble[i:j] if frame.estimated else None
        dt = 0.0
        if frame.kind != KIND_RX:
            t0 = time.perf_counter()
            y, y_pre = apply_channel_csi(y, y_pre, frame.h[i:j], rng, frame.noise_var)
            dt = time.perf_counter() - t0
        yield i, j, y, y_pre, dt


def receive_frame(rx: Receiver, frame: Frame, rng: np.random.Generator, max_batch: int = 256,
                  progress=None, header_failures: list | None = None) -> tuple[np.ndarray, dict, np.ndarray]:
    """A frame (transmitted: the channel is applied here; or received) -> (image uint8, timings, labels).

    Batches of ``max_batch`` tiles; the channel noise is drawn batch by batch, the same draws
    in the same order as for the whole frame at once. ``progress(k)`` after each batch.
    A frame with estimated CSI (version 3) is decoded from its pilots and plan headers alone,
    never from ``h`` (:meth:`Receiver.receive_pilots` with the frame's settings, whatever the
    receiver's ``csi``); each tile whose header failed is appended to ``header_failures`` (when
    given) as ``(tile, one-line reason)``.
    """
    rx.check_frame(frame)
    H, W = frame.image_size
    if H * W > MAX_PIXELS:  # a frame may announce up to 65536 x 65536: refuse what no input could be
        raise FrameError(f"frame holds a {W}x{H} image, more than the {MAX_PIXELS} pixel limit")
    img = np.empty((H, W, 3), np.uint8)
    timings = {"channel": 0.0}
    labels = None
    for i, j, y, y_pre, dt in received_batches(frame, rng, max_batch):
        timings["channel"] += dt
        if frame.estimated:
            r, read = rx.receive_pilots(y_pre, y, frame.p_tot, frame.noise_var, csi=frame.csi)
            if header_failures is not None:
                header_failures.extend((i + row, why) for row, why in read.failures)
        else:
            r = rx.receive(y, frame.h[i:j], frame.p_tot, frame.noise_var)
        untile_into(img, r.tiles, i, frame.grid)
        if labels is None:
            labels = np.empty((frame.n_tiles, *r.labels.shape[1:]), r.labels.dtype)
        labels[i:j] = r.labels
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        if progress is not None:
            progress(j - i)
    return img, timings, labels
