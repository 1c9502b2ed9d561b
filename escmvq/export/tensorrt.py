"""fp16 TensorRT engines from the bundle's ONNX graphs (``escmvq export --trt``).

Written against TensorRT's documented Python API (8.6 on JetPack 6, also 10.x): Builder,
explicit-batch network, OnnxParser, a builder config with the FP16 flag and one
optimisation profile for the dynamic batch/height/width, and
``build_serialized_network``. TensorRT is imported lazily; when it is absent
:class:`TensorRTUnavailable` says in one line how to get it. An engine is specific to the
GPU and TensorRT version that built it, so build it on the target (the Jetson).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["TensorRTUnavailable", "HOW_TO_GET", "import_tensorrt", "build_engine"]

HOW_TO_GET = ("TensorRT is not installed: on a Jetson it comes with JetPack (apt install python3-libnvinfer); "
              "on x86 with an NVIDIA GPU: pip install --extra-index-url https://pypi.nvidia.com tensorrt")


class TensorRTUnavailable(RuntimeError):
    pass


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional, lazy
    except Exception:  # ImportError, or a broken install raising OSError on its libraries
        raise TensorRTUnavailable(HOW_TO_GET) from None
    return trt


def build_engine(onnx_path: Path, engine_path: Path, input_name: str,
                 min_shape: tuple[int, ...], opt_shape: tuple[int, ...], max_shape: tuple[int, ...],
                 fp16: bool = True, workspace_bytes: int = 1 << 30,
                 extra_inputs: dict[str, tuple[tuple[int, ...], ...]] | None = None) -> dict:
    """Build and serialise an engine; returns a description for the manifest.
    ``extra_inputs``: further inputs' ``(min, opt, max)`` shapes (the decoder's codebook map)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required in 8.x, default in 10.x
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {Path(onnx_path).name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    use_fp16 = bool(fp16 and builder.platform_has_fast_fp16)
    if use_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, tuple(min_shape), tuple(opt_shape), tuple(max_shape))
    for name, (lo, opt, hi) in (extra_inputs or {}).items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {Path(onnx_path).name}")
    Path(engine_path).write_bytes(bytes(serialized))
    return {"tensorrt": str(trt.__version__), "fp16": use_fp16, "input": input_name,
            "profile": {"min": list(min_shape), "opt": list(opt_shape), "max": list(max_shape)}}
