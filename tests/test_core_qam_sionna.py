"""Cross-check of the QAM labelling and LLRs against Sionna's 5G NR (TS 38.211) mapper and
demapper. Needs Sionna (``pip install 'escmvq[eval]'``, which installs ``sionna-no-rt``: the
PyTorch Sionna without the ray tracer); skipped without it.

Sionna's logits are ``log P(b=1|y) - log P(b=0|y)``, the negative of :func:`qam.demap_llr`'s."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sionna.phy")
torch = pytest.importorskip("torch")

from sionna.phy.mapping import Constellation, Demapper, Mapper  # noqa: E402

from escmvq.core import qam  # noqa: E402

ORDERS = (2, 4, 6, 8)
TOL = 1e-6  # escmvq returns complex64 points and float32 LLRs (relative rounding ~6e-8)


def _noisy_symbols(rng, m: int, n: int):
    """Random bits, their symbols through AWGN at a spread of noise variances (one per symbol)."""
    bits = rng.integers(0, 2, (n, m), dtype=np.uint8)
    no = 10.0 ** rng.uniform(-3.0, 0.5, n)  # SNR from -5 dB to 30 dB
    s = qam.map_bits(bits, m).astype(np.complex128)
    y = s + (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.sqrt(no / 2.0)
    return bits, y, no


@pytest.mark.parametrize("m", ORDERS)
def test_points_and_mapper_equal_sionna(m):
    ref = Constellation("qam", m, precision="double").points.numpy()
    got = qam.constellation(m).astype(np.complex128)
    assert np.max(np.abs(got - ref)) < TOL
    rng = np.random.default_rng(m)
    bits = rng.integers(0, 2, (64, m), dtype=np.uint8)
    sio = Mapper("qam", m, precision="double")(torch.from_numpy(bits.reshape(1, -1).astype(np.float64))).numpy()[0]
    assert np.max(np.abs(qam.map_bits(bits, m) - sio)) < TOL


@pytest.mark.parametrize("mode,sionna_method", [("maxlog", "maxlog"), ("exact", "app")])
@pytest.mark.parametrize("m", ORDERS)
def test_llrs_equal_sionna(m, mode, sionna_method):
    rng = np.random.default_rng(100 + m)
    _, y, no = _noisy_symbols(rng, m, 2000)
    dem = Demapper(sionna_method, "qam", m, precision="double")
    ref = -dem(torch.from_numpy(y[None]), no=torch.from_numpy(no[None])).numpy().reshape(-1, m)
    got = qam.demap_llr(y, m, no, mode=mode).astype(np.float64)
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() < TOL, f"m={m} {mode}: max relative LLR difference {err.max():.3g}"
