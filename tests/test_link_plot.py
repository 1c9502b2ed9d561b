"""``run_link(..., capture=True)`` and ``escmvq link --plot`` (escmvq.runtime.linkplot)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_error, run
from escmvq.core import qam
from escmvq.export.testing import KODAK
from escmvq.runtime.link import LinkCapture

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def img():
    from escmvq.runtime.images import load_image

    return load_image(KODAK / "kodim23.png")[:70, :100]  # 3 x 4 tiles, the last row/column padded


@pytest.fixture
def work(tmp_path, monkeypatch, img) -> Path:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(img).save(tmp_path / "img.png")
    return tmp_path


# ---------------------------------------------------------------------------- capture


def test_capture_shapes_and_same_result_as_without(txrx, img):
    from escmvq.runtime.images import untile
    from escmvq.runtime.link import run_link

    tx, rx = txrx
    b = tx.bundle
    plain = run_link(tx, rx, img, 10.0, np.random.default_rng(5))
    rep = run_link(tx, rx, img, 10.0, np.random.default_rng(5), capture=True)
    assert plain.capture is None  # the default path captures nothing
    assert rep.psnr_db == plain.psnr_db
    assert np.array_equal(rep.image, plain.image)
    assert rep.label_error_rate == plain.label_error_rate
    assert np.array_equal(rep.codebook_use, plain.codebook_use)

    cap = rep.capture
    n, T, N, V = 12, b.n_symbols, b.latent_shape[1] * b.latent_shape[2], b.codebooks.shape[0]
    assert cap.n_tiles == n and cap.grid == (3, 4) and cap.latent_hw == tuple(b.latent_shape[1:])
    assert cap.h.shape == (n,) and cap.h.dtype == np.complex64
    assert cap.y.shape == (n, T) and cap.y.dtype == np.complex64
    assert cap.gamma.shape == (n,) and np.allclose(cap.gamma, np.abs(cap.h.astype(np.complex128)) ** 2 / cap.noise_var)
    assert cap.codebooks.shape == (n, N) and cap.orders.shape == (n, T) and cap.powers.shape == (n, T)
    assert cap.label_errors.shape == (n, N) and cap.label_errors.dtype == bool
    assert cap.n_codebooks == V and cap.p_tot == rep.p_tot
    assert len(np.unique(cap.h)) == n  # per-tile fading: every tile its own h, hence its own plan
    B = b.n_bits // N
    assert np.all(cap.orders.sum(1) == B * (cap.codebooks < V).sum(1))  # the bits of the sub-vectors sent
    assert np.all(cap.powers >= 0) and np.all(cap.powers.sum(1) <= cap.p_tot * (1 + 1e-9))
    assert np.all(cap.powers[cap.orders == 0] == 0)
    assert np.all((cap.codebooks >= 0) & (cap.codebooks <= V))
    # the captured samples are the ones the receiver decoded
    again = rx.receive(cap.y, cap.h, cap.p_tot, cap.noise_var)
    assert np.array_equal(np.asarray(again.codebooks), cap.codebooks)
    assert np.array_equal(untile(again.tiles, cap.grid, img.shape[:2]), rep.image)


def test_captured_constellation_is_the_sent_qam_at_high_snr(txrx, img):
    from escmvq.runtime.link import run_link

    tx, rx = txrx
    cap = run_link(tx, rx, img, 60.0, np.random.default_rng(0), channel="awgn", capture=True).capture
    s = cap.equalized()
    used = cap.orders > 0
    for m in np.unique(cap.orders[used]):
        pts = qam.constellation(int(m))
        sel = s[cap.orders == m]
        assert np.all(np.min(np.abs(sel[:, None] - pts[None]), 1) < 0.01)


# ---------------------------------------------------------------------------- the figure by hand


def hand_capture(n: int, grid: tuple[int, int], V: int = 5, T: int = 144, N: int = 64, seed: int = 0) -> LinkCapture:
    """Plans with every QAM order, 10 unused channel uses (order 0, power 0) and erased sub-vectors."""
    rng = np.random.default_rng(seed)
    orders = np.tile(np.array([8] * 20 + [6] * 30 + [4] * 40 + [2] * 44 + [0] * 10), (n, 1))
    powers = np.where(orders > 0, rng.uniform(10, 60, (n, T)), 0.0)
    h = ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(np.complex64)
    s = np.zeros((n, T), np.complex64)
    for m in (2, 4, 6, 8):
        sel = orders == m
        s[sel] = qam.constellation(m)[rng.integers(0, 2**m, int(sel.sum()))]
    noise = (rng.standard_normal((n, T)) + 1j * rng.standard_normal((n, T))) * 0.05
    y = (h[:, None] * np.sqrt(powers) * s + noise).astype(np.complex64)
    y[orders == 0] = noise[orders == 0]  # nothing sent: noise only
    cbs = rng.integers(0, V, (n, N))
    cbs[0, :5] = V  # erased: not sent
    if n > 1:
        cbs[1] = V  # a tile with nothing sent at all
    err = (rng.random((n, N)) < 0.1) & (cbs < V)
    return LinkCapture(h=h, y=y, gamma=np.abs(h.astype(np.complex128)) ** 2, codebooks=cbs, orders=orders,
                       powers=powers, label_errors=err, grid=grid, latent_hw=(8, 8), n_codebooks=V,
                       p_tot=float(powers[0].sum()), noise_var=1.0)


def _axes(fig, word: str):
    (ax,) = [a for a in fig.axes if word in a.get_title()]
    return ax


@pytest.mark.parametrize("n, grid", [(1, (1, 1)), (6, (2, 3))])
def test_erased_subvectors_and_unused_symbols_plot(tmp_path, n, grid):
    import matplotlib.pyplot as plt

    from escmvq.runtime.linkplot import link_figure, save_link_plot

    cap = hand_capture(n, grid)
    rng = np.random.default_rng(1)
    orig = rng.integers(0, 256, (32 * grid[0], 32 * grid[1], 3), dtype=np.uint8)
    rec = rng.integers(0, 256, orig.shape, dtype=np.uint8)
    fig = link_figure(cap, orig, rec, snr_db=20.0)
    try:
        con = _axes(fig, "constellation")
        drawn = sum(len(c.get_offsets()) for c in con.collections)
        assert drawn == int(np.sum(cap.orders > 0)) == n * 134  # order-0 symbols are not drawn ...
        labels = [t.get_text() for t in con.get_legend().get_texts()]
        assert f"unused, not drawn ({n * 10})" in labels  # ... but counted
        assert {"QPSK", "16-QAM", "64-QAM", "256-QAM"} <= {t.split(" (")[0] for t in labels}
        if n == 1:  # the sub-vector map holds "not sent" as its own value V
            cmap_ax = _axes(fig, "codebook per sub-vector")
            shown = np.asarray(cmap_ax.images[0].get_array())
            assert shown.shape == (8, 8) and np.array_equal(shown.ravel(), cap.codebooks[0])
            assert "5 not sent" in cmap_ax.get_title()
        else:  # a tile with nothing sent has no mean codebook (masked, drawn in the "bad" colour)
            mean_ax = _axes(fig, "mean codebook")
            shown = mean_ax.images[0].get_array()
            assert np.ma.is_masked(shown) and bool(np.ma.getmaskarray(shown).ravel()[1])
            assert "not sent" in mean_ax.get_title()
        assert f"{n} tile" in fig.get_suptitle() and f"{n * 144:,} channel uses" in fig.get_suptitle()
    finally:
        plt.close(fig)
    out = save_link_plot(tmp_path / "hand.png", cap, orig, rec, snr_db=20.0)
    with Image.open(out) as im:
        assert im.format == "PNG" and 1000 <= im.size[0] <= 2400 and 600 <= im.size[1] <= 1400


def test_bad_capture_shapes_are_refused():
    from escmvq.runtime.linkplot import render_link_plot

    cap = hand_capture(6, (2, 3))
    img = np.zeros((64, 96, 3), np.uint8)
    cap.grid = (2, 2)
    with pytest.raises(ValueError, match="grid"):
        render_link_plot(cap, img, img, snr_db=10.0)
    cap.grid, cap.powers = (2, 3), cap.powers[:, :10]
    with pytest.raises(ValueError, match="powers"):
        render_link_plot(cap, img, img, snr_db=10.0)


# ---------------------------------------------------------------------------- the command


def test_link_plot_writes_png_and_refuses_an_existing_path(work, bundle_dir):
    res = run("link", "--snr", "10", "img.png", "-b", bundle_dir, "--plot", "fig.png")
    assert res.exit_code == 0, res.stderr
    assert "fig.png" in res.stdout
    with Image.open(work / "fig.png") as im:
        assert im.format == "PNG" and 1000 <= im.size[0] <= 2400 and 600 <= im.size[1] <= 1400
    assert (work / "img.link.png").exists()
    before = (work / "fig.png").read_bytes()

    # an existing --plot path is refused before any work: nothing new is written
    assert_one_line_error(run("link", "--snr", "10", "img.png", "-b", bundle_dir, "--plot", "fig.png"), "--force")
    assert (work / "fig.png").read_bytes() == before
    assert not (work / "img.link-1.png").exists()
    # the same path as the side-by-side output, and a non-PNG path
    assert_one_line_error(run("link", "--snr", "10", "img.png", "-b", bundle_dir, "-o", "x.png", "--plot", "x.png"),
                          "side-by-side")
    assert_one_line_error(run("link", "--snr", "10", "img.png", "-b", bundle_dir, "--plot", "fig.jpg"), ".png")
    assert not (work / "x.png").exists() and not (work / "fig.jpg").exists()

    # --force replaces it (another seed: another figure); JSON names the plot; no temp files left
    res = run("link", "--snr", "10", "img.png", "-b", bundle_dir, "-o", "img.link.png", "--plot", "fig.png",
              "--force", "--seed", "1", "--json")
    assert res.exit_code == 0, res.stderr
    assert '"plot": "fig.png"' in res.stdout
    assert (work / "fig.png").read_bytes() != before
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


def test_missing_matplotlib_is_a_one_line_error(work, bundle_dir, monkeypatch):
    from escmvq.runtime import linkplot

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(linkplot.PlotUnavailable, match=r"pip install 'escmvq\[plot\]'"):
        linkplot.render_link_plot(hand_capture(1, (1, 1)), np.zeros((32, 32, 3), np.uint8),
                                  np.zeros((32, 32, 3), np.uint8), snr_db=10.0)
    res = run("link", "--snr", "10", "img.png", "-b", bundle_dir, "--plot", "fig.png")
    assert_one_line_error(res, "pip install 'escmvq[plot]'")
    assert not (work / "fig.png").exists() and not (work / "img.link.png").exists()


def test_linkplot_imports_neither_matplotlib_nor_torch():
    code = ("import sys, escmvq.runtime.linkplot, escmvq.runtime.link, escmvq.cli.txrx; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch')]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
