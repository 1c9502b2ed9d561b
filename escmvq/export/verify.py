"""Export self-check: ONNX Runtime against PyTorch on real images.

Rows: the encoder at the tile size and at another size/batch (dynamic axes), the
codeword labels of every codebook (the runtime's numpy search on the ORT latent vs the
PyTorch search on the PyTorch latent), and the decoder per codebook (max abs diff and the PSNR
of both reconstructions against the input). Any row beyond tolerance fails the export.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from escmvq.core import pvq
from escmvq.export.onnx_export import torch_forward
from escmvq.runtime.bundle import decoder_feed
from escmvq.runtime.images import psnr
from escmvq.runtime.quantize import quantize

__all__ = ["CheckRow", "self_check", "unexplained_label_mismatches", "ATOL", "PSNR_TOL", "INDEX_AGREEMENT"]

ATOL = 1e-3  # max abs diff, relative to max(1, max|reference|)
PSNR_TOL = 0.01  # dB
INDEX_AGREEMENT = 0.999  # fraction of identical labels, unless every difference is a near-tie


@dataclass
class CheckRow:
    name: str
    shape: str
    max_abs_diff: float | None
    tolerance: str
    psnr_torch: float | None = None
    psnr_ort: float | None = None
    agreement: float | None = None
    ok: bool = True

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def _diff_row(name, ref, got, shape=None) -> CheckRow:
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    tol = ATOL * max(1.0, float(np.max(np.abs(ref))))
    return CheckRow(name, shape or "x".join(map(str, ref.shape)), diff, f"<= {tol:.2g}", ok=bool(diff <= tol))


def unexplained_label_mismatches(zs: np.ndarray, codebook: np.ndarray, idx_a: np.ndarray, idx_b: np.ndarray,
                                 delta: float) -> int:
    """How many differing labels a latent shift of at most ``delta`` per entry cannot explain.

    ``zs [b, N, D]`` is the reference latent, ``codebook [K, D]``, ``idx_a``/``idx_b [b, N]``
    two nearest-codeword searches (reference and runtime). Moving ``z`` by ``delta`` per entry
    changes ``||z - c||^2`` by at most ``2 delta sqrt(D) ||z - c|| + D delta^2``; a differing
    label whose distance gap on the reference latent is within the sum of that bound for both
    codewords (plus float32 rounding of the searches themselves) is a float near-tie, not an
    export error."""
    diff = idx_a != idx_b
    if not diff.any():
        return 0
    z = zs[diff].astype(np.float64)
    ca, cb = codebook[idx_a[diff]].astype(np.float64), codebook[idx_b[diff]].astype(np.float64)
    da, db = np.linalg.norm(z - ca, axis=-1), np.linalg.norm(z - cb, axis=-1)
    D = zs.shape[-1]
    slack = 2 * delta * np.sqrt(D) * (da + db) + 2 * D * delta**2
    rounding = 8 * np.finfo(np.float32).eps * (2 * np.sum(z**2, -1) + np.sum(ca**2, -1) + np.sum(cb**2, -1))
    return int(np.sum(np.abs(db**2 - da**2) > slack * 1.01 + rounding))


def self_check(model, enc_graph, dec_graph, enc_sess, dec_sess, images: np.ndarray, codebooks: np.ndarray) -> list[CheckRow]:
    """``images [n, 3, th, tw]`` in [0, 1]; returns the table rows (``ok`` per row)."""
    rows: list[CheckRow] = []
    z_t = torch_forward(enc_graph, images)
    z_o = enc_sess.run(None, {"x01": images})[0]
    rows.append(_diff_row("encoder", z_t, z_o))
    delta = rows[-1].max_abs_diff

    # dynamic axes: another batch and a non-square size
    n2 = min(3, len(images))
    th, tw = images.shape[2:]
    big = np.concatenate([images[:n2], images[:n2][..., ::-1]], axis=3)
    big = np.concatenate([big, big[:, :, ::-1]], axis=2)[:, :, : 2 * th - 4 * (th // 8 or 1)]  # e.g. 56x64
    rows.append(_diff_row("encoder (dynamic)", torch_forward(enc_graph, np.ascontiguousarray(big)),
                          enc_sess.run(None, {"x01": np.ascontiguousarray(big)})[0]))

    zs_t = pvq.to_subvectors(z_t)
    zs_o = pvq.to_subvectors(z_o)
    V = codebooks.shape[0]
    for v in range(V):
        with torch.no_grad():
            idx_t = model.quantize_indices(torch.from_numpy(z_t), v).numpy()
        idx_o = quantize(zs_o, codebooks, np.full(zs_o.shape[1], v))  # the runtime's search
        agree = float(np.mean(idx_t == idx_o))
        bad = unexplained_label_mismatches(zs_t, codebooks[v], idx_t, idx_o, delta)
        rows.append(CheckRow(f"labels cb{v + 1}", "x".join(map(str, idx_o.shape)), None,
                             f">= {INDEX_AGREEMENT:.1%} or near-ties", agreement=agree,
                             ok=bool(agree >= INDEX_AGREEMENT or bad == 0)))
        zq = pvq.from_subvectors(codebooks[v][idx_t], z_t.shape[2], z_t.shape[3]).astype(np.float32)
        feed = decoder_feed(zq, v, V, bool(model.preset.cond_channels))
        x_t = torch_forward(dec_graph, *feed.values())
        x_o = dec_sess.run(None, feed)[0]
        row = _diff_row(f"decoder cb{v + 1}", x_t, x_o)
        row.psnr_torch = float(psnr(np.clip(x_t, 0, 1), images, 1.0))
        row.psnr_ort = float(psnr(np.clip(x_o, 0, 1), images, 1.0))
        ok_psnr = bool(abs(row.psnr_torch - row.psnr_ort) <= PSNR_TOL)
        row.tolerance += f", dPSNR <= {PSNR_TOL}"
        row.ok = row.ok and ok_psnr
        rows.append(row)
    del zs_t
    return rows
