"""ESC-MVQ and K-pair links for the sweep driver (Fig. 5, Fig. 8).

Everything runs on the torch-free runtime: the bundle's ONNX encoder and decoder through
ONNX Runtime, the allocator's plan derived on *both* sides from ``(P_tot, gamma)``
(transmitter: :class:`~escmvq.runtime.alloc_adapter.PlanCache`; receiver: its own
:class:`~escmvq.runtime.receiver.Receiver` with its own cache), real Gray-QAM symbols,
real complex Gaussian noise, perfect-CSI equalisation and the receiver's demodulation: hard
decisions or soft decoding (bit LLRs -> label posterior -> MMSE codeword), one setting for
every learned method of a sweep (``receiver``, recorded in each result's ``info``).

Per batch of images the encoder runs once (its output does not depend on the SNR or the
method: JCAMP and JCAP of one bundle share it); the transmitter's remaining stages (plan,
codebook search, bits, QAM, power) are the runtime's own ``transmitter.send_subvectors``
(via :func:`send_latent`; a test checks it gives the same samples), and the receiver is
:meth:`Receiver.receive` unchanged.

:class:`EscMethod` (one allocator of a bundle) and :class:`PairSetMethod` (a K-pair
baseline) are :class:`~escmvq.eval.driver.Link` s: the loop, the random streams (the same
fading and unit noise for every SNR point and method: common random numbers) and the
statistics are :func:`~escmvq.eval.driver.simulate`'s. :func:`sweep_esc` and
:func:`sweep_pairs` are that loop with these links.
"""
from __future__ import annotations

import time

import numpy as np

from escmvq.core.vocab import ALLOCATORS, CHANNELS, check_name
from escmvq.eval.driver import BaseLink, MethodResult, check_images, fading, noise_rng, parse_snr_grid, simulate

__all__ = ["ESC_METHODS", "CHANNELS", "fading", "noise_rng", "allocator_for", "EscLink", "send_latent",
           "MethodResult", "sweep_esc", "parse_snr_grid", "PairSet", "sweep_pairs", "EscMethod", "PairSetMethod"]

ESC_METHODS = ALLOCATORS


def allocator_for(bundle, method: str):
    """The allocator of ``method`` ("jcamp" | "jcap") for ``bundle``: the bundle's own
    precomputed one when it matches, else rebuilt from the bundle's tables (``mu [V, N, B]``,
    ``distortion [V, N]``) with the bundle's rate, variant, m_max and, where the bundle's
    allocator has them, its erasure states and position-aware layout (JCAP: ~0.5 s)."""
    from escmvq.runtime.alloc_adapter import make_allocator

    check_name("method", method, ESC_METHODS)
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
                noise_var: float = 1.0, gamma: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`Transmitter.send` after the encoder.

    bundle : :class:`~escmvq.runtime.bundle.Bundle`; plans : a ``PlanCache`` of the method;
    search : ``quantize.search_matrices(bundle.codebooks)`` ``[V, D+1, K]`` float32;
    zs : ``[b, N, D]`` float32 sub-vectors of the encoder output; p_tot : float > 0;
    h : ``[b]`` complex64; gamma : ``[b]`` float64 to plan with instead of ``|h|^2/sigma^2`` (the plan
    header's quantised value under estimated CSI).
    Returns (samples ``[b, T]`` complex64 ``sqrt(p_t) s_t``, codebooks ``[b, N]`` int64,
    labels ``[b, N]`` int64).
    """
    from escmvq.runtime.transmitter import send_subvectors

    return send_subvectors(zs, bundle.codebooks, search, plans, int(bundle.model["B"]), p_tot, h, noise_var,
                           gamma=gamma)


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
                 receiver: dict | None = None, csi=None):
        from escmvq.runtime.alloc_adapter import PlanCache
        from escmvq.runtime.csi import PreambleTx, check_csi
        from escmvq.runtime.quantize import search_matrices
        from escmvq.runtime.receiver import Receiver

        self.bundle, self.method = bundle, method
        alloc = allocator if allocator is not None else allocator_for(bundle, method)
        self.tx_plans = PlanCache(alloc, n_symbols=bundle.n_symbols, n_bits=bundle.n_bits)
        # the receiver derives its own plans (footnote 2) with this method's allocator
        self.rx = Receiver(bundle, threads=threads, allocator=alloc, csi=csi, **_rx_kwargs(receiver))
        self.search = search_matrices(bundle.codebooks)
        self.csi = check_csi(csi)
        self.preamble = PreambleTx(alloc, self.csi, bundle.n_symbols) if self.csi.estimated else None
        self.header_failures = 0  # tiles whose plan header failed, over this link's life

    def run(self, zs: np.ndarray, h: np.ndarray, p_tot: float, rng: np.random.Generator | None,
            noise_var: float = 1.0, noise: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sub-vectors ``zs [b, N, D]`` through plan, QAM, channel ``y = h x + n`` (noise drawn
        from ``rng`` by the runtime's channel, or the given ``noise [b, T]`` complex),
        equalisation, the receiver's (hard or soft) demodulation and the decoder.

        Returns (reconstruction ``[b, th, tw, 3]`` uint8, codebooks ``[b, N]``, labels sent
        ``[b, N]``, labels received ``[b, N]``).
        """
        from escmvq.core.channels import apply_channel, channel_gamma

        if self.preamble is not None:  # estimated CSI: pilots + plan header, data planned with gamma_q
            if noise is not None or rng is None:
                raise ValueError("csi='pilots': the link draws its noise from rng (pair sets keep perfect CSI)")
            pre, gq = self.preamble.make(p_tot, channel_gamma(h, noise_var))
            x, cbs, sent = send_latent(self.bundle, self.tx_plans, self.search, zs, p_tot, h, noise_var, gamma=gq)
            y = apply_channel(x, h, rng, noise_var)  # the data's noise first: the same draws as perfect CSI
            r, read = self.rx.receive_pilots(apply_channel(pre, h, rng, noise_var), y, p_tot, noise_var)
            self.header_failures += int((~read.ok).sum())
            rec = np.clip(np.rint(r.tiles.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
            return rec, cbs, sent, r.labels
        x, cbs, sent = send_latent(self.bundle, self.tx_plans, self.search, zs, p_tot, h, noise_var)
        if noise is None:
            y = apply_channel(x, h, rng, noise_var)
        else:
            y = (h[:, None] * x + noise).astype(np.complex64)
        r = self.rx.receive(y, h, p_tot, noise_var)
        rec = np.clip(np.rint(r.tiles.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
        return rec, cbs, sent, r.labels


class EscMethod(BaseLink):
    """One allocator (JCAMP or JCAP) of a bundle as a sweep :class:`~escmvq.eval.driver.Link`.

    link : the :class:`EscLink` (plan caches and receiver); encoder : the bundle's
    :class:`~escmvq.runtime.transmitter.Transmitter` (its encoder output is shared by every
    method of the bundle); noise_var : sigma^2 of eq. (53); setup_s : time spent building
    ``link``. Counters per run: label errors of the sent sub-vectors, codebook sums and use.
    """

    def __init__(self, link: EscLink, encoder, noise_var: float = 1.0, setup_s: float = 0.0):
        self.link, self.encoder, self.noise_var, self.setup_s = link, encoder, float(noise_var), float(setup_s)
        self.name = link.method
        self.prepare_key = ("encoder", id(encoder))
        self.V = link.bundle.codebooks.shape[0]
        self.N = int(link.bundle.model["N"])

    def begin(self, images: np.ndarray) -> None:
        check_images(images, self.link.bundle.tile_size)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        from escmvq.core import pvq

        return pvq.to_subvectors(self.encoder.encode(images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)))

    def run(self, images, h, snr_db, rng, prepared=None):
        from escmvq.runtime.transmitter import snr_to_ptot

        zs = self.prepare(images) if prepared is None else prepared
        p_tot = snr_to_ptot(snr_db, self.link.bundle.n_bits, self.noise_var)
        failed = self.link.header_failures
        rec, cbs, sent, got = self.link.run(zs, h, p_tot, rng, self.noise_var)
        V = self.V
        out = {"label_errors": float(np.count_nonzero((sent != got) & (cbs < V))),  # sent ones only
               "codebook_sum": cbs.sum(0), "codebook_use": np.bincount(cbs.ravel(), minlength=V)[:V]}
        if self.link.csi.estimated:
            out["header_failures"] = float(self.link.header_failures - failed)
        return rec, out

    def summary(self, totals, n_transmissions):
        """Per SNR: the label error rate, the fraction of sub-vectors on each codebook ``[V]``
        and the mean assigned codebook per sub-vector ``[N]`` (Fig. 8; 1-based like the paper)."""
        denom, N = float(n_transmissions), self.N
        info = {"pairs": 1, "kind": "esc-mvq", "allocator": self.name, "receiver": self.link.rx.settings}
        extra = {}
        if self.link.csi.estimated:  # tiles decoded with every sub-vector "not sent" for want of a plan
            extra["header_failure_rate"] = [t["header_failures"] / denom for t in totals]
        return info, {**extra,
            "label_error_rate": (np.array([t["label_errors"] for t in totals]) / (denom * N)).tolist(),
            "codebook_use": (np.stack([t["codebook_use"] for t in totals]) / (denom * N)).tolist(),
            "mean_codebook": (np.stack([t["codebook_sum"] for t in totals]) / denom + 1.0).tolist(),
        }


def sweep_esc(bundle, images: np.ndarray, snrs, methods=ESC_METHODS, channel: str = "rayleigh",
              realizations: int = 1, seed: int = 0, batch: int = 256, noise_var: float = 1.0,
              keep: int = 0, threads: int | None = None, progress=None, links: dict | None = None,
              receiver: dict | None = None, csi=None) -> dict[str, MethodResult]:
    """PSNR-vs-SNR of a bundle with each method in ``methods``.

    bundle : a :class:`~escmvq.runtime.bundle.Bundle` (or a path);
    images : ``[n, th, tw, 3]`` uint8 with the bundle's tile size;
    snrs : ``[S]`` floats, SNR in dB per eq. (53); methods : subset of :data:`ESC_METHODS`;
    channel : "awgn" | "rayleigh"; realizations : int >= 1 (fading + noise draws per image);
    seed : int; batch : images per runtime batch; keep : reconstructions of the first
    ``keep`` images to return (``MethodResult.samples``); progress : callable(int) told the
    number of image-realisations done per method and SNR; links : ``{method: EscLink}`` to reuse
    (their receivers must have the ``receiver`` setting); receiver : the receiver setting of
    every method (:class:`EscLink`), recorded as ``info["receiver"]``; csi : "perfect" (default) |
    "pilots" | a :class:`~escmvq.runtime.csi.CsiConfig` for every method (then ``info["receiver"]["csi"]``
    holds the overhead and each SNR point its ``header_failure_rate``).

    Returns ``{method: MethodResult}`` with, per SNR, the label error rate, the fraction of
    sub-vectors on each codebook ``[V]`` and the mean assigned codebook per sub-vector
    ``[N]`` (Fig. 8; 1-based like the paper).
    """
    return simulate(esc_methods(bundle, images, methods, channel, realizations, batch, noise_var, threads, links,
                                receiver, csi),
                    images, snrs, channel, realizations, seed, batch, keep, progress)


def esc_methods(bundle, images, methods=ESC_METHODS, channel: str = "rayleigh", realizations: int = 1,
                batch: int = 256, noise_var: float = 1.0, threads: int | None = None, links: dict | None = None,
                receiver: dict | None = None, csi=None) -> list[EscMethod]:
    """The :class:`EscMethod` links of ``methods`` for ``bundle`` (a Bundle or a path), sharing
    one encoder; ``links`` and ``receiver`` as :func:`sweep_esc`. The arguments are checked
    before any link is built (a JCAP allocator takes about 0.5 s)."""
    from escmvq.runtime.bundle import Bundle, load_bundle
    from escmvq.runtime.transmitter import Transmitter

    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    check_images(images, bundle.tile_size)
    check_name("channel", channel, CHANNELS)
    methods = list(methods)
    for m in methods:
        check_name("method", m, ESC_METHODS)
    if realizations < 1 or batch < 1:
        raise ValueError("realizations and batch must be >= 1")
    tx = Transmitter(bundle, threads=threads)
    links = dict(links or {})
    t_setup = {}
    for m in methods:
        if m not in links:
            t0 = time.perf_counter()
            links[m] = EscLink(bundle, m, threads=threads, receiver=receiver, csi=csi)
            t_setup[m] = time.perf_counter() - t0
    _same_receiver([links[m].rx for m in methods], receiver)
    from escmvq.runtime.csi import check_csi

    if any(links[m].csi != check_csi(csi) for m in methods):
        raise ValueError(f"links: a reused link's CSI differs from the sweep's ({check_csi(csi)})")
    return [EscMethod(links[m], tx, noise_var, t_setup.get(m, 0.0)) for m in methods]


class PairSet:
    """K encoder-decoder pairs (one bundle each) serving an SNR range, as the K-pair
    baselines (ESC-SVQ per SNR level, BSC+VQ, BSC+SQ, BlindSC) need.

    bundles : K bundles (or paths); method : allocator of every pair ("jcap": fixed
    modulation R, the baselines' setting); threads : ONNX Runtime threads; receiver : the
    receiver setting of every pair (as :class:`EscLink`).

    Selection rule (per image: each has its own ``gamma``): pairs are ordered by the mean
    bit-flip probability of their first codebook, ascending (most fragile, best clean
    quality first); an image uses the first pair whose cheapest BER-matching state that
    sends every sub-vector costs at most ``P_tot * gamma`` (``Allocator.thresholds[k]``, power
    per unit gamma, ``k = Allocator.n_erasure_states``: a pair exported with erasure states
    would otherwise look affordable at any budget that pays for two sub-vectors), else the
    most robust pair (whose erasure states, if any, serve the budgets below its own). The
    transmitter knows ``gamma`` (as for ESC-MVQ); the receiver applies the same rule to the
    same ``(P_tot, gamma)``.
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
        allocs = [lk.tx_plans.allocator for lk in self.links]
        self.costs = np.array([float(a.thresholds[a.n_erasure_states]) for a in allocs])

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


class PairSetMethod(BaseLink):
    """A :class:`PairSet` as a sweep :class:`~escmvq.eval.driver.Link` named ``name``.

    Per image the pair is chosen from ``(P_tot, gamma)`` (:meth:`PairSet.choose`); a pair
    encodes a batch only when some image of it needs that pair. The unit noise of a run is
    drawn once from its generator and cut per pair, so every pair and SNR point sees the
    same draw. Counters per run: label errors and the images per pair.
    """

    def __init__(self, pairs: PairSet, name: str = "pairs", noise_var: float = 1.0):
        self.pairs, self.name, self.noise_var = pairs, name, float(noise_var)
        b0 = pairs.bundles[0]
        self.N, self.T = int(b0.model["N"]), b0.n_symbols

    def begin(self, images: np.ndarray) -> None:
        check_images(images, self.pairs.bundles[0].tile_size)

    def prepare(self, images: np.ndarray) -> dict:
        # pair index -> sub-vectors of this batch, filled on first use
        return {"x01": images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255), "zs": {}}

    def run(self, images, h, snr_db, rng, prepared=None):
        from escmvq.core import channels, pvq
        from escmvq.core.channels import channel_gamma
        from escmvq.runtime.transmitter import snr_to_ptot

        pairs, nv, b = self.pairs, self.noise_var, len(images)
        prepared = prepared if prepared is not None else self.prepare(images)
        zs = prepared["zs"]
        p_tot = snr_to_ptot(snr_db, pairs.bundles[0].n_bits, nv)
        noise = np.asarray(channels.apply(np.zeros((b, self.T), np.complex64), np.ones(b, np.complex64),
                                          np.ones(self.T), rng, noise_var=nv), np.complex64)
        pick = pairs.choose(p_tot, channel_gamma(h, nv))
        rec_all = np.empty(images.shape, np.uint8)
        lerr = 0.0
        use = np.zeros(len(pairs))
        for k in np.unique(pick):
            rows = np.nonzero(pick == k)[0]
            if k not in zs:
                zs[k] = pvq.to_subvectors(pairs.tx[k].encode(prepared["x01"]))
            rec, _, sent, got = pairs.links[k].run(zs[k][rows], h[rows], p_tot, None, nv, noise=noise[rows])
            rec_all[rows] = rec
            lerr += float(np.count_nonzero(sent != got))
            use[k] += rows.size
        return rec_all, {"label_errors": lerr, "pair_use": use}

    def summary(self, totals, n_transmissions):
        """Per SNR: ``label_error_rate`` and ``pair_use [K]`` (fraction of images per pair)."""
        pairs, tot = self.pairs, float(n_transmissions)
        info = {"pairs": len(pairs), "kind": "pair-set", "pair_names": pairs.names,
                "parameter_bytes": pairs.parameter_bytes, "pair_costs_per_unit_gamma": pairs.costs.tolist(),
                **_pair_receivers(pairs)}
        return info, {"label_error_rate": (np.array([t["label_errors"] for t in totals]) / (tot * self.N)).tolist(),
                      "pair_use": (np.stack([t["pair_use"] for t in totals]) / tot).tolist()}


def sweep_pairs(pairs: PairSet, images: np.ndarray, snrs, channel: str = "rayleigh", realizations: int = 1,
                seed: int = 0, batch: int = 256, noise_var: float = 1.0, keep: int = 0, progress=None,
                name: str = "pairs") -> MethodResult:
    """PSNR-vs-SNR of a :class:`PairSet`; arguments and randomness as :func:`sweep_esc` (same
    fading streams; the unit noise of a batch is drawn from its noise stream and shared
    by every pair and SNR). Extras per SNR: ``label_error_rate``, ``pair_use [K]``."""
    link = PairSetMethod(pairs, name, noise_var)
    return simulate([link], images, snrs, channel, realizations, seed, batch, keep, progress)[name]
