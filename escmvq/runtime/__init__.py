"""Torch-free runtime: allocators, transmitter and receiver (numpy + onnxruntime).

This package must never import torch or ``escmvq.training`` (tests/test_no_torch.py).
"""
from escmvq.core.alloc import Allocator, Plan, jcamp, jcap
from escmvq.runtime.bundle import Bundle, BundleError, load_bundle
from escmvq.runtime.receiver import Receiver
from escmvq.runtime.transmitter import Transmitter

__all__ = ["Allocator", "Plan", "jcamp", "jcap", "Bundle", "BundleError", "load_bundle", "Receiver", "Transmitter"]
