"""``escmvq export``: checkpoint -> self-checked bundle folder.

Everything is written into a temporary folder beside the target and renamed into place
only after the self-check passed, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from escmvq.export.onnx_export import MAX_OPSET, DecoderGraph, EncoderGraph, ExportError, export_graph, torch_forward
from escmvq.runtime.bundle import decoder_feed, graph_file

__all__ = ["export_checkpoint", "ExportResult", "ExportError"]


@dataclass
class ExportResult:
    path: Path
    hash: str
    rows: list = field(default_factory=list)
    int8: dict | None = None
    trt: dict | None = None
    manifest: dict | None = None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _psnr01(a, b) -> float:
    from escmvq.runtime.images import psnr

    return psnr(np.clip(a, 0, 1), b, 1.0)


def export_checkpoint(ckpt_path: str | Path, out: str | Path, calib_source: str | Path, *, n_calib: int = 256,
                      n_check: int = 64, rate: int = 4, method: str = "jcamp", variant: str = "exact",
                      m_max: int = 8, int8: bool = False, trt: bool = False, force: bool = False, seed: int = 0,
                      opset: int = MAX_OPSET, stats_source: str | Path | None = None, n_stats: int = 10000,
                      erasures: bool = True, positions: bool = False, decoding: str | None = None,
                      distortion_for: str = "hard", robust_targets=(), log=_log) -> ExportResult:
    """``stats_source``: training images (same formats as ``calib_source``) for the label prior,
    the erasure substitute and its distortion (:mod:`escmvq.export.stats`); None: none (the
    bundle then has no prior and no erasure states). ``erasures``: give the exact allocator
    its "not sent" states (needs ``stats_source``). ``positions``: the per-position power
    model and the flip-cost bit layout (exact variant; see ``Allocator``). ``decoding``:
    the receiver decoding to recommend ("hard" | "soft", manifest ``receiver``; what a
    receiver with ``decoding="auto"`` uses); None: none (such receivers decode hard).
    ``distortion_for``: the receiver the allocator's distortion table (31) assumes: "hard"
    (the paper's: the checkpoint's table) or "soft" (recomputed on the ``stats_source``
    latents with the posterior-mean reconstruction under the label prior,
    :func:`escmvq.core.pvq.distortion_table`); the erasure floor is then chosen on the soft
    receiver's distortions too (:func:`escmvq.core.alloc.erasures.choose_erasure_floor`).
    ``robust_targets``: ascending BER targets in (0, 0.5) above the last codebook's mu; each
    adds an allocator row that sends the last codebook at that target (per bit the larger of
    the two), its distortion (31) computed for the soft receiver (needs ``stats_source``). The
    rows reuse the last codebook's codewords and prior, and the decoder is told the last
    codebook for them (manifest ``model.decoder_codebook``): only the allocator's choices
    change. Empty: none (the paper's V rows)."""
    import torch

    from escmvq.core import pvq
    from escmvq.export import bundle_writer as bw
    from escmvq.export.calibration import load_calibration
    from escmvq.export.verify import self_check
    from escmvq.runtime.alloc_adapter import make_allocator
    from escmvq.runtime.backends import make_session
    from escmvq.runtime.bundle import RECOMMENDED_DECODINGS
    from escmvq.training.checkpoint import load_checkpoint

    if decoding is not None and decoding not in RECOMMENDED_DECODINGS:
        raise ValueError(f"decoding: expected one of {', '.join(RECOMMENDED_DECODINGS)}, got {decoding!r}")
    if decoding == "soft" and stats_source is None:
        raise ValueError("decoding 'soft' needs the label prior: give training images for the statistics")
    if distortion_for not in ("hard", "soft"):
        raise ValueError(f"distortion_for: expected hard or soft, got {distortion_for!r}")
    if distortion_for == "soft" and stats_source is None:
        raise ValueError("a distortion table for the soft receiver needs the label prior: give training images "
                         "for the statistics")
    robust_targets = tuple(float(t) for t in robust_targets)
    if robust_targets and stats_source is None:
        raise ValueError("robust targets need the label prior: give training images for the statistics")
    if any(not 0 < t < 0.5 for t in robust_targets) or list(robust_targets) != sorted(set(robust_targets)):
        raise ValueError(f"robust targets: expected ascending distinct values in (0, 0.5), got {list(robust_targets)}")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists (pass --force to overwrite)")
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    if opset > MAX_OPSET:
        raise ExportError(f"opset {opset} is above {MAX_OPSET} (TensorRT 8.6 on JetPack 6)")
    if trt:
        from escmvq.export.tensorrt import import_tensorrt

        import_tensorrt()  # fail before any work, with the one-line how-to
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    model, ckpt = load_checkpoint(ckpt_path)
    preset = model.preset
    norm = ckpt.get("normalisation") or {"mean": [0.5] * 3, "std": [0.5] * 3}
    mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
    th, tw = (int(v) for v in ckpt.get("image_size", preset.image_size))
    D, h, w = (int(v) for v in ckpt.get("latent_shape", (preset.D, *preset.latent_hw)))
    codebooks = np.asarray(ckpt["codebooks"], np.float32)
    mu = np.asarray(ckpt["mu"], np.float32)
    V, K, _ = codebooks.shape
    N, B = h * w, preset.B
    if (N * B) % rate:
        raise ExportError(f"rate {rate} does not divide L = N*B = {N * B}")
    T = N * B // rate

    images = load_calibration(calib_source, (th, tw), n_calib + n_check, rng)
    if len(images) < 2:
        raise ExportError(f"{calib_source}: need at least 2 calibration tiles, got {len(images)}")
    n_check = min(n_check, len(images) // 2)
    check, calib = images[:n_check], images[n_check:]

    enc_graph = EncoderGraph(model.encoder, mean, std).eval()
    dec_graph = DecoderGraph(model.decoder, mean, std).eval()
    C = preset.cond_channels  # reliability-aware decoder: second input cond [b, V+1, h, w]
    dec_example = (torch.zeros(1, D, h, w), torch.zeros(1, C, h, w)) if C else torch.zeros(1, D, h, w)
    dec_inputs = ("z", "cond") if C else "z"
    dec_role = ("decoder: z [b,D,h,w], cond [b,V+1,h,w] (one-hot codebook of each sub-vector, V = not sent) "
                "-> x01_hat [b,3,4h,4w]") if C else "decoder: z [b,D,h,w] -> x01_hat [b,3,4h,4w]"

    distortion = ckpt.get("distortion")
    if distortion is None:
        log("checkpoint has no distortion table (31): computing it on the calibration images")
        zs = pvq.to_subvectors(torch_forward(enc_graph, images))
        distortion = pvq.distortion_table([zs], codebooks, mu)
        dist_source = f"calibration images ({len(images)} tiles of {calib_source})"
    else:
        distortion = np.asarray(distortion, np.float64)
        dist_source = "checkpoint (training set)"

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        meta = {"escmvq.format": "escmvq-bundle", "escmvq.tile_size": f"{th}x{tw}",
                "escmvq.normalisation": f"mean={mean} std={std} (folded in)"}
        onnx_info = {
            graph_file("encoder"): export_graph(enc_graph, torch.from_numpy(check[:1]), tmp / graph_file("encoder"), "x01", "z",
                                         opset, {**meta, "escmvq.role": "encoder: x01 [b,3,H,W] in [0,1] -> z [b,D,H/4,W/4]"}),
            graph_file("decoder"): export_graph(dec_graph, dec_example, tmp / graph_file("decoder"), dec_inputs, "x01_hat",
                                                opset, {**meta, "escmvq.role": dec_role}),
        }
        log(f"exported ONNX (opset {onnx_info[graph_file('encoder')]['opset']}, dynamic batch/height/width)")

        enc_sess = make_session(tmp / graph_file("encoder"))
        dec_sess = make_session(tmp / graph_file("decoder"))
        stats, stats_info, zs_stats = None, None, None
        if stats_source is not None:
            from escmvq.export.stats import encode_latents, latent_statistics

            tiles = load_calibration(stats_source, (th, tw), n_stats, np.random.default_rng(seed + 1))
            zs_stats = encode_latents(enc_sess, tiles)
            stats = latent_statistics(zs_stats, codebooks)
            stats_info = {"source": Path(stats_source).name, "images": stats["n_images"]}
            log(f"training-set statistics (label prior, substitute, erasure distortion) from {len(tiles)} tiles")
        elif erasures and variant == "exact":
            log("no --stats images: the bundle gets no label prior and no erasure states")
        if distortion_for == "soft":
            distortion = pvq.distortion_table(_chunks(zs_stats),
                                              codebooks, mu, stats["label_prior"], receiver="soft")
            dist_source = (f"soft receiver: posterior-mean reconstruction under the label prior, "
                           f"{len(zs_stats)} tiles of {stats_info['source']}")
            log(f"distortion table (31) for the soft receiver from {len(zs_stats)} tiles")
        codebooks_a, mu_a, decoder_codebook = codebooks, mu, None
        if robust_targets:
            codebooks_a, mu_a, distortion, stats = _robust_rows(codebooks, mu, distortion, stats, zs_stats, robust_targets)
            decoder_codebook = list(range(V)) + [V - 1] * len(robust_targets)
            log(f"robust rows: codebook {V} also sent at BER targets {', '.join(f'{t:g}' for t in robust_targets)} "
                f"(mean D (31) for the soft receiver {', '.join(f'{d:.3g}' for d in distortion[V:].mean(1))})")
        alloc_kw, pos_kw = {}, {}
        if positions and variant == "exact":
            pos_kw = {"positions": True, "flip_cost": pvq.flip_cost(codebooks_a, None if stats is None else stats["label_prior"])}
            alloc_kw["positions"] = True
        if erasures and variant == "exact" and stats is not None:
            from escmvq.core.alloc.erasures import choose_erasure_floor

            de = stats["erasure_distortion"]
            alloc = make_allocator(distortion, mu_a, rate=rate, method=method, variant=variant, m_max=m_max,
                                   erasure_distortion=de, **pos_kw)
            soft_floor = distortion_for == "soft" or bool(robust_targets)
            floor, rows = choose_erasure_floor(alloc, zs_stats[:1000], codebooks_a, stats["latent_mean"],
                                               label_prior=stats["label_prior"] if soft_floor else None)
            alloc_kw.update({"erasures": True, "erasure_floor": floor, "erasure_floor_grid": rows})
            log(f"erasure floor: keep all sub-vectors (scaled) from P_tot*gamma = {floor:.4g} "
                f"(cheapest all-sent state {alloc.prefix_cost_range()[1]:.4g})")
            alloc = make_allocator(distortion, mu_a, rate=rate, method=method, variant=variant, m_max=m_max,
                                   erasure_distortion=de, erasure_floor=floor, **pos_kw)
        else:
            alloc = make_allocator(distortion, mu_a, rate=rate, method=method, variant=variant, m_max=m_max, **pos_kw)
        bw.write_tables(tmp, codebooks_a, mu_a, distortion, stats)
        bw.write_allocator(tmp, alloc.state())
        rows = self_check(model, enc_graph, dec_graph, enc_sess, dec_sess, check, codebooks)

        int8_info = None
        if int8:
            from escmvq.export.int8 import quantize_int8

            quantize_int8(tmp / graph_file("encoder"), tmp / graph_file("encoder", "int8"), "x01", calib)
            zc = pvq.to_subvectors(enc_sess.run(None, {"x01": calib})[0])
            feeds = [decoder_feed(pvq.from_subvectors(codebooks[v][pvq.nearest_codeword(zc, codebooks[v])], h, w),
                                  v, V, bool(C)) for v in range(V)]
            sel = rng.permutation(len(zc) * V)[:len(calib)]
            quantize_int8(tmp / graph_file("decoder"), tmp / graph_file("decoder", "int8"), "z",
                          {k: np.concatenate([f[k] for f in feeds])[sel] for k in feeds[0]})
            int8_info = _int8_cost(tmp, enc_sess, dec_sess, check, codebooks, h, w, bool(C))
            int8_info["calibration_tiles"] = int(len(calib))
            log(f"int8: PSNR {int8_info['psnr_fp32_db']:.2f} dB (fp32) -> {int8_info['psnr_int8_db']:.2f} dB (int8), "
                f"cost {int8_info['psnr_cost_db']:.2f} dB (codebook 1, no bit errors, {n_check} held-out tiles)")

        trt_info = None
        if trt:
            from escmvq.export.tensorrt import build_engine

            enc_e, dec_e = graph_file("encoder", "fp16", engine=True), graph_file("decoder", "fp16", engine=True)
            trt_info = {
                enc_e: build_engine(tmp / graph_file("encoder"), tmp / enc_e, "x01",
                                    (1, 3, th, tw), (1, 3, th, tw), (256, 3, th, tw)),
                dec_e: build_engine(tmp / graph_file("decoder"), tmp / dec_e, "z",
                                    (1, D, h, w), (1, D, h, w), (256, D, h, w),
                                    extra_inputs={"cond": ((1, C, h, w), (1, C, h, w), (256, C, h, w))} if C else None),
            }

        del enc_sess, dec_sess
        manifest = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source_checkpoint": {"name": Path(ckpt_path).name, "sha256": bw.sha256_file(ckpt_path),
                                  "dataset": ckpt.get("dataset"), "stage": ckpt.get("stage"), "epoch": ckpt.get("epoch")},
            "model": {
                "tile_size": [th, tw], "latent_shape": [D, h, w], "V": len(codebooks_a), "K": K, "D": D, "N": N, "B": B,
                "rate": rate, "T": T, "L": N * B, "m_max": m_max,
                "allocator": {"method": method, "variant": variant, **alloc_kw},
                "statistics": stats_info,
                "normalisation": {"mean": mean, "std": std, "folded_into_onnx": True},
                "codebook_order": "index 0 = lowest mu",
                "quantizer": "numpy float32, ||z||^2 - 2 z.c + ||c||^2, argmin (ties to the lowest index)",
                "distortion_source": dist_source,
                "label_bits": "MSB first; flat bit i*B + j",
                **({"decoder_cond": preset.decoder_cond} if C else {}),
                **({"robust_targets": list(robust_targets), "decoder_codebook": decoder_codebook} if robust_targets else {}),
            },
            "onnx": onnx_info,
            "preset": {k: (list(v) if isinstance(v, tuple) else v) for k, v in ckpt["preset"].items()},
            "versions": bw.library_versions(),
            "self_check": {"images": f"{n_check} tiles of {calib_source}", "rows": [r.as_dict() for r in rows]},
            "int8": int8_info,
            "tensorrt": trt_info,
            **({"receiver": {"decoding": decoding}} if decoding else {}),
        }
        if not all(r.ok for r in rows):
            bad = ", ".join(r.name for r in rows if not r.ok)
            err = ExportError(f"self-check failed (ONNX Runtime vs PyTorch): {bad}")
            err.rows = rows
            raise err
        digest, manifest = bw.write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.chmod(0o755)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(path=out, hash=digest.hex(), rows=rows, int8=int8_info, trt=trt_info, manifest=manifest)


def _chunks(zs: np.ndarray, n: int = 500):
    """``zs`` in batches of ``n`` rows (what :func:`escmvq.core.pvq.distortion_table` takes)."""
    return (zs[i:i + n] for i in range(0, len(zs), n))


def _robust_rows(codebooks, mu, distortion, stats, zs_stats, targets):
    """The allocator's tables with one more row per robust target: the last codebook's codewords,
    prior and mu raised to the target, distortion (31) for the soft receiver on ``zs_stats``.
    Returns ``(codebooks [V+E, K, D], mu [V+E, N, B], distortion [V+E, N], stats)``."""
    from escmvq.core import pvq

    E = len(targets)
    last = np.repeat(codebooks[-1:], E, axis=0)
    mu_r = np.stack([np.maximum(mu[-1], t) for t in targets]).astype(mu.dtype)
    prior_r = np.repeat(stats["label_prior"][-1:], E, axis=0)
    d_r = pvq.distortion_table(_chunks(zs_stats), last, mu_r, prior_r, receiver="soft")
    stats = {**stats, "label_prior": np.concatenate([stats["label_prior"], prior_r])}
    return (np.concatenate([codebooks, last]), np.concatenate([mu, mu_r]), np.concatenate([distortion, d_r]), stats)


def _int8_cost(folder: Path, enc_sess, dec_sess, images, codebooks, h, w, cond: bool = False) -> dict:
    """PSNR of the int8 encoder+decoder against fp32 (codebook 1, no bit errors)."""
    from escmvq.core import pvq
    from escmvq.runtime.backends import make_session

    def run(enc, dec):
        zs = pvq.to_subvectors(enc.run(None, {"x01": images})[0])
        zq = pvq.from_subvectors(codebooks[0][pvq.nearest_codeword(zs, codebooks[0])], h, w).astype(np.float32)
        return dec.run(None, decoder_feed(zq, 0, len(codebooks), cond))[0]

    e8, d8 = make_session(folder / graph_file("encoder", "int8")), make_session(folder / graph_file("decoder", "int8"))
    p32, p8 = _psnr01(run(enc_sess, dec_sess), images), _psnr01(run(e8, d8), images)
    return {"psnr_fp32_db": p32, "psnr_int8_db": p8, "psnr_cost_db": p32 - p8,
            "scheme": "static QDQ, per-channel symmetric int8 weights, asymmetric uint8 activations (MinMax calibration), codebook search kept fp32 (numpy)"}
