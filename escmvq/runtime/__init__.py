"""Torch-free runtime: allocators, transmitter and receiver (numpy + onnxruntime).

This package must never import torch or ``escmvq.training`` (tests/test_no_torch.py).
"""
