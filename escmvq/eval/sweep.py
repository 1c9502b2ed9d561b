"""The batched end-to-end PSNR-vs-SNR sweep of an ESC-MVQ bundle (Fig. 5, Fig. 8).

Everything runs on the torch-free runtime: the bundle's ONNX encoder and decoder through
ONNX Runtime, the allocator's plan derived on *both* sides from ``(P_tot, gamma)``
(transmitter: :class:`~escmvq.runtime.alloc_adapter.PlanCache`; receiver: its own
:class:`~escmvq.runtime.receiver.Receiver` with its own cache), real Gray-QAM symbols,
real complex Gaussian noise, perfect-CSI equalisation and the receiver's demodulation: hard
decisions or soft decoding (bit LLRs -> label posterior -> MMSE codeword), one setting for
every learned method of a sweep (``receiver``, recorded in each result's ``info``).

Per batch of images the encoder runs once (its output does not depend on the SNR or the
method); the transmitter's remaining stages (plan, codebook search, bits, QAM, power) are
the runtime's own ``transmitter.send_subvectors`` (via :func:`send_latent`; a test checks it gives
the same samples), and the receiver is :meth:`Receiver.receive` unchanged.

Randomness and reproducibility (``np.random.Generator`` everywhere, no global state):

- For realisation ``r`` of the batch starting at image ``start``, the fading draw comes
  from ``SeedSequence(seed, spawn_key=(r, start, 0))`` and the noise from
  ``(r, start, 1)``. Every image has its own block-fading coefficient ``h`` (Rayleigh,
  E|h|^2 = 1; AWGN: h = 1) for the whole frame.
- The same fading coefficient and the same unit-variance noise draw are used for every
  SNR point and every method (common random numbers): comparisons between methods and
  between neighbouring SNRs are paired, so their differences have less variance. The JPEG
  + LDPC baseline draws its fading from the same streams (:func:`fading`).
- Results are therefore a deterministic function of (bundle, images, SNRs, channel,
  realisations, seed, batch size).

Statistics (see :mod:`escmvq.eval.stats`): per image, the PSNR (eq. 52, 8-bit) averaged
over its ``realizations``; per SNR point, the mean over images with a Student-t 95%
interval over images (the images are the independent units).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from escmvq.eval.stats import mean_ci, psnr_batch

__all__ = ["ESC_METHODS", "CHANNELS", "fading", "noise_rng", "allocator_for", "EscLink", "send_latent",
           "MethodResult", "sweep_esc", "parse_snr_grid", "PairSet", "sweep_pairs"]

ESC_METHODS = ("jcamp", "jcap")
CHANNELS = ("awgn", "rayleigh")


def parse_snr_grid(text: str) -> list[float]:
    """``"-5:25:2.5"`` (start:stop:step, stop included when on the grid) or ``"0,5,10"``
    -> list of SNRs in dB. Raises ValueError with a one-line reason."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            a, b, s = parts
            if not s > 0 or b < a:
                raise ValueError
            n = int(np.floor((b - a) / s + 1e-9)) + 1
            vals = [round(a + k * s, 10) for k in range(n)]
        else:
            vals = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--snr: {text!r} is not START:STOP:STEP (STEP > 0, STOP >= START) or a comma list") from None
    if not vals or len(vals) > 1000:
        raise ValueError(f"--snr: {text!r} gives {len(vals)} points (1..1000 allowed)")
    if not all(np.isfinite(v) and -50.0 <= v <= 100.0 for v in vals):
        raise ValueError(f"--snr: values must be finite and within [-50, 100] dB, got {text!r}")
    return vals


def _seq(seed: int, r: int, start: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(r), int(start), int(stream))))


def fading(seed: int, channel: str, r: int, start: int, b: int) -> np.ndarray:
    """Block-fading coefficients ``[b]`` complex64 of images ``start .. start+b-1`` in
    realisation ``r``: ones for AWGN, CN(0, 1) for Rayleigh (one per image)."""
    from escmvq.core.channels import draw_h

    return draw_h(_seq(seed, r, start, 0), b, channel)


def noise_rng(seed: int, r: int, start: int) -> np.random.Generator:
    """A fresh generator of the noise stream of (realisation ``r``, batch ``start``);
    called anew for every SNR and method so all see the same draw."""
    return _seq(seed, r, start, 1)


def allocator_for(bundle, method: str):
    """The allocator of ``method`` ("jcamp" | "jcap") for ``bundle``: the bundle's own
    precomputed one when it matches, else rebuilt from the bundle's tables (``mu [V, N, B]``,
    ``distortion [V, N]``) with the bundle's rate, variant, m_max and, where the bundle's
    allocator has them, its erasure states and position-aware layout (JCAP: ~0.5 s)."""
    from escmvq.runtime.alloc_adapter import make_allocator

    if method not in ESC_METHODS:
        raise ValueError(f"method: expected one of {', '.join(ESC_METHODS)}, got {method!r}")
    spec = bundle.model.get("allocator", {})
    if spec.get("method") == method:
        return bundle.allocator
    extra = {}
    if spec.get("erasures") and bundle.erasure_distortion is not None:  # same erasure states and floor
        extra.update(erasure_distortion=bundle.erasure_distortion, erasure_floor=spec.get("erasure_floor"))
    if spec.get("positions"):
        from escmvq.core.pvq import flip_cost

        extra.update(positions=True, flip_cost=flip_cost(bundle.codebooks, bundle.label_prior))
    return make_allocator(bundle.distortion, bundle.mu, rate=bundle.rate, method=method,
                          variant=spec.get("variant", "exact"), m_max=int(bundle.model.get("m_max", 8)), **extra)


def send_latent(bundle, plans, search: np.ndarray, zs: np.ndarray, p_tot: float, h: np.ndarray,
                noise_var: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`Transmitter.send` after the encoder.

    bundle : :class:`~escmvq.runtime.bundle.Bundle`; plans : a ``PlanCache`` of the method;
    search : ``quantize.search_matrices(bundle.codebooks)`` ``[V, D+1, K]`` float32;
    zs : ``[b, N, D]`` float32 sub-vectors of the encoder output; p_tot : float > 0;
    h : ``[b]`` complex64.
    Returns (samples ``[b, T]`` complex64 ``sqrt(p_t) s_t``, codebooks ``[b, N]`` int64,
    labels ``[b, N]`` int64).
    """
    from escmvq.runtime.transmitter import send_subvectors

    return send_subvectors(zs, bundle.codebooks, search, plans, int(bundle.model["B"]), p_tot, h, noise_var)


_RX_KEYS = ("decoding", "soft_estimate", "llr", "prior")


def _rx_kwargs(receiver: dict | None) -> dict:
    """Validated Receiver keyword arguments from a ``receiver`` setting (None: defaults)."""
    receiver = dict(receiver or {})
    bad = sorted(set(receiver) - set(_RX_KEYS))
    if bad:
        raise ValueError(f"receiver: unknown setting(s) {', '.join(bad)} (expected {', '.join(_RX_KEYS)})")
    return receiver


class EscLink:
    """One ESC-MVQ method (JCAMP or JCAP) of a bundle: transmitter-side plan cache and a
    receiver with its own plan cache (the two sides derive their plans independently).

    bundle : a loaded bundle; method : "jcamp" | "jcap"; threads : ONNX Runtime intra-op
    threads of the decoder (None = its default); allocator : an allocator to use instead
    of :func:`allocator_for`'s (both sides share the object, as in the runtime);
    receiver : keyword arguments of :class:`~escmvq.runtime.receiver.Receiver`'s decoding
    (``decoding``, ``soft_estimate``, ``llr``, ``prior``; None = the runtime's defaults).
    """

    def __init__(self, bundle, method: str, threads: int | None = None, allocator=None,
                 receiver: dict | None = None):
        from escmvq.runtime.alloc_adapter import PlanCache
        from escmvq.runtime.quantize import search_matrices
        from escmvq.runtime.receiver import Receiver

        self.bundle, self.method = bundle, method
        alloc = allocator if allocator is not None else allocator_for(bundle, method)
        self.tx_plans = PlanCache(alloc, n_symbols=bundle.n_symbols, n_bits=bundle.n_bits)
        # the receiver derives its own plans (footnote 2) with this method's allocator
        self.rx = Receiver(bundle, threads=threads, allocator=alloc, **_rx_kwargs(receiver))
        self.search = search_matrices(bundle.codebooks)

    def run(self, zs: np.ndarray, h: np.ndarray, p_tot: float, rng: np.random.Generator | None,
            noise_var: float = 1.0, noise: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sub-vectors ``zs [b, N, D]`` through plan, QAM, channel ``y = h x + n`` (noise drawn
        from ``rng`` by the runtime's channel, or the given ``noise [b, T]`` complex),
        equalisation, the receiver's (hard or soft) demodulation and the decoder.

        Returns (reconstruction ``[b, th, tw, 3]`` uint8, codebooks ``[b, N]``, labels sent
        ``[b, N]``, labels received ``[b, N]``).
        """
        from escmvq.core.channels import apply_channel

        x, cbs, sent = send_latent(self.bundle, self.tx_plans, self.search, zs, p_tot, h, noise_var)
        if noise is None:
            y = apply_channel(x, h, rng, noise_var)
        else:
            y = (h[:, None] * x + noise).astype(np.complex64)
        r = self.rx.receive(y, h, p_tot, noise_var)
        rec = np.clip(np.rint(r.tiles.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
        return rec, cbs, sent, r.labels


@dataclass
class MethodResult:
    """Per-method results of a sweep over ``S`` SNR points and ``n`` images.

    psnr : ``[S, n]`` float64, per-image PSNR averaged over realisations;
    extra : per-SNR lists of JSON-able diagnostics (method-specific);
    samples : ``[S, k, th, tw, 3]`` uint8 reconstructions of the first ``k`` images
    (realisation 0), for Fig. 6; seconds : wall time spent in this method.
    """
    name: str
    psnr: np.ndarray
    extra: dict = field(default_factory=dict)
    samples: np.ndarray | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able: mean PSNR, 95% CI half-width, std and n per SNR point, plus ``extra``."""
        stats = [mean_ci(row) for row in self.psnr]
        return {
            "psnr_mean": [s["mean"] for s in stats],
            "psnr_ci95": [s["ci"] for s in stats],
            "psnr_std": [s["std"] for s in stats],
            "n_images": int(self.psnr.shape[1]),
            "seconds": self.seconds,
            **self.info,
            **self.extra,
        }


def sweep_esc(bundle, images: np.ndarray, snrs, methods=ESC_METHODS, channel: str = "rayleigh",
              realizations: int = 1, seed: int = 0, batch: int = 256, noise_var: float = 1.0,
              keep: int = 0, threads: int | None = None, progress=None, links: dict | None = None,
              receiver: dict | None = None) -> dict[str, MethodResult]:
    """PSNR-vs-SNR of a bundle with each method in ``methods``.

    bundle : a :class:`~escmvq.runtime.bundle.Bundle` (or a path);
    images : ``[n, th, tw, 3]`` uint8 with the bundle's tile size;
    snrs : ``[S]`` floats, SNR in dB per eq. (53); methods : subset of :data:`ESC_METHODS`;
    channel : "awgn" | "rayleigh"; realizations : int >= 1 (fading + noise draws per image);
    seed : int; batch : images per runtime batch; keep : reconstructions of the first
    ``keep`` images to return (``MethodResult.samples``); progress : callable(int) told the
    number of image-realisations done per method and SNR; links : ``{method: EscLink}`` to reuse
    (their receivers must have the ``receiver`` setting); receiver : the receiver setting of
    every method (:class:`EscLink`), recorded as ``info["receiver"]``.

    Returns ``{method: MethodResult}`` with, per SNR, the label error rate, the fraction of
    sub-vectors on each codebook ``[V]`` and the mean assigned codebook per sub-vector
    ``[N]`` (Fig. 8; 1-based like the paper).
    """
    from escmvq.core import pvq
    from escmvq.runtime.bundle import Bundle, load_bundle
    from escmvq.runtime.transmitter import Transmitter, snr_to_ptot

    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    images = np.asarray(images)
    th, tw = bundle.tile_size
    if images.ndim != 4 or images.shape[1:] != (th, tw, 3) or images.dtype != np.uint8:
        raise ValueError(f"images: expected [n, {th}, {tw}, 3] uint8, got {images.shape} {images.dtype}")
    n = len(images)
    if n < 1:
        raise ValueError("images: empty")
    snrs = [float(s) for s in snrs]
    if channel not in CHANNELS:
        raise ValueError(f"channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
    methods = list(methods)
    for m in methods:
        if m not in ESC_METHODS:
            raise ValueError(f"method: expected one of {', '.join(ESC_METHODS)}, got {m!r}")
    if realizations < 1 or batch < 1:
        raise ValueError("realizations and batch must be >= 1")
    V = bundle.codebooks.shape[0]
    N = int(bundle.model["N"])
    S, K = len(snrs), int(realizations)
    p_tots = [snr_to_ptot(s, bundle.n_bits, noise_var) for s in snrs]

    tx = Transmitter(bundle, threads=threads)
    links = dict(links or {})
    t_setup = {}
    for m in methods:
        if m not in links:
            t0 = time.perf_counter()
            links[m] = EscLink(bundle, m, threads=threads, receiver=receiver)
            t_setup[m] = time.perf_counter() - t0
    _same_receiver([links[m].rx for m in methods], receiver)
    psnr = {m: np.zeros((S, n)) for m in methods}
    label_err = {m: np.zeros(S) for m in methods}
    cb_sum = {m: np.zeros((S, N)) for m in methods}
    cb_use = {m: np.zeros((S, V)) for m in methods}
    secs = {m: t_setup.get(m, 0.0) for m in methods}
    k_keep = min(int(keep), n)
    samples = {m: np.zeros((S, k_keep, th, tw, 3), np.uint8) for m in methods}
    t_enc = 0.0
    for start in range(0, n, batch):
        imgs = images[start:start + batch]
        b = len(imgs)
        t0 = time.perf_counter()
        zs = pvq.to_subvectors(tx.encode(imgs.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)))
        t_enc += time.perf_counter() - t0
        for r in range(K):
            h = fading(seed, channel, r, start, b)
            for si, p_tot in enumerate(p_tots):
                for m in methods:
                    t0 = time.perf_counter()
                    rec, cbs, sent, got = links[m].run(zs, h, p_tot, noise_rng(seed, r, start), noise_var)
                    psnr[m][si, start:start + b] += psnr_batch(imgs, rec) / K
                    label_err[m][si] += float(np.count_nonzero((sent != got) & (cbs < V)))  # sent ones only
                    cb_sum[m][si] += cbs.sum(0)
                    cb_use[m][si] += np.bincount(cbs.ravel(), minlength=V)[:V]
                    if r == 0 and start < k_keep:
                        samples[m][si, start:k_keep] = rec[: k_keep - start]
                    secs[m] += time.perf_counter() - t0
                    if progress is not None:
                        progress(b)
    out = {}
    for m in methods:
        denom = float(n * K)
        res = MethodResult(
            name=m, psnr=psnr[m], samples=samples[m] if k_keep else None,
            seconds=secs[m] + t_enc / len(methods),
            info={"pairs": 1, "kind": "esc-mvq", "allocator": m, "receiver": links[m].rx.settings},
            extra={
                "label_error_rate": (label_err[m] / (denom * N)).tolist(),
                "codebook_use": (cb_use[m] / (denom * N)).tolist(),
                "mean_codebook": (cb_sum[m] / denom + 1.0).tolist(),
            },
        )
        out[m] = res
    return out


class PairSet:
    """K encoder-decoder pairs (one bundle each) serving an SNR range, as the K-pair
    baselines (ESC-SVQ per SNR level, BSC+VQ, BSC+SQ, BlindSC) need.

    bundles : K bundles (or paths); method : allocator of every pair ("jcap": fixed
    modulation R, the baselines' setting); threads : ONNX Runtime threads; receiver : the
    receiver setting of every pair (as :class:`EscLink`).

    Selection rule (per image: each has its own ``gamma``): pairs are ordered by the mean
    bit-flip probability of their first codebook, ascending (most fragile, best clean
    quality first); an image uses the first pair whose cheapest BER-matching state costs
    at most ``P_tot * gamma`` (``Allocator.thresholds[0]``, power per unit gamma), else the
    most robust pair. The transmitter knows ``gamma`` (as for ESC-MVQ); the receiver applies
    the same rule to the same ``(P_tot, gamma)``.
    """

    def __init__(self, bundles, method: str = "jcap", threads: int | None = None, names=None,
                 receiver: dict | None = None):
        from escmvq.runtime.bundle import Bundle, load_bundle
        from escmvq.runtime.transmitter import Transmitter

        bs = [b if isinstance(b, Bundle) else load_bundle(b) for b in bundles]
        if not bs:
            raise ValueError("PairSet: no bundles")
        shapes = {(b.tile_size, b.n_bits, b.n_symbols) for b in bs}
        if len(shapes) != 1:
            raise ValueError(f"PairSet: bundles disagree on tile size / L / T: {sorted(shapes)}")
        order = np.argsort([float(b.mu[0].mean()) for b in bs], kind="stable")
        self.bundles = [bs[i] for i in order]
        self.names = [str((names or [b.path.stem for b in bs])[i]) for i in order]
        self.links = [EscLink(b, method, threads=threads, receiver=receiver) for b in self.bundles]
        self.tx = [Transmitter(b, threads=threads) for b in self.bundles]
        self.costs = np.array([float(lk.tx_plans.allocator.thresholds[0]) for lk in self.links])

    def __len__(self) -> int:
        return len(self.bundles)

    @property
    def parameter_bytes(self) -> int:
        """Encoder + decoder ONNX + tables of all pairs (the memory the method needs)."""
        from escmvq.runtime.bundle import parameter_bytes

        return sum(parameter_bytes(b.manifest) for b in self.bundles)

    def choose(self, p_tot: float, gamma: np.ndarray) -> np.ndarray:
        """``gamma [b]`` float64 -> pair index ``[b]`` (into the sorted :attr:`bundles`)."""
        ok = self.costs[None, :] <= p_tot * np.asarray(gamma, np.float64)[:, None]  # [b, K]
        return np.where(ok.any(1), ok.argmax(1), len(self.bundles) - 1)


def _same_receiver(receivers, receiver: dict | None) -> None:
    """Refuse reused links whose receivers do not have the requested setting."""
    from escmvq.runtime.receiver import receiver_settings

    want = receiver_settings(**_rx_kwargs(receiver))
    for rx in receivers:
        if rx.requested != want:
            raise ValueError(f"links: a reused receiver has setting {rx.requested}, the sweep asks for {want}")


def _pair_receivers(pairs: "PairSet") -> dict:
    """``{"receiver": settings}``, plus ``receiver_per_pair`` when the pairs' effective settings
    differ (e.g. one bundle has a label prior and another has none)."""
    per = [lk.rx.settings for lk in pairs.links]
    out = {"receiver": per[0]}
    if any(p != per[0] for p in per):
        out["receiver_per_pair"] = per
    return out


def sweep_pairs(pairs: PairSet, images: np.ndarray, snrs, channel: str = "rayleigh", realizations: int = 1,
                seed: int = 0, batch: int = 256, noise_var: float = 1.0, keep: int = 0, progress=None,
                name: str = "pairs") -> MethodResult:
    """PSNR-vs-SNR of a :class:`PairSet`; arguments and randomness as :func:`sweep_esc` (same
    fading streams; the unit noise of a batch is drawn once from its noise stream and shared
    by every pair and SNR). Extras per SNR: ``label_error_rate``, ``pair_use [K]``."""
    from escmvq.core import channels, pvq
    from escmvq.core.channels import channel_gamma as gamma_of
    from escmvq.runtime.transmitter import snr_to_ptot

    b0 = pairs.bundles[0]
    images = np.asarray(images)
    th, tw = b0.tile_size
    if images.ndim != 4 or images.shape[1:] != (th, tw, 3) or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"images: expected [n, {th}, {tw}, 3] uint8, got {images.shape} {images.dtype}")
    if channel not in CHANNELS:
        raise ValueError(f"channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
    n, S, K, P = len(images), len(snrs), int(realizations), len(pairs)
    T, N = b0.n_symbols, int(b0.model["N"])
    p_tots = [snr_to_ptot(float(s), b0.n_bits, noise_var) for s in snrs]
    psnr = np.zeros((S, n))
    lerr = np.zeros(S)
    use = np.zeros((S, P))
    k_keep = min(int(keep), n)
    samples = np.zeros((S, k_keep, th, tw, 3), np.uint8)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        imgs = images[start:start + batch]
        b = len(imgs)
        x01 = imgs.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)
        zs: dict[int, np.ndarray] = {}
        for r in range(K):
            h = fading(seed, channel, r, start, b)
            gam = gamma_of(h, noise_var)
            noise = np.asarray(channels.apply(np.zeros((b, T), np.complex64), np.ones(b, np.complex64),
                                              np.ones(T), noise_rng(seed, r, start), noise_var=noise_var), np.complex64)
            for si, p_tot in enumerate(p_tots):
                pick = pairs.choose(p_tot, gam)
                rec_all = np.empty((b, th, tw, 3), np.uint8)
                for k in np.unique(pick):
                    rows = np.nonzero(pick == k)[0]
                    if k not in zs:
                        zs[k] = pvq.to_subvectors(pairs.tx[k].encode(x01))
                    rec, _, sent, got = pairs.links[k].run(zs[k][rows], h[rows], p_tot, None, noise_var,
                                                           noise=noise[rows])
                    rec_all[rows] = rec
                    lerr[si] += float(np.count_nonzero(sent != got))
                    use[si, k] += rows.size
                psnr[si, start:start + b] += psnr_batch(imgs, rec_all) / K
                if r == 0 and start < k_keep:
                    samples[si, start:k_keep] = rec_all[: k_keep - start]
                if progress is not None:
                    progress(b)
    tot = float(n * K)
    return MethodResult(
        name=name, psnr=psnr, samples=samples if k_keep else None, seconds=time.perf_counter() - t0,
        info={"pairs": P, "kind": "pair-set", "pair_names": pairs.names, "parameter_bytes": pairs.parameter_bytes,
              "pair_costs_per_unit_gamma": pairs.costs.tolist(), **_pair_receivers(pairs)},
        extra={"label_error_rate": (lerr / (tot * N)).tolist(), "pair_use": (use / tot).tolist()},
    )
