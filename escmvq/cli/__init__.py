"""The ``escmvq`` command line (typer + rich). Each sub-command lives in its own module
and imports heavy dependencies (torch, onnxruntime) lazily inside the command."""
