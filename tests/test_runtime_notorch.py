"""Every module of escmvq.runtime, escmvq.core and escmvq.io imports with torch (and
escmvq.training) unimportable."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name.startswith("escmvq.training") or name == "onnx":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import escmvq.core, escmvq.io, escmvq.runtime as rt
names = [m.name for m in pkgutil.iter_modules(rt.__path__, "escmvq.runtime.")]
for pkg in (escmvq.core, escmvq.io):
    names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
for n in names:
    importlib.import_module(n)
for n in ("escmvq.cli.txrx", "escmvq.cli.bench", "escmvq.cli.common", "escmvq.cli.export"):
    importlib.import_module(n)
bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx") or m.startswith("escmvq.training")]
assert not bad, bad
print(len(names))
"""


def test_runtime_modules_import_without_torch_or_onnx():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip()) >= 25
