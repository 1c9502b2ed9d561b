"""ESC-MVQ: end-to-end digital semantic communication with multi-codebook VQ.

Parts:
- ``escmvq.core``: torch-free numpy math shared by training and runtime
  (product-VQ bit mapping, Gray QAM, BER model, channels, allocators).
- ``escmvq.io``: torch-free files in and out (data folder, JPEG packs, atomic writes,
  figures).
- ``escmvq.runtime``: numpy + onnxruntime transmitter/receiver (no torch).
- ``escmvq.training``: PyTorch training (Algorithm 1).
- ``escmvq.export``: checkpoint -> self-describing bundle (ONNX, tables).
- ``escmvq.cli``: the ``escmvq`` command (typer + rich).
"""

__version__ = "0.1.0"
