"""Torch-free numpy math shared by the runtime and training: one home for each piece."""
