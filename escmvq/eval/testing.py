"""A small *meaningful* bundle for the evaluation tests, built without torch or training.

The untrained ``tiny`` bundle of :mod:`escmvq.export.testing` decodes every label to
nearly the same image, so its PSNR does not depend on the channel. This bundle is a
hand-made colour quantiser with the shapes of the CIFAR model (32x32 tiles, latent
``[4, 8, 8]``, N = 64 sub-vectors of D = 4, B = 9 bits, K = 512, T = 144, R = 4):

- encoder: the mean colour of each 4x4 block (a stride-4 convolution), the fourth latent
  channel 0;
- codebook: the 8x8x8 grid of colours ``(l + 0.5) / 8``, label ``k = 64 r + 8 g + b``
  (so a flipped MSB moves a colour by half the range, a flipped LSB by 1/8);
- decoder: each latent colour repeated over its 4x4 block (a stride-4 transposed
  convolution);
- V = 5 copies of the codebook with bit-flip probabilities ``MU_BASE[v] * (0.5 .. 2)`` per
  bit position (high enough on the last codebooks that JCAMP and JCAP differ at low SNR), and the distortion table (31) computed from ``images``.

So the reconstruction error genuinely grows with bit errors and PSNR rises with SNR.
Needs the ``onnx`` package (to write the graphs); the bundle itself runs torch-free.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["colour_bundle"]

MU_BASE = (0.001, 0.005, 0.02, 0.08, 0.25)  # codebook v: mu = MU_BASE[v] * (0.5 .. 2), at most 0.5


def _graphs():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_enc = np.zeros((4, 3, 4, 4), np.float32)
    w_dec = np.zeros((4, 3, 4, 4), np.float32)  # ConvTranspose weight [C_in, C_out, kh, kw]
    for c in range(3):
        w_enc[c, c] = 1.0 / 16.0
        w_dec[c, c] = 1.0
    enc = helper.make_graph(
        [helper.make_node("Conv", ["x01", "w"], ["z"], kernel_shape=[4, 4], strides=[4, 4])],
        "encoder",
        [helper.make_tensor_value_info("x01", TensorProto.FLOAT, ["b", 3, 32, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4, 8, 8])],
        [numpy_helper.from_array(w_enc, "w")],
    )
    dec = helper.make_graph(
        [helper.make_node("ConvTranspose", ["z", "w"], ["x01_hat"], kernel_shape=[4, 4], strides=[4, 4])],
        "decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4, 8, 8])],
        [helper.make_tensor_value_info("x01_hat", TensorProto.FLOAT, ["b", 3, 32, 32])],
        [numpy_helper.from_array(w_dec, "w")],
    )
    kw = dict(opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return onnx, helper.make_model(enc, **kw), helper.make_model(dec, **kw)


def colour_bundle(folder: str | Path, images: np.ndarray, method: str = "jcamp", mu_base=MU_BASE,
                  name: str | None = None, erasures: bool = False) -> Path:
    """Write the colour-quantiser bundle to ``folder/NAME.escmvq`` (reused if present).

    images : ``[n, 32, 32, 3]`` uint8, for the distortion table (31).
    method : the allocator stored in the bundle ("jcamp" | "jcap").
    mu_base : one base bit-flip probability per codebook (V = its length; V = 1 makes a
        single-codebook "pair" as the K-pair baselines have).
    name : folder name (default ``colour-METHOD``).
    erasures : give the allocator "not sent" states and the bundle the receiver's latent
        statistics (:func:`escmvq.export.stats.latent_statistics`), as ``escmvq export`` does.
    Returns the bundle path.
    """
    from escmvq.core import pvq
    from escmvq.export import bundle_writer as bw
    from escmvq.runtime.alloc_adapter import make_allocator
    from escmvq.runtime.bundle import graph_file

    out = Path(folder) / f"{name or 'colour-' + method}.escmvq"
    if (out / "manifest.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    onnx, enc, dec = _graphs()
    onnx.save(enc, out / graph_file("encoder"))
    onnx.save(dec, out / graph_file("decoder"))
    lv = (np.arange(8, dtype=np.float32) + 0.5) / 8
    r, g, b = np.meshgrid(lv, lv, lv, indexing="ij")
    cb = np.stack([r.ravel(), g.ravel(), b.ravel(), np.zeros(512, np.float32)], 1).astype(np.float32)
    V, N, B = len(mu_base), 64, 9
    codebooks = np.repeat(cb[None], V, 0)
    scale = np.linspace(0.5, 2.0, B)
    mu = np.stack([np.tile(np.minimum(m * scale, 0.5), (N, 1)) for m in mu_base]).astype(np.float32)
    x = np.asarray(images, np.float32) / 255.0
    z = x.reshape(len(x), 8, 4, 8, 4, 3).mean((2, 4)).transpose(0, 3, 1, 2)  # [n, 3, 8, 8]
    z = np.concatenate([z, np.zeros((len(x), 1, 8, 8), np.float32)], 1)
    zs = pvq.to_subvectors(z)
    distortion = pvq.distortion_table([zs], codebooks, mu)
    stats = None
    if erasures:
        from escmvq.export.stats import latent_statistics

        stats = latent_statistics(zs, codebooks)
    alloc = make_allocator(distortion, mu, rate=4, method=method, variant="exact", m_max=8,
                           erasure_distortion=None if stats is None else stats["erasure_distortion"])
    bw.write_tables(out, codebooks, mu, distortion, stats)
    bw.write_allocator(out, alloc.state())
    manifest = {
        "created": "test",
        "model": {"tile_size": [32, 32], "latent_shape": [4, 8, 8], "V": V, "K": 512, "D": 4, "N": N, "B": B,
                  "rate": 4, "T": N * B // 4, "L": N * B, "m_max": 8,
                  "allocator": {"method": method, "variant": "exact", **({"erasures": True} if erasures else {})},
                  "codebook_order": "index 0 = lowest mu", "label_bits": "MSB first; flat bit i*B + j"},
        "note": "escmvq.eval.testing.colour_bundle: hand-made colour quantiser for tests",
    }
    bw.write_manifest(out, json.loads(json.dumps(manifest)))
    return out
