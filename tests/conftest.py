"""Fixtures shared by the export, runtime, CLI and eval suites."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """A tiny exported bundle (untrained ``tiny`` preset), built once per test session.

    ``ESCMVQ_TEST_BUNDLE_CACHE=DIR``: build it once in DIR and reuse it across sessions
    (``benchmarks/mutation.sh`` runs thousands of short sessions)."""
    pytest.importorskip("torch")
    from escmvq.export.testing import tiny_bundle

    cache = os.environ.get("ESCMVQ_TEST_BUNDLE_CACHE")
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
    return tiny_bundle(Path(cache) if cache else tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def txrx(bundle_dir):
    """A transmitter and a receiver on the tiny bundle."""
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle_dir)
    return tx, Receiver(tx.bundle)


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A fresh current folder holding ``img.png``, a 100x70 crop of Kodak's kodim23 (12 tiles)."""
    import numpy as np
    from PIL import Image

    from escmvq.export.testing import KODAK

    monkeypatch.chdir(tmp_path)
    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[:70, :100]
    Image.fromarray(img).save(tmp_path / "img.png")
    return tmp_path
