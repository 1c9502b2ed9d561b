"""The runtime and the numpy core import and work with torch made unimportable."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    sys.modules.pop("torch", None)

    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("blocker failed")

    import numpy as np
    import escmvq.runtime
    from escmvq.runtime import Allocator, jcap, jcamp
    import escmvq.core.qam, escmvq.core.ber, escmvq.core.channels, escmvq.core.pvq
    import escmvq.core.alloc

    rng = np.random.default_rng(0)
    mu = np.minimum(np.array([0.0005, 0.001, 0.0045])[:, None, None] * np.exp(rng.uniform(0, 2, (3, 4, 4))), 0.5)
    D = np.cumsum(rng.uniform(0.1, 1, (3, 4)), axis=0)
    plan = Allocator(D, mu, rate=4).plan(100.0, 1.0)
    assert plan.valid
    s = escmvq.core.qam.map_frame(rng.integers(0, 2, (2, 16), dtype=np.uint8), plan.orders, plan.bit_order)
    assert s.shape == (2, plan.n_symbols)
    bad = [m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("escmvq.training")]
    assert not bad, bad
    print("OK")
    """
)


def test_runtime_and_core_import_without_torch():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("OK")
