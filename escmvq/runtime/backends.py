"""ONNX Runtime sessions on a named device, with a check of the provider really used.

An onnxruntime-gpu build lists the CUDA and TensorRT providers even on a host without a
GPU and then silently runs on the CPU; :func:`make_session` refuses that.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BackendError", "PROVIDERS", "make_session", "used_provider", "ort_version"]

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "jetson": "TensorrtExecutionProvider",
}
_HOW_TO_GET = {
    "cuda": "install onnxruntime-gpu (on a Jetson: NVIDIA's Jetson wheel) on a host with an NVIDIA GPU",
    "tensorrt": "install onnxruntime-gpu with TensorRT (on a Jetson: JetPack + NVIDIA's Jetson onnxruntime-gpu wheel)",
    "jetson": "install JetPack's TensorRT and NVIDIA's Jetson onnxruntime-gpu wheel",
}


class BackendError(RuntimeError):
    """The requested execution provider is absent or not really used."""


def ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def trt_cache_dir(bundle_hash_hex: str) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps its engines for a bundle."""
    return Path(os.environ.get("ESCMVQ_CACHE", Path.home() / ".cache" / "escmvq")) / "trt" / bundle_hash_hex[:16]


def used_provider(session) -> str:
    return session.get_providers()[0]


def make_session(model: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 optimize: str = "all", fp16: bool = False, cache_dir: str | os.PathLike | None = None):
    """An ``onnxruntime.InferenceSession`` on ``device`` (cpu, cuda, tensorrt, jetson).

    Raises :class:`BackendError` when the provider is not in this onnxruntime build or the
    session ends up on another provider (e.g. the CPU fallback).
    """
    import onnxruntime as ort

    if device not in PROVIDERS:
        raise BackendError(f"unknown device {device!r} (expected one of {', '.join(PROVIDERS)})")
    want = PROVIDERS[device]
    available = ort.get_available_providers()
    if want not in available:
        raise BackendError(f"{want} is not available in this onnxruntime build (available: "
                           f"{', '.join(available)}); {_HOW_TO_GET.get(device, '')}".rstrip("; "))
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimize]
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    # ORT's worker threads spin-wait after a run by default and then steal the cores from
    # the numpy stages (quantize, modulate, ...) that follow; measured here it made those
    # stages ~10-40x slower at batch 64. Sleep instead.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if want == "TensorrtExecutionProvider":
        opts = {"trt_fp16_enable": bool(fp16 or device == "jetson")}
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        providers = [(want, opts)]
    else:
        providers = [want]
    try:
        sess = ort.InferenceSession(str(Path(model)), sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"cannot create an onnxruntime session for {Path(model).name} on {want}: {msg}") from None
    got = used_provider(sess)
    if got != want:
        raise BackendError(f"asked onnxruntime for {want} but the session runs on {got} "
                           f"(no usable GPU?); refusing to report it as {device}")
    return sess
