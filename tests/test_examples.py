"""examples/link_in_python.py reproduces `escmvq link` (same bundle, draws and PSNR)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from escmvq.runtime.bundle import default_bundle_path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "link_in_python.py"

pytestmark = pytest.mark.skipif(not (default_bundle_path() / "manifest.json").exists(),
                                reason="no default bundle shipped")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A smooth 72x100 RGB image (partial tiles at the edges, more than one tile row)."""
    from escmvq.runtime.images import save_png

    y, x = np.mgrid[0:72, 0:100]
    img = np.stack([x * 2.5, y * 3.5, (x + y) * 1.5], -1) % 256
    path = tmp_path_factory.mktemp("example") / "img.png"
    save_png(img.astype(np.uint8), path)
    return path


def test_example_is_short():
    code = [ln for ln in EXAMPLE.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith(("#", '"""'))]
    assert len(code) <= 14


@pytest.mark.parametrize("snr", ["10", "3"])
def test_example_matches_link_command(image, tmp_path, snr):
    r = subprocess.run([sys.executable, str(EXAMPLE), str(image), snr], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    c = subprocess.run([sys.executable, "-m", "escmvq.cli.main", "link", "--snr", snr, str(image), "--json",
                        "-o", str(tmp_path / "out.png")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stderr[-2000:]
    assert r.stdout.strip() == f"PSNR {json.loads(c.stdout)['psnr_db']:.3f} dB"


def test_runtime_exports_the_link_api():
    import escmvq.runtime as rt
    from escmvq.core import channels
    from escmvq.runtime import link, receiver, transmitter

    for name in ("run_link", "through_channel", "transmit_image", "receive_frame", "Frame", "load_image", "psnr",
                 "draw_h", "apply_channel", "channel_gamma", "Transmitter", "Receiver", "Plan", "Allocator"):
        assert name in rt.__all__ and getattr(rt, name) is not None, name
    assert len(set(rt.__all__)) == len(rt.__all__) and all(hasattr(rt, n) for n in rt.__all__)
    # one object under every name: nothing re-implemented along the way
    assert rt.draw_h is channels.draw_h is link.draw_h and rt.apply_channel is channels.apply_channel
    assert rt.transmit_image is transmitter.transmit_image is link.transmit_image
    assert rt.receive_frame is receiver.receive_frame is link.receive_frame
    assert rt.Plan.__module__.startswith("escmvq.core.alloc")
