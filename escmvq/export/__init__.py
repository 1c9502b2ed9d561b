"""Export a trained checkpoint to a self-describing runtime bundle (ONNX + tables)."""
