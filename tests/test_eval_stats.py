"""escmvq.eval.stats and escmvq.eval.datasets (torch-free)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from escmvq.eval.datasets import DatasetError, load_cifar10_test, load_images, load_kodak_tiles
from escmvq.eval.stats import PSNR_CAP, mean_ci, psnr_batch
from escmvq.eval.sweep import parse_snr_grid
from escmvq.runtime.images import psnr


def test_psnr_batch_matches_runtime_psnr_and_caps():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    got = psnr_batch(a, b)
    assert got.shape == (5,)
    assert np.allclose(got, [psnr(a[i], b[i]) for i in range(5)])
    assert psnr_batch(a, a).tolist() == [PSNR_CAP] * 5
    with pytest.raises(ValueError):
        psnr_batch(a, b[:4])


def test_mean_ci_coverage_and_shrinking():
    rng = np.random.default_rng(1)
    # the 95% interval covers the true mean about 95% of the time
    hits = 0
    for _ in range(400):
        m = mean_ci(rng.normal(3.0, 2.0, 20))
        hits += abs(m["mean"] - 3.0) <= m["ci"]
    assert 0.91 <= hits / 400 <= 0.99
    x = rng.normal(0, 1, 4000)
    assert mean_ci(x[:4000])["ci"] < mean_ci(x[:400])["ci"] / 2.5  # ~ 1/sqrt(n)
    one = mean_ci([1.5])
    assert one["mean"] == 1.5 and math.isinf(one["ci"])
    for bad in ([], [np.nan], [np.inf]):
        with pytest.raises(ValueError):
            mean_ci(bad)


def test_snr_grid_parsing():
    assert parse_snr_grid("-5:25:2.5") == [-5.0 + 2.5 * k for k in range(13)]
    assert parse_snr_grid("0,5, 10") == [0.0, 5.0, 10.0]
    assert parse_snr_grid("3:3:1") == [3.0]
    for bad in ("a:b:c", "0:10:0", "10:0:1", "0:10", "", "0,nan", "0:1000:1"):
        with pytest.raises(ValueError):
            parse_snr_grid(bad)


def test_cifar_loader_is_class_balanced_uint8(tmp_path):
    x = load_cifar10_test(20)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8
    assert 0.3 < x.mean() / 255 < 0.7
    assert np.array_equal(load_cifar10_test(5, start=15), x[15:])
    with pytest.raises(DatasetError):
        load_cifar10_test(5, data_dir=tmp_path)
    with pytest.raises(DatasetError):
        load_cifar10_test(0)
    with pytest.raises(DatasetError):
        load_images("stl10", 4)


def test_kodak_tiles_spread_over_images():
    t = load_kodak_tiles((32, 32), 48)
    assert t.shape == (48, 32, 32, 3) and t.dtype == np.uint8
    full = load_kodak_tiles((32, 32))
    assert len(full) == 24 * 384  # 768x512 or 512x768 -> 16x24 tiles each
    assert np.array_equal(t[0], full[0]) and np.array_equal(t[1], full[192])
    with pytest.raises(DatasetError):
        load_kodak_tiles((32, 32), len(full) + 1)
