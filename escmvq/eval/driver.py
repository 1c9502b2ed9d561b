"""The one PSNR-vs-SNR sweep loop (in the manner of Sionna's ``sim_ber``) and the link protocol.

A method under test is a :class:`Link`: given a batch of images, their fading coefficients,
an SNR and a noise generator, it returns the reconstructions and a few counters. Everything
else -- the random streams, the batching, the realisations, the progress callback, the PSNR
statistics, the reconstructions kept for Fig. 6 and the timing -- is owned by
:func:`simulate`, so every method sees the same channels and is measured the same way. A new
baseline is one class with ``name``, ``run`` and ``summary`` (subclass :class:`BaseLink`).

Randomness (``np.random.Generator`` everywhere, no global state): for realisation ``r`` of
the batch starting at image ``start``, the fading comes from ``SeedSequence(seed,
spawn_key=(r, start, 0))`` (:func:`fading`) and the noise from ``(r, start, 1)``
(:func:`noise_rng`, a fresh generator for every SNR point and every link, so all of them
see the same unit-variance noise: common random numbers). Results are a deterministic
function of (links, images, SNRs, channel, realisations, seed, batch size).

Statistics (:mod:`escmvq.eval.stats`): per image, the PSNR (eq. 52, 8-bit) averaged over
the realisations; per SNR point the mean over images with a Student-t 95% interval.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Protocol, runtime_checkable

import numpy as np

from escmvq.core.vocab import CHANNELS, check_name
from escmvq.eval.stats import mean_ci, psnr_batch

__all__ = ["Link", "BaseLink", "MethodResult", "simulate", "fading", "noise_rng", "parse_snr_grid",
           "check_images"]


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


def check_images(images, tile_size: tuple[int, int] | None = None) -> np.ndarray:
    """``images`` as ``[n, H, W, 3]`` uint8 with ``n >= 1`` (and ``(H, W) == tile_size`` when
    given), else a one-line ValueError."""
    images = np.asarray(images)
    shape = "[n, H, W, 3]" if tile_size is None else f"[n, {tile_size[0]}, {tile_size[1]}, 3]"
    ok = images.ndim == 4 and images.shape[3] == 3 and images.dtype == np.uint8
    if ok and tile_size is not None:
        ok = tuple(images.shape[1:3]) == tuple(tile_size)
    if not ok:
        raise ValueError(f"images: expected {shape} uint8, got {images.shape} {images.dtype}")
    if len(images) < 1:
        raise ValueError("images: empty")
    return images


@runtime_checkable
class Link(Protocol):
    """A method under test, as :func:`simulate` drives it.

    name : the method's name in the results;
    prepare_key : links with the same non-None key share one :meth:`prepare` per batch (e.g.
    JCAMP and JCAP of one bundle share its encoder output; the time is split between them);
    setup_s : seconds spent building the link, counted in its ``seconds``.
    """

    name: str
    prepare_key: Hashable | None
    setup_s: float

    def begin(self, images: np.ndarray) -> None:
        """Once per sweep, with all ``[n, H, W, 3]`` uint8 images (check sizes, dataset statistics)."""

    def prepare(self, images: np.ndarray) -> Any:
        """Once per batch ``[b, H, W, 3]``: the work that depends on the images only."""

    def run(self, images: np.ndarray, h: np.ndarray, snr_db: float, rng: np.random.Generator,
            prepared: Any = None) -> tuple[np.ndarray, dict]:
        """Send ``images [b, H, W, 3]`` uint8 over fading ``h [b]`` complex64 at ``snr_db`` (eq. 53)
        with noise from ``rng``. Returns (reconstructions ``[b, H, W, 3]`` uint8, counters: numbers
        or arrays, summed by the driver per SNR point over batches and realisations)."""

    def summary(self, totals: list[dict], n_transmissions: int) -> tuple[dict, dict]:
        """``totals [S]`` (summed counters per SNR point), ``n_transmissions`` = images x
        realisations -> (``info``: the method's description, ``extra``: per-SNR lists)."""


class BaseLink:
    """Defaults of the optional parts of :class:`Link`: no sweep or batch preparation, no
    setup time, no counters."""

    name = "link"
    prepare_key = None
    setup_s = 0.0

    def begin(self, images: np.ndarray) -> None:
        return None

    def prepare(self, images: np.ndarray) -> Any:
        return None

    def summary(self, totals: list[dict], n_transmissions: int) -> tuple[dict, dict]:
        return {}, {}


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


def simulate(links, images: np.ndarray, snrs, channel: str = "rayleigh", realizations: int = 1, seed: int = 0,
             batch: int = 256, keep: int = 0, progress=None) -> dict[str, MethodResult]:
    """PSNR-vs-SNR of every link in ``links`` on the same channels.

    links : :class:`Link` objects with distinct names; images : ``[n, H, W, 3]`` uint8;
    snrs : ``[S]`` SNRs in dB (eq. 53); channel : "awgn" | "rayleigh"; realizations : fading +
    noise draws per image; seed : seed of every draw; batch : images per batch (the seeding
    follows the batch, so results depend on it); keep : reconstructions of the first ``keep``
    images to return (``MethodResult.samples``, realisation 0); progress : callable(int) told
    the number of images done after each link, SNR point and realisation of a batch.

    Loop order: batch, then realisation (one fading draw), then SNR point, then link.
    Returns ``{name: MethodResult}`` in the order of ``links``.
    """
    links = list(links)
    if not links or len({lk.name for lk in links}) != len(links):
        raise ValueError(f"links: expected distinct names, got {[lk.name for lk in links]}")
    check_name("channel", channel, CHANNELS)
    if realizations < 1 or batch < 1:
        raise ValueError("realizations and batch must be >= 1")
    images = check_images(images)
    for lk in links:
        lk.begin(images)
    snrs = [float(s) for s in snrs]
    n, S, K = len(images), len(snrs), int(realizations)
    k_keep = min(int(keep), n)
    psnr = {lk.name: np.zeros((S, n)) for lk in links}
    totals: dict[str, list[dict]] = {lk.name: [{} for _ in range(S)] for lk in links}
    samples = {lk.name: np.zeros((S, k_keep, *images.shape[1:]), np.uint8) for lk in links}
    secs = {lk.name: float(lk.setup_s) for lk in links}
    groups: dict[Hashable, list] = {}  # links sharing one prepare() per batch
    for lk in links:
        key = lk.prepare_key if lk.prepare_key is not None else ("link", lk.name)
        groups.setdefault(key, []).append(lk)
    for start in range(0, n, batch):
        imgs = images[start:start + batch]
        b = len(imgs)
        prepared = {}
        for group in groups.values():
            t0 = time.perf_counter()
            state = group[0].prepare(imgs)
            share = (time.perf_counter() - t0) / len(group)
            for lk in group:
                prepared[lk.name] = state
                secs[lk.name] += share
        for r in range(K):
            h = fading(seed, channel, r, start, b)
            for si, snr in enumerate(snrs):
                for lk in links:
                    t0 = time.perf_counter()
                    rec, counters = lk.run(imgs, h, snr, noise_rng(seed, r, start), prepared[lk.name])
                    psnr[lk.name][si, start:start + b] += psnr_batch(imgs, rec) / K
                    acc = totals[lk.name][si]
                    for k, v in counters.items():
                        acc[k] = acc.get(k, 0.0) + v
                    if r == 0 and start < k_keep:
                        samples[lk.name][si, start:k_keep] = rec[: k_keep - start]
                    secs[lk.name] += time.perf_counter() - t0
                    if progress is not None:
                        progress(b)
    out = {}
    for lk in links:
        info, extra = lk.summary(totals[lk.name], n * K)
        out[lk.name] = MethodResult(name=lk.name, psnr=psnr[lk.name], extra=extra,
                                    samples=samples[lk.name] if k_keep else None, seconds=secs[lk.name], info=info)
    return out
