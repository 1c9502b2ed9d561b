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


@pytest.mark.parametrize("n,level,t_crit", [  # Student-t table, 10 significant digits
    (2, 0.95, 12.70620474), (3, 0.95, 4.302652730), (5, 0.95, 2.776445105), (5, 0.90, 2.131846786),
    (5, 0.99, 4.604094871), (10, 0.95, 2.262157163), (30, 0.95, 2.045229642),
])
def test_mean_ci_half_width_is_student_t_with_sample_std(n, level, t_crit):
    """Half-width = t_{n-1, (1+level)/2} * s / sqrt(n) with s the ddof = 1 standard deviation:
    exact against scipy.stats.t and tabulated quantiles (a normal quantile or ddof = 0 gives
    intervals 29% too narrow at n = 5; the coverage test cannot tell)."""
    from scipy import stats

    x = np.random.default_rng(n).normal(20.0, 3.0, n)
    s = float(np.sqrt(np.sum((x - x.mean()) ** 2) / (n - 1)))
    m = mean_ci(x, level)
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    assert t == pytest.approx(t_crit, rel=1e-9)
    assert m["ci"] == pytest.approx(t * s / math.sqrt(n), rel=1e-12)
    assert m["std"] == pytest.approx(s, rel=1e-12) and m["n"] == n and m["level"] == level
    assert m["mean"] == pytest.approx(float(np.mean(x)), rel=1e-15)


def test_mean_ci_hand_example():
    # values 1..5: mean 3, s = sqrt(2.5), t_{4, 0.975} = 2.7764451...
    m = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m["mean"] == 3.0 and m["std"] == pytest.approx(math.sqrt(2.5))
    assert m["ci"] == pytest.approx(2.7764451051977934 * math.sqrt(2.5) / math.sqrt(5), rel=1e-12)
    assert m["ci"] == pytest.approx(1.9632432, rel=1e-7)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="level"):
            mean_ci([1.0, 2.0], bad)


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
