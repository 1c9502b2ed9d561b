"""One evaluation run as a library call: what ``escmvq eval`` does, for a Python caller.

:func:`run_eval` loads the bundle and the test images, sweeps every requested method over
the same channels (:mod:`escmvq.eval.driver`), builds the ``escmvq-eval`` result document
(the format :mod:`escmvq.eval.merge` reads) and writes the requested files (JSON, Figs. 3,
5-8), each atomically. ``escmvq eval`` only parses its options into an :class:`EvalConfig`,
calls :func:`run_eval` and prints the table.

Example (the first command of the evaluation docs, from Python)::

    from escmvq.eval.run import EvalConfig, run_eval
    res = run_eval(EvalConfig(methods=("jcamp", "jcap"), snr_db=[-5.0, 10.0], images=200))
    res.doc["methods"]["jcamp"]["psnr_mean"]
"""
from __future__ import annotations

import glob
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from escmvq.core.channels import snr_db_to_es_eb
from escmvq.core.vocab import (ALLOCATORS, CHANNELS, CSI_MODES, EVAL_DATASETS, EVAL_METHODS, JPEG_ENERGIES, JPEG_HEADERS,
                               JPEG_LDPC, check_name)

__all__ = ["EvalConfig", "EvalResult", "run_eval", "write_result", "parse_pair_spec", "json_safe",
           "JPEG_LDPC_RECEIVER", "DEFAULT_SNR_GRID"]

DEFAULT_SNR_GRID = "-5:25:2.5"
# JPEG + LDPC keeps its own receiver whatever the learned methods' decoding is
JPEG_LDPC_RECEIVER = {"decoding": "ldpc", "estimate": "belief propagation (Sionna 5G NR LDPC5GDecoder, hard output)",
                      "llr": "maxlog", "prior": None}
# reconstructions kept per SNR point for Fig. 6
GRID_IMAGES = 8


def _default_snrs() -> list[float]:
    from escmvq.eval.driver import parse_snr_grid

    return parse_snr_grid(DEFAULT_SNR_GRID)


@dataclass
class EvalConfig:
    """Everything ``escmvq eval`` takes (see ``escmvq eval --help`` for each option).

    bundle : bundle folder (None: the shipped model); methods : subset of
    :data:`~escmvq.core.vocab.EVAL_METHODS`; pairs : ``{name: [bundle folders]}``, one K-pair
    baseline each (:func:`parse_pair_spec` reads ``NAME=GLOB``); snr_db : SNR grid in dB (eq. 53);
    images : test images (tiles for Kodak); realizations : fading + noise draws per image;
    batch : images per runtime batch (the seeding follows it); threads : ONNX Runtime / torch
    intra-op threads; decoding : the receiver of every learned method ("hard" | "soft"; None:
    the runtime's default); csi, pilots : how the learned ESC-MVQ methods' receivers know the
    channel ("perfect" | "pilots", :mod:`escmvq.runtime.csi`; pair sets and JPEG+LDPC keep perfect
    CSI, so "pilots" is refused with them); jpeg_* : the JPEG + LDPC link (:class:`~escmvq.eval.jpeg_ldpc.JpegLdpc`);
    json .. mu_cdf : output files (None: not written); command : recorded in the document.
    """
    bundle: Optional[Path] = None
    methods: tuple = ALLOCATORS
    channel: str = "rayleigh"
    snr_db: list = field(default_factory=_default_snrs)
    dataset: str = "cifar10"
    images: int = 1000
    realizations: int = 1
    seed: int = 0
    data_dir: Optional[Path] = None
    batch: int = 256
    threads: Optional[int] = None
    decoding: Optional[str] = None
    csi: str = "perfect"
    pilots: int = 8
    jpeg_symbol_factor: int = 8
    jpeg_energy: str = "total"
    jpeg_headers: str = "stripped"
    pairs: dict = field(default_factory=dict)
    json_out: Optional[Path] = None
    plot: Optional[Path] = None
    bars: Optional[Path] = None
    grid: Optional[Path] = None
    grid_snr: float = 10.0
    heatmap: Optional[Path] = None
    mu_cdf: Optional[Path] = None
    force: bool = False
    command: str = "escmvq.eval.run.run_eval"

    def outputs(self) -> list[Path]:
        """The output files requested, in the order they are written."""
        return [p for p in (self.json_out, self.plot, self.bars, self.grid, self.heatmap, self.mu_cdf) if p is not None]

    def validate(self) -> None:
        """A one-line ValueError for the first bad setting (nothing is loaded or run)."""
        if not self.methods or any(m not in EVAL_METHODS for m in self.methods):
            raise ValueError(f"methods: expected a subset of {', '.join(EVAL_METHODS)}, got {list(self.methods)}")
        check_name("--channel", self.channel, CHANNELS)
        check_name("--dataset", self.dataset, EVAL_DATASETS)
        if not self.snr_db:
            raise ValueError("snr_db: no SNR points")
        if self.images < 1 or self.realizations < 1 or self.batch < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError("--images, --realizations, --batch and --threads must be >= 1")
        if self.jpeg_symbol_factor < 1:
            raise ValueError("--jpeg-symbol-factor must be >= 1")
        check_name("--jpeg-energy", self.jpeg_energy, JPEG_ENERGIES)
        check_name("--jpeg-headers", self.jpeg_headers, JPEG_HEADERS)
        check_name("--csi", self.csi, CSI_MODES)
        if isinstance(self.pilots, bool) or int(self.pilots) != self.pilots or not 1 <= self.pilots <= 4096:
            raise ValueError(f"--pilots: expected an int in 1..4096, got {self.pilots!r}")
        if self.csi != "perfect" and (self.pairs or JPEG_LDPC in self.methods):
            raise ValueError("--csi pilots: supported for jcamp and jcap only (pair sets and jpeg-ldpc keep perfect CSI)")
        for name, paths in self.pairs.items():
            if not name or name in EVAL_METHODS:
                raise ValueError(f"--pairs: expected a new method NAME, got {name!r}")
            if not paths:
                raise ValueError(f"--pairs {name}: no bundle folders")
        outs = self.outputs()
        if len(set(map(str, outs))) != len(outs):
            raise ValueError("output paths must differ")
        if self.heatmap is not None and not any(m in ALLOCATORS for m in self.methods):
            raise ValueError("--heatmap needs jcamp or jcap in --methods")


@dataclass
class EvalResult:
    """doc : the ``escmvq-eval`` document (JSON-able, as written to ``config.json_out``);
    results : ``{method: MethodResult}`` (per-image PSNR, kept reconstructions);
    images : ``[n, th, tw, 3]`` uint8 test images; bundle : the loaded bundle;
    written : the output files written."""
    doc: dict
    results: dict
    images: np.ndarray
    bundle: object
    written: list


def parse_pair_spec(spec: str) -> tuple[str, list[str]]:
    """``NAME=GLOB`` -> ``(NAME, sorted matching bundle folders)``; a one-line ValueError when
    the form is wrong, NAME is an existing method or nothing matches."""
    name, sep, pattern = spec.partition("=")
    name, pattern = name.strip(), pattern.strip()
    if not sep or not name or not pattern or name in EVAL_METHODS:
        raise ValueError(f"--pairs: expected NAME=GLOB with a new NAME, got {spec!r}")
    found = sorted(glob.glob(pattern))
    if not found:
        raise ValueError(f"--pairs {name}: no bundle folder matches {pattern!r}")
    return name, found


def json_safe(x):
    """JSON-safe: inf/nan -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_result(doc: dict, json_out=None, plot=None, bars=None, force: bool = False,
                 title: Optional[str] = None) -> None:
    """Write an eval result (:func:`run_eval`'s or a merged one) as JSON, Fig. 5 and Fig. 7,
    each atomically; None skips that output."""
    from escmvq.eval import figures
    from escmvq.runtime.files import atomic_write

    if json_out is not None:
        atomic_write(json_out, lambda p: p.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n"), force)
    if plot is not None:
        atomic_write(plot, lambda p: figures.fig5_psnr_snr(doc, p, title), force)
    if bars is not None:
        atomic_write(bars, lambda p: figures.fig7_bars(doc, p, title), force)


def run_eval(config: EvalConfig, progress=None) -> EvalResult:
    """Run the end-to-end sweep of ``config`` and write its outputs.

    Real QAM, real noise, the receiver's hard or soft decoding (the same for every learned
    method; JPEG+LDPC keeps its LDPC decoder), the allocator's plan on both sides; mean PSNR
    with a 95% confidence interval per SNR point. Output files are checked before any work.

    progress : callable(description, images_done, total) (None: silent); told ``0`` when a
    method starts, then the images done after each SNR point and realisation of a batch.
    Returns an :class:`EvalResult`.
    """
    from escmvq.eval.datasets import load_images
    from escmvq.runtime.bundle import load_bundle, parameter_bytes
    from escmvq.runtime.files import check_output
    from escmvq.runtime.receiver import DEFAULT_DECODING, receiver_settings
    from escmvq.runtime.threads import limit_blas_threads

    cfg = config
    cfg.validate()
    for p in cfg.outputs():  # fail before any work
        check_output(p, cfg.force)
    limit_blas_threads(1)
    t_start = time.perf_counter()
    b = load_bundle(cfg.bundle)
    imgs = load_images(cfg.dataset, cfg.images, b.tile_size, cfg.data_dir)
    snrs = [float(s) for s in cfg.snr_db]
    meths = list(dict.fromkeys(cfg.methods))
    esc = [m for m in meths if m in ALLOCATORS]
    total = len(imgs) * cfg.realizations * len(snrs) * (len(meths) + len(cfg.pairs))
    keep = GRID_IMAGES if cfg.grid is not None else 0
    rx_opts = {"decoding": cfg.decoding or DEFAULT_DECODING}  # one receiver setting for every learned method
    common = dict(channel=cfg.channel, realizations=cfg.realizations, seed=cfg.seed, batch=cfg.batch, keep=keep)

    def step(description):
        if progress is None:
            return None
        progress(description, 0, total)
        return lambda k: progress(description, k, total)

    results = {}
    from escmvq.runtime.csi import CsiConfig

    csi = CsiConfig(mode=cfg.csi, pilots=int(cfg.pilots))
    if esc:
        from escmvq.eval.sweep import sweep_esc

        results.update(sweep_esc(b, imgs, snrs, esc, threads=cfg.threads, progress=step("+".join(esc)),
                                 receiver=rx_opts, csi=csi, **common))
    if JPEG_LDPC in meths:
        from escmvq.eval.jpeg_ldpc import sweep_jpeg_ldpc

        results[JPEG_LDPC] = sweep_jpeg_ldpc(
            imgs, snrs, progress=step(JPEG_LDPC), n_bits=b.n_bits, n_symbols=b.n_symbols,
            symbol_factor=cfg.jpeg_symbol_factor, energy=cfg.jpeg_energy, headers=cfg.jpeg_headers,
            threads=cfg.threads, **common)
        results[JPEG_LDPC].info["receiver"] = dict(JPEG_LDPC_RECEIVER)
    for name, paths in cfg.pairs.items():
        from escmvq.eval.sweep import PairSet, sweep_pairs

        tell = step(name)
        ps = PairSet(paths, threads=cfg.threads, receiver=rx_opts)
        if ps.bundles[0].tile_size != b.tile_size:
            raise ValueError(f"--pairs {name}: tile size {ps.bundles[0].tile_size} differs from the bundle's")
        results[name] = sweep_pairs(ps, imgs, snrs, progress=tell, name=name, **common)
        meths.append(name)
    elapsed = time.perf_counter() - t_start
    model_bytes = parameter_bytes(b.manifest)
    summaries = {}
    for m in meths:
        s = results[m].summary()
        s["transmissions_per_s"] = len(imgs) * cfg.realizations * len(snrs) / max(results[m].seconds, 1e-9)
        if m in ALLOCATORS:
            s["parameter_bytes"] = model_bytes
        summaries[m] = s
    doc = json_safe({
        "format": "escmvq-eval", "version": 1, "command": cfg.command,
        "bundle": {"path": str(b.path), "hash": b.hash_hex, "tile_size": list(b.tile_size),
                   "V": int(b.model["V"]), "N": int(b.model["N"]), "B": int(b.model["B"]), "T": b.n_symbols,
                   "allocator": b.model.get("allocator"), "source_checkpoint": b.manifest.get("source_checkpoint")},
        "dataset": cfg.dataset, "n_images": int(len(imgs)), "realizations": cfg.realizations, "channel": cfg.channel,
        "seed": cfg.seed, "batch": cfg.batch, "snr_db": snrs,
        # (53) per label bit: Eb/N0 = SNR; per channel use: Es/N0 = SNR + 10 log10(N*B / T)
        "es_n0_db": [float(v) for v in snr_db_to_es_eb(np.asarray(snrs, np.float64), b.n_bits, b.n_symbols)[0]],
        "eb_n0_db": [float(v) for v in snrs],
        "elapsed_s": elapsed,
        "receiver": receiver_settings(**rx_opts),
        # the learned ESC-MVQ methods' channel knowledge; the overhead per tile (pilots + plan header
        # channel uses) depends on each method's allocator (its state count sizes the header)
        "csi": {"mode": csi.mode, "pilots": csi.pilots if csi.estimated else None,
                "overhead_channel_uses_per_tile": {m: results[m].info["receiver"].get("csi", {}).get(
                    "overhead_channel_uses", 0) for m in esc}},
        "throughput_unit": "transmissions_per_s = images x realisations x SNR points per second of that method",
        "statistic": "mean over images of the per-image PSNR (8-bit, eq. 52) averaged over realisations; "
                     "ci95 = Student-t half-width over images",
        "methods": summaries,
    })
    _write_outputs(cfg, doc, results, imgs, b, snrs, esc, keep)
    return EvalResult(doc=doc, results=results, images=imgs, bundle=b, written=cfg.outputs())


def _write_outputs(cfg: EvalConfig, doc: dict, results: dict, imgs, b, snrs, esc, keep) -> None:
    """JSON, Figs. 5 and 7, then Fig. 6 (reconstructions at the SNR nearest ``grid_snr``),
    Fig. 8 (JCAMP's mean codebook, else the first learned method's) and Fig. 3 (the bundle's mu)."""
    from escmvq.eval import figures
    from escmvq.runtime.files import atomic_write

    write_result(doc, cfg.json_out, cfg.plot, cfg.bars, cfg.force)
    methods = list(doc["methods"])
    if cfg.grid is not None:
        si = int(np.argmin(np.abs(np.asarray(snrs) - cfg.grid_snr)))
        recs = {m: results[m].samples[si] for m in methods}
        title = f"{cfg.dataset}, {cfg.channel}, SNR {snrs[si]:g} dB (seed {cfg.seed})"
        atomic_write(cfg.grid, lambda p: figures.fig6_grid(imgs[:keep], recs, p, title), cfg.force)
    if cfg.heatmap is not None:
        hm = "jcamp" if "jcamp" in esc else esc[0]
        atomic_write(cfg.heatmap, lambda p: figures.fig8_codebook_heatmap(
            doc["methods"][hm]["mean_codebook"], snrs, p, f"Mean assigned codebook ({hm.upper()}, {cfg.channel})"),
            cfg.force)
    if cfg.mu_cdf is not None:
        atomic_write(cfg.mu_cdf, lambda p: figures.fig3_mu_cdf(b.mu, p), cfg.force)
