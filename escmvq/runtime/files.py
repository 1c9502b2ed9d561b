"""Atomic output for the runtime's commands: the functions of :mod:`escmvq.io.files`
under the name the tx/rx/link/eval commands and the stream processes import."""
from escmvq.io.files import OutputExistsError, atomic_write, atomic_write_bytes, check_output

__all__ = ["OutputExistsError", "check_output", "atomic_write", "atomic_write_bytes"]
