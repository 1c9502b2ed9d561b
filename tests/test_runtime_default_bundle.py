"""The shipped default bundle (escmvq/models/default): intact and usable without --bundle."""
from __future__ import annotations

import numpy as np
import pytest

from escmvq.runtime.bundle import default_bundle_path, load_bundle

pytestmark = pytest.mark.skipif(not (default_bundle_path() / "manifest.json").exists(),
                                reason="no default bundle shipped")


def test_default_bundle_verifies_and_self_checked():
    b = load_bundle()  # re-hashes every file
    m = b.manifest
    assert all(r["ok"] for r in m["self_check"]["rows"])
    assert m["model"]["allocator"]["variant"] == "exact" and b.n_symbols * b.rate == b.n_bits
    assert m["source_checkpoint"]["name"] != "tiny.ckpt"


def test_default_bundle_links_a_small_image():
    from escmvq.runtime.link import run_link
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter()
    rx = Receiver(tx.bundle)
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    rep = run_link(tx, rx, img, 30.0, np.random.default_rng(0), "awgn")
    assert rep.label_error_rate < 0.01 and rep.image.shape == img.shape
