"""Keep numpy's BLAS single-threaded in the runtime processes.

The runtime's numpy stages run small matrix products (e.g. ``[4096, 5] @ [5, 512]`` in
the codebook search at batch 64) between ONNX Runtime calls. A multi-threaded OpenBLAS
busy-waits on the same cores as ONNX Runtime's pool and, measured on the 2-core dev
machine, made the search 5-20x slower than with one BLAS thread. ``threadpoolctl`` is
used when installed; otherwise the ``*openblas*set_num_threads*`` symbol of the OpenBLAS
numpy loaded is called through ctypes (Linux, best effort; returns False if not found).
"""
from __future__ import annotations

import ctypes

__all__ = ["limit_blas_threads"]


def limit_blas_threads(n: int = 1) -> bool:
    import numpy as np  # noqa: F401 - make sure numpy's BLAS is loaded

    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")
        return True
    except ImportError:
        pass
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line.split()[-1]}
    except OSError:
        return False
    done = False
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                    "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done = True
                break
    return done
