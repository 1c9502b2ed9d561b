"""Static int8 quantisation (QDQ, per-channel weights) of the encoder and decoder with
``onnxruntime.quantization``, calibrated on real images.

The nearest-codeword search is not in these graphs (the runtime does it in numpy, in
float32), so the distance/argmin step stays fp32 by construction. The decoder is
calibrated on the codewords the encoder's latents quantise to (every codebook), i.e. on
the inputs it really sees.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["quantize_int8"]


class _Reader:
    """``CalibrationDataReader`` over a numpy batch, in chunks."""

    def __init__(self, data: dict[str, np.ndarray], chunk: int = 32):
        n = len(next(iter(data.values())))
        self._it = iter([{k: np.ascontiguousarray(a[i:i + chunk]) for k, a in data.items()} for i in range(0, n, chunk)])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # not needed by MinMax
        pass


def quantize_int8(src: Path, dst: Path, input_name: str, calib: np.ndarray | dict[str, np.ndarray]) -> None:
    """Write a QDQ int8 copy of ``src`` to ``dst`` calibrated on ``calib`` (the batch of input
    ``input_name``, or a dict of every input's batch)."""
    data = calib if isinstance(calib, dict) else {input_name: calib}
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre), str(dst), _Reader({k: a.astype(np.float32) for k, a in data.items()}),
            quant_format=QuantFormat.QDQ, per_channel=True,
            # uint8 activations x int8 weights: measured 1.7x faster than int8 x int8 on
            # this x86 CPU (encoder, batch 64: 19.5 ms vs 35.9 ms; fp32 32.9 ms)
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
