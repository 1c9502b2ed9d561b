"""Fixtures shared by the export, runtime, CLI and eval suites."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """A tiny exported bundle (untrained ``tiny`` preset), built once per test session."""
    pytest.importorskip("torch")
    from escmvq.export.testing import tiny_bundle

    return tiny_bundle(tmp_path_factory.getbasetemp())
