"""The names the commands and the libraries agree on, defined in one place.

Plain tuples of strings (no numpy, no enum): the runtime, the evaluation and the command
line derive their checks and their ``--help`` choices from these, so a new channel, method
or allocator variant is added here once.
"""
from __future__ import annotations

__all__ = ["DEVICES", "CHANNELS", "ALLOCATORS", "VARIANTS", "JPEG_LDPC", "EVAL_METHODS", "EVAL_DATASETS",
           "JPEG_ENERGIES", "JPEG_HEADERS", "BASELINE_PAIRS", "CSI_MODES", "check_name"]

# Where the runtime's networks run: ONNX Runtime providers (cpu, cuda, tensorrt) or a Jetson
# (TensorRT fp16, with its power state recorded by the benchmark).
DEVICES = ("cpu", "cuda", "tensorrt", "jetson")
# Channel models of the link: AWGN (h = 1) or block Rayleigh fading (one h per frame or image).
# The order is part of the frame format (escmvq.runtime.frame stores the index).
CHANNELS = ("awgn", "rayleigh")
# Resource allocators (Sec. IV): JCAMP adapts codebook and modulation, JCAP only the codebook.
ALLOCATORS = ("jcamp", "jcap")
# What the receiver knows of the channel: the true h (the paper's assumption), or an estimate
# from pilots plus a plan header sent before each tile (escmvq.runtime.csi).
CSI_MODES = ("perfect", "pilots")
# Allocator variants: "exact" (keeps the power budget) or "paper" (the paper's algorithm as written).
VARIANTS = ("exact", "paper")
# The separate source/channel coding baseline of Sec. V.
JPEG_LDPC = "jpeg-ldpc"
# Methods of an `escmvq eval` sweep besides K-pair sets (which are named by the user).
EVAL_METHODS = (*ALLOCATORS, JPEG_LDPC)
# Test sets of `escmvq eval`: the CIFAR-10 test split, or Kodak cut into tiles of the model's size.
EVAL_DATASETS = ("cifar10", "kodak")
# JPEG+LDPC power: the same P_tot as ESC-MVQ over 8x the symbols, or ESC-MVQ's power per symbol.
JPEG_ENERGIES = ("total", "per-symbol")
# JPEG+LDPC headers: quality byte + scan (the receiver rebuilds the header), or whole JFIF files.
JPEG_HEADERS = ("stripped", "full")
# The K-pair baselines trained by default (METHOD:LEVEL of escmvq.training.baselines): one pair
# per operating point, spread over the SNR range (the paper trains 5/5/21/3). Here rather than in
# escmvq.training so that the command line can show it without importing the trainer (torch).
BASELINE_PAIRS = ("esc-svq:1", "esc-svq:3", "esc-svq:5", "bsc-vq:0.001", "bsc-vq:0.02", "bsc-vq:0.1",
                  "bsc-sq:0.001", "bsc-sq:0.02", "bsc-sq:0.1", "blindsc:1", "blindsc:5")


def check_name(what: str, value: str, names) -> str:
    """``value`` if it is one of ``names``, else a one-line ValueError naming ``what`` and the choices."""
    if value not in names:
        raise ValueError(f"{what}: expected one of {', '.join(names)}, got {value!r}")
    return value
