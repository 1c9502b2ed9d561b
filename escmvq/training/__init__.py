"""PyTorch training of ESC-MVQ (Algorithm 1). Imports torch; the runtime never imports this package."""
