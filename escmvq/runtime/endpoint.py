"""What the transmitter and the receiver both set up from a bundle: the bundle itself,
an ONNX Runtime session for their half of the network, and a plan cache over the
allocator both link ends must share (footnote 2)."""
from __future__ import annotations

from escmvq.runtime.alloc_adapter import PlanCache
from escmvq.runtime.backends import make_session, trt_cache_dir
from escmvq.runtime.bundle import Bundle, BundleError, graph_file, load_bundle

__all__ = ["open_endpoint"]


def open_endpoint(bundle: Bundle | str | None, part: str, device: str, precision: str,
                  threads: int | None, allocator=None) -> tuple[Bundle, object, PlanCache]:
    """``part`` is "encoder" or "decoder". Returns ``(bundle, session, plans)``.

    ``allocator``: an ``escmvq.runtime.Allocator`` to plan with instead of the bundle's
    (e.g. JCAP for a bundle exported with JCAMP); both link ends must use the same one.
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    name = graph_file(part, precision)
    if not bundle.has(name):
        raise BundleError(f"bundle has no {precision} {part} ({name}); export with --{precision}")
    cache = trt_cache_dir(bundle.hash_hex) if device in ("tensorrt", "jetson") else None
    session = make_session(bundle.file(name), device=device, threads=threads, cache_dir=cache)
    plans = PlanCache(bundle.allocator if allocator is None else allocator,
                      n_symbols=bundle.n_symbols, n_bits=bundle.n_bits)
    return bundle, session, plans
