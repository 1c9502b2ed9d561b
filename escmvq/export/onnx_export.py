"""Encoder and decoder to ONNX (opset <= 17, dynamic batch/height/width).

The normalisation is folded into the graphs, so the runtime feeds ``x01`` in [0, 1]
and gets ``x01_hat`` back. The TorchScript exporter (``dynamo=False``) is used: it writes
one self-contained file (no external ``.data``) and honours the requested opset; the
opset actually written is checked against ``opset_import`` afterwards (asking for an
old opset can silently keep a newer one).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

__all__ = ["EncoderGraph", "DecoderGraph", "export_graph", "check_graph", "MAX_OPSET", "ExportError"]

MAX_OPSET = 17  # JetPack 6's TensorRT 8.6


class ExportError(RuntimeError):
    """Export failed; the message is one line, fit for a user."""


class EncoderGraph(nn.Module):
    """x01 [b, 3, H, W] -> z [b, D, H/4, W/4]; ``(x01 - mean) / std`` folded in."""

    def __init__(self, encoder: nn.Module, mean, std):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x01):
        return self.encoder((x01 - self.mean) * self.inv_std)


class DecoderGraph(nn.Module):
    """z [b, D, h, w] (, cond [b, V+1, h, w] for a reliability-aware decoder) -> x01_hat
    [b, 3, 4h, 4w]; ``out * std + mean`` folded in (no clamp)."""

    def __init__(self, decoder: nn.Module, mean, std):
        super().__init__()
        self.decoder = decoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, z, *cond):
        return self.decoder(z, *cond) * self.std + self.mean


def export_graph(module: nn.Module, example: torch.Tensor | tuple, path: Path, input_name: str | tuple[str, ...],
                 output_name: str, opset: int = MAX_OPSET, metadata: dict[str, str] | None = None) -> dict:
    """Export ``module`` with dynamic batch/H/W (every input and the output); ``example`` and
    ``input_name`` are one tensor and name or tuples of them. Returns a description for the
    manifest."""
    module = module.eval()
    examples = example if isinstance(example, tuple) else (example,)
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    dyn = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, examples, str(path), dynamo=False, opset_version=opset,
            input_names=names, output_names=[output_name],
            dynamic_axes={**{n: dyn for n in names}, output_name: dyn}, do_constant_folding=True,
        )
    return check_graph(path, opset, metadata)


def check_graph(path: Path, max_opset: int = MAX_OPSET, metadata: dict[str, str] | None = None) -> dict:
    """Validate the file, enforce the opset and TensorRT-friendly types, add metadata."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx", 0) > max_opset:
        raise ExportError(f"{path.name}: written with opset {opsets['ai.onnx']}, above the {max_opset} TensorRT 8.6 accepts")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ExportError(f"{path.name}: weights went to external data; the bundle wants one file per graph")
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            raise ExportError(f"{path.name}: {vi.name} is int64; TensorRT 8.6 wants int32")
    if metadata:
        onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
        onnx.save(model, str(path))

    def shape(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    return {
        "opset": opsets.get("ai.onnx"),
        "inputs": {vi.name: shape(vi) for vi in model.graph.input},
        "outputs": {vi.name: shape(vi) for vi in model.graph.output},
        "ir_version": int(model.ir_version),
    }


def torch_forward(module: nn.Module, x: np.ndarray, *more: np.ndarray, batch: int = 256) -> np.ndarray:
    """Run a graph module in PyTorch eager on a numpy batch (reference for the self-check);
    ``more``: further inputs with the same batch size (the decoder's codebook map)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            args = [torch.from_numpy(np.ascontiguousarray(a[i:i + batch])) for a in (x, *more)]
            out.append(module(*args).numpy())
    return np.concatenate(out)
