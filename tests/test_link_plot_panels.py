"""The link plot checked by what each panel draws (points, sizes, colours, lines, legends, limits,
titles), on hand-made captures whose equalised samples are known; test_link_plot_parts.py covers
the codebook and tile maps' values, test_link_plot.py whole figures from real links."""
from __future__ import annotations

import io
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from escmvq.core import qam  # noqa: E402
from escmvq.runtime import linkplot  # noqa: E402
from test_link_plot_parts import _cap, drawn_codebook_map, drawn_tile_maps  # noqa: E402

BLUE, ORANGE, GREEN, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"  # QPSK, 16-, 64-, 256-QAM
VIRIDIS_0, VIRIDIS_HALF, VIRIDIS_1 = (0.267004, 0.004874, 0.329415), (0.127568, 0.566949, 0.550556), \
    (0.993248, 0.906157, 0.143936)
TITLE = "received constellation, equalised\n$y/(h\\sqrt{p_t})$, "


def _link_cap(s, orders, powers, h, *, grid=None, V=3, N=4, noise_var=1.0, p_tot=None, gamma=None):
    """A capture whose used channel uses equalise to ``s``: ``y = s h sqrt(p)`` (unused ones: ``9+9j``)."""
    s, orders, powers = np.asarray(s, np.complex128), np.asarray(orders), np.asarray(powers, np.float64)
    h = np.asarray(h, np.complex128)
    n, T = orders.shape
    y = np.where((orders > 0) & (powers > 0), s * h[:, None] * np.sqrt(powers), 9 + 9j).astype(np.complex64)
    cb = np.arange(n * N).reshape(n, N) % V
    return types.SimpleNamespace(
        h=h.astype(np.complex64), y=y, gamma=np.abs(h) ** 2 if gamma is None else np.asarray(gamma, np.float64),
        codebooks=cb, orders=orders, powers=powers, label_errors=np.zeros((n, N), bool),
        grid=(1, n) if grid is None else grid, latent_hw=(2, N // 2), n_codebooks=V,
        p_tot=float(powers.sum(1).max()) if p_tot is None else p_tot, noise_var=noise_var)


def _mixed():
    """2 tiles, 5 uses: 4 QPSK and 3 16-QAM points drawn; 3 unused (order 0, or no power, or both).
    Outside +-1.5: two 16-QAM points and one QPSK point; one QPSK point lies on the edge (1.5)."""
    s = [[0.5 + 0.5j, -1 + 1.55j, 1.5, 0, 0],
         [1.75 - 0.5j, 0, -0.25 + 1.6j, 0.75 + 0.75j, -0.7 - 0.7j]]
    orders = [[2, 4, 2, 0, 8], [4, 0, 2, 4, 2]]
    powers = [[1, 4, 0.25, 0, 0], [1, 1, 4, 0.25, 1]]
    return _link_cap(s, orders, powers, [2j, -0.5])


def _points(coll) -> np.ndarray:
    off = np.asarray(coll.get_offsets(), np.float64).reshape(-1, 2)
    return off[:, 0] + 1j * off[:, 1]


def _rgb(c):
    return pytest.approx(to_rgba(c)[:3], abs=1e-6)


def _legend(ax):
    leg = ax.get_legend()
    return leg, [t.get_text() for t in leg.get_texts()], leg.legend_handles


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


# ---------------------------------------------------------------------------- constellation


def test_constellation_draws_the_used_points_by_order_dense_first(ax):
    linkplot._constellation(ax, _mixed(), max_tiles=48, seed=0)
    c16, c4 = ax.collections
    assert np.allclose(_points(c16), [-1 + 1.55j, 1.75 - 0.5j, 0.75 + 0.75j], atol=1e-6)
    assert np.allclose(_points(c4), [0.5 + 0.5j, 1.5, -0.25 + 1.6j, -0.7 - 0.7j], atol=1e-6)
    assert _points(c4)[1] == 1.5
    for c, col in ((c16, ORANGE), (c4, BLUE)):
        assert c.get_facecolor()[0][:3] == _rgb(col)
        assert c.get_sizes().tolist() == [14.0]  # 7 points: 4000 / 7 clipped to 14
        assert c.get_alpha() == 0.75
        assert list(c.get_linewidths()) == [0] and c.get_rasterized() and c.get_zorder() == 2
    ideal2, ideal4, hline, vline = ax.lines
    for line, m in ((ideal2, 2), (ideal4, 4)):
        pts = qam.constellation(m)
        assert np.array_equal(line.get_xdata(), pts.real) and np.array_equal(line.get_ydata(), pts.imag)
        assert line.get_marker() == "+" and line.get_linestyle() == "None"
        assert to_rgba(line.get_color()) == to_rgba("0.15") and line.get_markersize() == 5
        assert line.get_markeredgewidth() == 0.5 and line.get_alpha() == 0.6 and line.get_zorder() == 3
    assert list(hline.get_ydata()) == [0, 0] and list(vline.get_xdata()) == [0, 0]
    for line in (hline, vline):
        assert to_rgba(line.get_color()) == to_rgba("0.85") and line.get_linewidth() == 0.6
        assert line.get_zorder() == 0
    assert ax.get_xlim() == (-1.5, 1.5) and ax.get_ylim() == (-1.5, 1.5) and ax.get_box_aspect() == 1
    assert ax.get_xlabel() == "in-phase" and ax.get_ylabel() == "quadrature"
    assert ax.get_title() == TITLE + "all 2 tiles" and ax.title.get_fontsize() == 10
    (txt,) = ax.texts  # 3 of the 7 points: 2 of 3 16-QAM, 1 of 4 QPSK
    assert txt.get_text() == "42.9% of points outside"
    assert txt.get_position() == (0.02, 0.02) and txt.get_transform() is ax.transAxes
    assert txt.get_fontsize() == 7 and to_rgba(txt.get_color()) == to_rgba("0.3") and txt.get_va() == "bottom"


def test_constellation_legend_counts_every_tile(ax):
    linkplot._constellation(ax, _mixed(), max_tiles=48, seed=0)
    leg, labels, handles = _legend(ax)
    assert labels == ["QPSK (4)", "16-QAM (3)", "ideal points", "unused, not drawn (3)"]
    for hd, col in zip(handles[:2], (BLUE, ORANGE)):
        assert hd.get_marker() == "o" and hd.get_markersize() == 5 and to_rgba(hd.get_color())[:3] == _rgb(col)
        assert hd.get_linestyle() == "None"
    assert handles[2].get_marker() == "+" and handles[2].get_markersize() == 6
    assert to_rgba(handles[2].get_color()) == to_rgba("k") and handles[2].get_linestyle() == "None"
    assert handles[3].get_marker() == "x" and handles[3].get_markersize() == 5
    assert to_rgba(handles[3].get_color()) == to_rgba("0.55") and handles[3].get_linestyle() == "None"
    assert leg.get_title().get_text() == "symbols, all tiles" and leg.get_title().get_fontsize() == 7
    assert all(t.get_fontsize() == 7 for t in leg.get_texts())
    assert leg._ncols == 2 and leg._loc == 9 and leg.borderaxespad == 0 and not leg.get_frame_on()
    anchor = ax.transAxes.inverted().transform(leg.get_bbox_to_anchor().get_points()[:1])
    assert anchor.tolist() == [pytest.approx([0.5, -0.16])]


def test_constellation_of_dense_orders_and_a_sample_of_tiles(ax):
    """10 tiles, one 64-QAM and one 256-QAM point each, told apart by their value; 4 of them drawn."""
    n = 10
    k = np.arange(n)
    s = np.stack([0.1 * k, 0.1j * k + 0.05, np.zeros(n)], 1)
    cap = _link_cap(s, np.tile([6, 8, 0], (n, 1)), np.tile([1.0, 4.0, 0.0], (n, 1)), np.exp(1j * k), grid=(2, 5))
    linkplot._constellation(ax, cap, max_tiles=4, seed=3)
    pick = np.sort(np.random.default_rng(3).choice(n, 4, replace=False))
    assert len(set(pick.tolist())) == 4
    c256, c64 = ax.collections
    assert np.allclose(_points(c256), 0.1j * pick + 0.05, atol=1e-6)
    assert np.allclose(_points(c64), 0.1 * pick, atol=1e-6)
    assert c256.get_facecolor()[0][:3] == _rgb(RED) and c64.get_facecolor()[0][:3] == _rgb(GREEN)
    ideal64, ideal256 = ax.lines[:2]
    assert len(ideal64.get_xdata()) == 64 and len(ideal256.get_xdata()) == 256
    assert ideal64.get_markersize() == 3 and ideal256.get_markersize() == 3
    lim = 1.35 * 15 / np.sqrt(170)  # the outermost 256-QAM level, 15 / sqrt(170), with a margin
    assert ax.get_xlim() == pytest.approx((-lim, lim)) and ax.get_ylim() == pytest.approx((-lim, lim))
    assert ax.get_title() == TITLE + "4 of 10 tiles"
    assert _legend(ax)[1] == ["64-QAM (10)", "256-QAM (10)", "ideal points", "unused, not drawn (10)"]
    assert not ax.texts  # nothing outside
    ax.clear()
    linkplot._constellation(ax, cap, max_tiles=10, seed=3)
    assert ax.get_title() == TITLE + "all 10 tiles"
    assert np.allclose(_points(ax.collections[1]), 0.1 * k, atol=1e-6)
    ax.clear()
    linkplot._constellation(ax, cap, max_tiles=9, seed=3)
    assert ax.get_title() == TITLE + "9 of 10 tiles" and len(ax.collections[1].get_offsets()) == 9


@pytest.mark.parametrize("n_used, size, alpha", [(5, 14.0, 0.75), (625, 6.4, 0.75), (700, 4000 / 700, 0.4),
                                                 (2500, 2.0, 0.4)])
def test_constellation_marker_size_and_alpha_follow_the_point_count(ax, n_used, size, alpha):
    T = n_used + 1200
    orders = np.where(np.arange(T) < n_used, 2, 0)[None]
    cap = _link_cap(np.full((1, T), 0.5 - 0.5j), orders, (orders > 0).astype(float), [1.0])
    linkplot._constellation(ax, cap, max_tiles=48, seed=0)
    (c,) = ax.collections
    assert c.get_sizes().tolist() == [pytest.approx(size, rel=1e-12)] and c.get_alpha() == alpha
    assert _legend(ax)[1] == [f"QPSK ({n_used:,})", "ideal points", "unused, not drawn (1,200)"]
    assert ax.get_title() == TITLE + "1 tile"


def test_constellation_with_every_use_drawn_has_no_unused_entry(ax):
    cap = _link_cap([[0.5 + 0.5j, -0.5 - 0.5j]], [[2, 2]], [[1.0, 1.0]], [1.0])
    linkplot._constellation(ax, cap, max_tiles=48, seed=0)
    assert _legend(ax)[1] == ["QPSK (2)", "ideal points"] and not ax.texts


def test_constellation_with_nothing_sent_draws_no_points(ax):
    cap = _link_cap([[0, 0, 0]], [[0, 2, 0]], [[0.0, 0.0, 1.0]], [1.0])
    linkplot._constellation(ax, cap, max_tiles=48, seed=0)
    assert not ax.collections and len(ax.lines) == 2 and not ax.texts  # the axes only
    assert _legend(ax)[1] == ["unused, not drawn (3)"]
    assert ax.get_xlim() == (-1.5, 1.5) and ax.get_ylim() == (-1.5, 1.5)
    assert ax.get_title() == TITLE + "1 tile"


def test_constellation_points_on_the_edge_are_inside(ax):
    cap = _link_cap([[1.5j, -1.5, 0.5 + 0.5j, 0.5 + 1.51j]], [[2, 2, 2, 2]], [[1.0, 1.0, 1.0, 1.0]], [1.0])
    linkplot._constellation(ax, cap, max_tiles=48, seed=0)
    (txt,) = ax.texts  # +-1.5 (the limit) on either axis is inside; only 1.51j is out
    assert txt.get_text() == "25.0% of points outside"


# ---------------------------------------------------------------------------- power per symbol


def _power_cap():
    """3 tiles of 6 uses, noise 2; tile 1 has the median gamma; its p / sigma^2: 1 2 0 3 4 0."""
    orders = [[2, 2, 2, 2, 2, 2], [2, 4, 0, 2, 8, 6], [4, 4, 4, 4, 4, 4]]
    powers = [[20, 2, 2, 2, 2, 2], [2, 4, 0, 6, 8, 0], [0, 6, 4, 10, 2, 12]]
    return _link_cap(np.zeros((3, 6)), orders, powers, [1, 1, 1], gamma=[10.0, 4.0, 1.0], noise_var=2.0,
                     p_tot=24.0)


def test_representative_is_the_median_gamma_first_among_ties():
    assert linkplot._representative(_power_cap()) == 1
    assert linkplot._representative(types.SimpleNamespace(gamma=[5.0, 1.0, 5.0, 3.0])) == 3  # the lower median
    assert linkplot._representative(types.SimpleNamespace(gamma=[7.0])) == 0
    g = np.random.default_rng(0).integers(0, 3, 101).astype(float)  # many ties
    v = np.sort(g)[50]
    assert linkplot._representative(types.SimpleNamespace(gamma=g)) == np.flatnonzero(g == v)[50 - np.sum(g < v)]


def test_powers_of_the_representative_tile(ax):
    cap = _power_cap()
    linkplot._powers(ax, cap)
    bars = [[(p.get_x(), p.get_width(), p.get_height()) for p in c.patches] for c in ax.containers]
    assert bars == [[(-0.5, 1.0, 1.0), (2.5, 1.0, 3.0)], [(0.5, 1.0, 2.0)], [(3.5, 1.0, 4.0)]]
    for c, col in zip(ax.containers, (BLUE, ORANGE, RED)):
        for p in c.patches:
            assert p.get_facecolor()[:3] == _rgb(col) and p.get_linewidth() == 0
    unused, hi, lo, mean = ax.lines
    assert list(unused.get_xdata()) == [2, 5] and list(unused.get_ydata()) == [0, 0]
    assert unused.get_marker() == "x" and unused.get_linestyle() == "None" and unused.get_markersize() == 4
    assert to_rgba(unused.get_color()) == to_rgba("0.55") and not unused.get_clip_on()
    p = np.sort(np.asarray(cap.powers) / 2.0, axis=0)  # 3 tiles: linear interpolation between the sorted
    assert np.allclose(lo.get_ydata(), p[0] + 0.1 * (p[1] - p[0]))  # 5 %: a tenth of the way to the middle
    assert np.allclose(hi.get_ydata(), p[1] + 0.9 * (p[2] - p[1]))
    assert np.allclose(lo.get_ydata(), [0.1, 1.1, 0.1, 1.2, 1.0, 0.1])
    for line in (hi, lo):
        assert list(line.get_xdata()) == list(range(6)) and line.get_drawstyle() == "steps-mid"
        assert to_rgba(line.get_color()) == to_rgba("k") and line.get_linewidth() == 0.8
        assert line.get_linestyle() == ":"
    assert list(mean.get_ydata()) == [2.0, 2.0]  # P_tot / T / sigma^2 = 24 / 6 / 2
    assert to_rgba(mean.get_color()) == to_rgba("0.4") and mean.get_linewidth() == 0.8
    assert mean.get_linestyle() == "--"
    assert ax.get_xlim() == (-0.5, 5.5) and ax.get_ylim() == pytest.approx((0, 10.8))
    assert ax.get_xlabel() == "channel use $t$" and ax.get_ylabel() == "$p_t\\,/\\,\\sigma^2$"
    assert ax.get_title() == "power per symbol\ntile 1 (median $\\gamma$ = 6.0 dB)" and ax.title.get_fontsize() == 10


def test_powers_legend(ax):
    linkplot._powers(ax, _power_cap())
    leg, labels, handles = _legend(ax)
    assert labels == ["QPSK (2)", "16-QAM (1)", "256-QAM (1)", "unused, $p_t = 0$ (2)", "5-95 % over 3 tiles",
                      "$P_{tot}/T$"]
    for hd, col in zip(handles[:3], (BLUE, ORANGE, RED)):
        assert hd.get_marker() == "s" and hd.get_markersize() == 6 and to_rgba(hd.get_color())[:3] == _rgb(col)
        assert hd.get_linestyle() == "None"
    assert handles[3].get_marker() == "x" and handles[3].get_markersize() == 5
    assert to_rgba(handles[3].get_color()) == to_rgba("0.55") and handles[3].get_linestyle() == "None"
    assert to_rgba(handles[4].get_color()) == to_rgba("k") and handles[4].get_linewidth() == 0.8
    assert handles[4].get_linestyle() == ":"
    assert to_rgba(handles[5].get_color()) == to_rgba("0.4") and handles[5].get_linewidth() == 0.8
    assert handles[5].get_linestyle() == "--"
    assert all(t.get_fontsize() == 7 for t in leg.get_texts()) and leg.get_title().get_text() == ""
    assert leg._ncols == 2 and leg._loc == 9 and leg.borderaxespad == 0 and not leg.get_frame_on()
    anchor = ax.transAxes.inverted().transform(leg.get_bbox_to_anchor().get_points()[:1])
    assert anchor.tolist() == [pytest.approx([0.5, -0.16])]


def test_powers_of_two_tiles_draw_the_range_over_tiles(ax):
    cap = _link_cap(np.zeros((2, 2)), [[2, 2], [2, 2]], [[1.0, 3.0], [2.0, 2.0]], [1, 1], gamma=[4.0, 1.0],
                    p_tot=4.0)
    linkplot._powers(ax, cap)
    hi, lo, mean = ax.lines
    assert np.allclose(lo.get_ydata(), [1.05, 2.05]) and np.allclose(hi.get_ydata(), [1.95, 2.95])
    assert _legend(ax)[1] == ["QPSK (2)", "5-95 % over 2 tiles", "$P_{tot}/T$"]
    assert ax.get_title() == "power per symbol\ntile 1 (median $\\gamma$ = 0.0 dB)"


def test_powers_of_one_tile(ax):
    cap = _link_cap([[0, 0]], [[2, 2]], [[1.0, 1.0]], [1.0], gamma=[0.0], p_tot=10.0)
    linkplot._powers(ax, cap)
    (mean,) = ax.lines  # no unused marks, no range over tiles
    assert list(mean.get_ydata()) == [5.0, 5.0]
    assert ax.get_ylim() == pytest.approx((0, 5.4))  # the mean is above every p_t
    assert ax.get_title() == "power per symbol\n$\\gamma$ = -40.0 dB"
    assert _legend(ax)[1] == ["QPSK (2)", "$P_{tot}/T$"]


def test_powers_of_a_tile_that_sent_nothing(ax):
    cap = _link_cap([[0, 0, 0]], [[0, 0, 0]], [[0.0, 0.0, 0.0]], [1.0], gamma=[1.0], p_tot=0.0)
    linkplot._powers(ax, cap)
    assert not ax.containers
    unused, mean = ax.lines
    assert list(unused.get_xdata()) == [0, 1, 2] and list(mean.get_ydata()) == [0.0, 0.0]
    assert ax.get_ylim() == (0, 1.0) and ax.get_xlim() == (-0.5, 2.5)
    assert _legend(ax)[1] == ["unused, $p_t = 0$ (3)", "$P_{tot}/T$"]
    assert ax.get_title() == "power per symbol\n$\\gamma$ = 0.0 dB"


# ---------------------------------------------------------------------------- codebook and tile maps


def test_codebook_map_colours_marks_and_ticks():
    cap = _cap()
    with drawn_codebook_map(cap) as (fig, ax):  # [[0, 1], [2, 3]], V = 3: 3 is "not sent"
        (im,) = ax.images
        cols = [to_rgba(c) for c in im.cmap.colors]
        assert cols[:3] == [pytest.approx(c + (1.0,), abs=1e-6) for c in (VIRIDIS_0, VIRIDIS_HALF, VIRIDIS_1)]
        assert cols[3] == to_rgba("#d9d9d9") and len(cols) == 4
        assert im.norm.boundaries.tolist() == [-0.5, 0.5, 1.5, 2.5, 3.5] and im.norm.Ncmap == 4
        assert im.get_interpolation() == "nearest"
        assert im.colorbar is not None and im.colorbar.ax is fig.axes[1]  # the scale of this image
        texts = [(t.get_position(), t.get_text(), to_rgba(t.get_color())) for t in ax.texts]
        assert texts == [((0, 0), "1", to_rgba("w")), ((1, 0), "2", to_rgba("w")), ((0, 1), "3", to_rgba("k")),
                         ((1, 1), "-", to_rgba("0.35"))]  # dark viridis: white digits; yellow: black
        assert all(t.get_ha() == "center" and t.get_va() == "center" and t.get_fontsize() == 8 for t in ax.texts)
        (mark,) = ax.patches
        assert (mark.get_width(), mark.get_height(), mark.get_fill(), mark.get_linewidth()) == (0.9, 0.9, False, 1.2)
        assert mark.get_edgecolor() == to_rgba("red")
        cbar = fig.axes[-1]
        assert list(cbar.get_yticks()) == [0, 1, 2, 3]
        assert all(t.get_fontsize() == 8 for t in cbar.get_yticklabels())
        assert cbar.get_ylabel() == "codebook" and cbar.yaxis.label.get_fontsize() == 9
        assert cbar.get_position().height / ax.get_position().height == pytest.approx(0.9)
        assert list(ax.get_xticks()) == [0, 1] and list(ax.get_yticks()) == [0, 1]
        assert all(t.label1.get_fontsize() == 7 for t in ax.xaxis.get_major_ticks() + ax.yaxis.get_major_ticks())
        assert ax.title.get_fontsize() == 10


def test_codebook_map_out_of_range_codebooks_are_not_sent():
    cap = _cap()
    cap.codebooks = np.array([[-1, 5, 0, 2]] * 6)
    with drawn_codebook_map(cap) as (fig, ax):
        assert ax.images[0].get_array().tolist() == [[3, 3], [0, 2]]
        assert [t.get_text() for t in ax.texts] == ["-", "-", "1", "3"]
        assert ax.get_title() == "codebook per sub-vector (2x2 latent)\n0 wrong labels (red), 2 not sent"


def test_codebook_map_of_a_tall_latent():
    errs = np.array([[False, False, True, False]])
    cap = types.SimpleNamespace(codebooks=np.array([[0, 1, 2, 3]]), n_codebooks=4, latent_hw=(4, 1), label_errors=errs)
    with drawn_codebook_map(cap) as (fig, ax):
        assert ax.images[0].get_array().tolist() == [[0], [1], [2], [3]]
        assert [t.get_position() for t in ax.texts] == [(0, 0), (0, 1), (0, 2), (0, 3)]
        assert [(p.get_x(), p.get_y()) for p in ax.patches] == [(-0.45, 2 - 0.45)]
        assert list(ax.get_xticks()) == [0] and list(ax.get_yticks()) == [0, 1, 2, 3]
        assert ax.get_title() == "codebook per sub-vector (4x1 latent)\n1 wrong label (red)"


@pytest.mark.parametrize("N, fontsize", [(16, 8), (17, 5)])
def test_codebook_map_digits_shrink_on_wide_latents(N, fontsize):
    cap = types.SimpleNamespace(codebooks=np.zeros((1, N), int), n_codebooks=2, latent_hw=(1, N),
                                label_errors=np.zeros((1, N), bool))
    with drawn_codebook_map(cap) as (fig, ax):
        assert {t.get_fontsize() for t in ax.texts} == {fontsize} and len(ax.texts) == N
        assert [to_rgba(c) for c in ax.images[0].cmap.colors][:2] == [
            pytest.approx(VIRIDIS_0 + (1.0,), abs=1e-6), pytest.approx(VIRIDIS_1 + (1.0,), abs=1e-6)]


def test_tile_maps_styles():
    cap = _cap()
    with drawn_tile_maps(cap) as (fig, ag, am):
        (ig,), (im,) = ag.images, am.images
        assert ig.cmap.name == "magma" and im.cmap.name == "viridis"
        assert im.cmap.get_bad() == pytest.approx(to_rgba("#d9d9d9"))
        assert (im.norm.vmin, im.norm.vmax) == (1, 3)
        for i, a in ((ig, ag), (im, am)):
            assert i.get_interpolation() == "nearest" and a.get_aspect() == "auto"
            assert a.title.get_fontsize() == 10
            assert all(t.label1.get_fontsize() == 7 for t in a.xaxis.get_major_ticks() + a.yaxis.get_major_ticks())
        cg, cm = fig.axes[2:]
        assert ig.colorbar.ax is cg and im.colorbar.ax is cm  # each image's own scale
        assert cg.get_ylabel() == "$\\gamma$ (dB)" and cg.yaxis.label.get_fontsize() == 9
        assert cm.get_ylabel() == "mean codebook" and cm.yaxis.label.get_fontsize() == 9
        assert list(cm.get_yticks()) == [1, 2, 3]
        assert cg.get_position().height / ag.get_position().height == pytest.approx(0.85)
        assert cm.get_position().height / am.get_position().height == pytest.approx(0.85)


def test_tile_maps_of_high_codebooks_and_an_unsent_tile_keep_the_scale_and_quiet():
    cb = np.array([[1, 2, 1, 2], [3, 3, -1, 3], [1, 1, 1, 1]])  # tile 1 sent nothing (V = 3)
    cap = types.SimpleNamespace(gamma=np.ones(3), codebooks=cb, n_codebooks=3, grid=(1, 3))
    fig, (ag, am) = plt.subplots(1, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the unsent tile's 0 / 0 stays silent
            linkplot._tile_maps(fig, ag, am, cap)
        (im,) = am.images
        assert (im.norm.vmin, im.norm.vmax) == (1, 3)  # the codebook scale, not the data's 2..2.5
        data = im.get_array()
        assert data.mask.tolist() == [[False, True, False]] and data[0, [0, 2]].tolist() == [2.5, 2.0]
        assert am.get_title() == "mean codebook per tile\nnot sent: 33.3% of sub-vectors"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("grid", [(1, 12), (13, 1)])
def test_tile_maps_ticks_every_tile_up_to_12(grid):
    from matplotlib.ticker import MaxNLocator

    n = grid[0] * grid[1]
    cap = types.SimpleNamespace(gamma=np.ones(n), codebooks=np.zeros((n, 2), int), n_codebooks=1, grid=grid)
    with drawn_tile_maps(cap) as (fig, ag, am):
        assert am.images[0].norm.vmax == 2  # at least 1..2 with one codebook
        for a in (ag, am):
            for axis, k in ((a.xaxis, grid[1]), (a.yaxis, grid[0])):
                loc = axis.get_major_locator()
                if k <= 12:
                    assert list(axis.get_ticklocs()) == list(range(k))
                else:
                    assert isinstance(loc, MaxNLocator) and loc._integer


# ---------------------------------------------------------------------------- dB, used, images


def test_db_keeps_quiet_on_zero_and_is_float64():
    with np.errstate(all="raise"):
        assert linkplot._db(np.array([0.0, 100.0])).tolist() == [-40.0, 20.0]
    assert linkplot._db(np.array([10.0], np.float32)).dtype == np.float64
    assert linkplot._db([1000]).tolist() == [30.0]


def test_used_needs_an_order_and_power():
    cap = types.SimpleNamespace(orders=[[1, 2, 0, 2]], powers=[[0.5, 0.0, 0.5, 1e-9]])
    assert linkplot._used(cap).tolist() == [[True, False, False, True]]


@pytest.mark.parametrize("shape, interp", [((128, 100, 3), "nearest"), ((10, 129, 3), "antialiased")])
def test_image_panel(ax, shape, interp):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    linkplot._image(ax, img, "a title")
    (im,) = ax.images
    assert np.array_equal(im.get_array(), img) and im.get_interpolation() == interp
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    assert ax.get_title() == "a title" and ax.title.get_fontsize() == 10


# ---------------------------------------------------------------------------- the figure


def _fig_cap(n, grid):
    cap = _cap() if n == 6 else types.SimpleNamespace(
        codebooks=np.array([[0, 1, 2, 3]]), n_codebooks=3, latent_hw=(2, 2), grid=grid, gamma=np.array([2.0]),
        label_errors=np.array([[True, False, False, True]]))
    k = np.arange(n)
    s = np.stack([0.1 * k, 0.1j * k + 0.05, np.zeros(n), np.zeros(n), np.zeros(n)], 1)  # QPSK: 0.1 k
    link = _link_cap(s, np.tile([2, 4, 0, 4, 4], (n, 1)), np.tile([1.0, 1.0, 0.0, 1.0, 1.0], (n, 1)), np.ones(n))
    cap.h, cap.y, cap.orders, cap.powers, cap.p_tot, cap.noise_var = (link.h, link.y, link.orders, link.powers,
                                                                        4.0, 1.0)
    return cap


def _by_title(fig, start):
    (ax,) = [a for a in fig.axes if a.get_title().startswith(start)]
    return ax


def _span(ax):
    ss = ax.get_subplotspec()
    return ss.rowspan, ss.colspan


def test_link_figure_of_one_tile():
    cap = _fig_cap(1, (1, 1))
    orig = np.zeros((64, 96, 3), np.uint8)
    fig = linkplot.link_figure(cap, orig, orig + 1, snr_db=12.5)  # every byte off by one: 20 log10(255) dB
    try:
        assert fig.get_size_inches().tolist() == [14, 8.5]
        assert fig.get_suptitle() == (
            "escmvq link\nSNR 12.5 dB  |  PSNR 48.13 dB  |  1 tile  |  5 channel uses (5 per tile)  |  "
            "33.3% of sent labels wrong  |  4 sub-vectors x 3 codebooks per tile")  # 1 of the 3 sent
        assert fig._suptitle.get_fontsize() == 12
        con, pw = _by_title(fig, "received"), _by_title(fig, "power per symbol")
        cb, o, r = _by_title(fig, "codebook per"), _by_title(fig, "original"), _by_title(fig, "reconstruction")
        assert con.get_title() == TITLE + "1 tile" and pw.get_title().endswith("$\\gamma$ = 3.0 dB")
        assert o.get_title() == "original (96x64)" and r.get_title() == "reconstruction (PSNR 48.13 dB)"
        assert cb.images[0].get_array().tolist() == [[0, 1], [2, 3]]
        assert [_span(a) for a in (con, pw, cb, o, r)] == [
            (range(0, 1), range(0, 2)), (range(0, 1), range(2, 4)), (range(0, 1), range(4, 6)),
            (range(1, 2), range(0, 3)), (range(1, 2), range(3, 6))]
        assert con.get_subplotspec().get_gridspec().get_height_ratios() == [1, 1.25]
        assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
        assert not fig.get_layout_engine()._compress
    finally:
        plt.close(fig)


def test_link_figure_of_many_tiles_and_a_wide_image():
    cap = _fig_cap(6, (2, 3))
    orig = np.zeros((32, 81, 3), np.uint8)  # wider than 2.5 x its height: original above reconstruction
    fig = linkplot.link_figure(cap, orig, orig, snr_db=-3.0, psnr_db=21.456, title="my run", max_tiles=2, seed=5,
                               layout="compressed")
    try:
        assert fig.get_size_inches().tolist() == [18, 10]
        assert fig.get_suptitle() == (
            "my run\nSNR -3 dB  |  PSNR 21.46 dB  |  6 tiles  |  30 channel uses (5 per tile)  |  "
            "11.8% of sent labels wrong  |  4 sub-vectors x 3 codebooks per tile")  # 2 of the 17 sent
        con = _by_title(fig, "received")
        pick = np.sort(np.random.default_rng(5).choice(6, 2, replace=False))
        assert con.get_title() == TITLE + "2 of 6 tiles"
        assert np.allclose(_points(con.collections[1]), 0.1 * pick, atol=1e-6)
        pw, g, m = _by_title(fig, "power per"), _by_title(fig, "channel per tile"), _by_title(fig, "mean codebook")
        o, r = _by_title(fig, "original"), _by_title(fig, "reconstruction")
        assert [_span(a) for a in (con, pw, g, m, o, r)] == [
            (range(0, 1), range(0, 3)), (range(0, 1), range(3, 6)), (range(0, 1), range(6, 9)),
            (range(0, 1), range(9, 12)), (range(1, 2), range(0, 12)), (range(2, 3), range(0, 12))]
        assert con.get_subplotspec().get_gridspec().get_height_ratios() == [1, 0.6, 0.6]
        assert fig.get_layout_engine()._compress
        assert r.get_title() == "reconstruction (PSNR 21.46 dB)" and o.get_title() == "original (81x32)"
    finally:
        plt.close(fig)
    fig = linkplot.link_figure(cap, np.zeros((32, 80, 3), np.uint8), np.zeros((32, 80, 3), np.uint8), snr_db=0,
                               psnr_db=1.0)  # 2.5 x: side by side
    try:
        o, r = _by_title(fig, "original"), _by_title(fig, "reconstruction")
        assert [_span(o), _span(r)] == [(range(1, 2), range(0, 6)), (range(1, 2), range(6, 12))]
    finally:
        plt.close(fig)


def test_link_figure_defaults_to_48_tiles_drawn_with_seed_0():
    cap = _fig_cap(49, (7, 7))
    cap.codebooks = np.full((49, 4), 3)  # nothing sent
    cap.gamma, cap.label_errors = np.ones(49), np.ones((49, 4), bool)
    img = np.zeros((32, 32, 3), np.uint8)
    fig = linkplot.link_figure(cap, img, img, snr_db=1.0, psnr_db=99.0)
    try:
        con = _by_title(fig, "received")
        assert con.get_title() == TITLE + "48 of 49 tiles"
        pick = np.sort(np.random.default_rng(0).choice(49, 48, replace=False))
        assert np.allclose(_points(con.collections[1]), 0.1 * pick, atol=1e-6)
        assert "  |  0.0% of sent labels wrong  |  " in fig.get_suptitle()
        assert "  |  49 tiles  |  245 channel uses (5 per tile)  |  " in fig.get_suptitle()
    finally:
        plt.close(fig)


def test_check_returns_the_sizes_and_names_each_bad_field():
    cap = _fig_cap(6, (2, 3))
    assert linkplot._check(cap) == (6, 5, 4)
    good = dict(vars(cap))
    bad = {"h": (np.zeros(5), "capture.h: expected shape (6,), got (5,)"),
           "gamma": (np.zeros((6, 1)), "capture.gamma: expected shape (6,), got (6, 1)"),
           "codebooks": (np.zeros((7, 4)), "capture.codebooks: expected shape (6, 4), got (7, 4)"),
           "orders": (np.zeros((6, 4)), "capture.orders: expected shape (6, 5), got (6, 4)"),
           "powers": (np.zeros(30), "capture.powers: expected shape (6, 5), got (30,)"),
           "label_errors": (np.zeros((6, 3)), "capture.label_errors: expected shape (6, 4), got (6, 3)"),
           "grid": ((3, 3), "capture.grid (3, 3) does not hold 6 tiles")}
    for name, (value, msg) in bad.items():
        c = types.SimpleNamespace(**{**good, name: value})
        with pytest.raises(ValueError) as e:
            linkplot._check(c)
        assert str(e.value) == msg
    empty = types.SimpleNamespace(y=np.zeros((0, 5)), h=np.zeros(0), gamma=np.zeros(0), codebooks=np.zeros((0, 4)),
                                  orders=np.zeros((0, 5)), powers=np.zeros((0, 5)), label_errors=np.zeros((0, 4)),
                                  grid=(0, 0))
    with pytest.raises(ValueError) as e:
        linkplot._check(empty)
    assert str(e.value) == "capture: no tiles"
    before = plt.get_fignums()
    with pytest.raises(ValueError) as e:  # checked before any drawing
        linkplot.link_figure(types.SimpleNamespace(**{**good, "grid": (2, 2)}), None, None, snr_db=0.0)
    assert str(e.value) == "capture.grid (2, 2) does not hold 6 tiles" and plt.get_fignums() == before


# ---------------------------------------------------------------------------- rendering and saving


def test_render_link_plot_png_at_the_given_dpi():
    from PIL import Image

    cap = _fig_cap(1, (1, 1))
    img = np.zeros((32, 32, 3), np.uint8)
    before = plt.get_fignums()
    png = linkplot.render_link_plot(cap, img, img, dpi=40, snr_db=3.0, psnr_db=10.0)
    assert plt.get_fignums() == before  # closed
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (560, 340)  # 14 x 8.5 inches
    with Image.open(io.BytesIO(linkplot.render_link_plot(cap, img, img, snr_db=3.0, psnr_db=10.0))) as im:
        assert im.size == (1400, 850)  # 100 dpi by default


@pytest.mark.parametrize("warn, layouts", [(False, ["constrained"]), (True, ["constrained", "compressed"])])
def test_render_link_plot_falls_back_to_compressed_layout(monkeypatch, warn, layouts):
    seen, saved = [], []

    def fake_figure(cap, original, reconstruction, *, layout, **kw):
        seen.append((cap, original, reconstruction, layout, kw))
        fig = plt.figure(figsize=(1, 1), layout=layout)

        def savefig(buf, **skw):
            saved.append(skw)
            if warn and layout == "constrained":
                warnings.warn("constrained_layout not applied because axes sizes collapsed", UserWarning)
            buf.write(layout.encode())

        fig.savefig = savefig
        return fig

    monkeypatch.setattr(linkplot, "link_figure", fake_figure)
    before = plt.get_fignums()
    png = linkplot.render_link_plot("cap", "o", "r", dpi=37, snr_db=5.0, seed=2)
    assert [s[3] for s in seen] == layouts and png == layouts[-1].encode()
    assert all(s[:3] == ("cap", "o", "r") and s[4] == {"snr_db": 5.0, "seed": 2} for s in seen)
    assert saved == [{"format": "png", "dpi": 37}] * len(layouts)
    assert plt.get_fignums() == before  # every figure closed


def test_save_link_plot_passes_its_arguments(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(linkplot, "render_link_plot", lambda *a, **k: calls.append((a, k)) or b"\x89PNG")
    out = linkplot.save_link_plot(str(tmp_path / "a.png"), "cap", "o", "r", dpi=20, snr_db=1.0)
    assert out == tmp_path / "a.png" and isinstance(out, Path) and out.read_bytes() == b"\x89PNG"
    assert calls == [(("cap", "o", "r"), {"dpi": 20, "snr_db": 1.0})]
    with pytest.raises(FileNotFoundError):  # checked before rendering
        linkplot.save_link_plot(tmp_path / "no" / "a.png", "cap", "o", "r")
    assert len(calls) == 1


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(linkplot.PlotUnavailable) as e:
        linkplot.require_matplotlib()
    assert str(e.value) == "the link plot needs matplotlib, which is not installed: pip install 'escmvq[plot]'"
    assert e.value.__cause__ is None and e.value.__suppress_context__ and isinstance(e.value, ImportError)
    with pytest.raises(linkplot.PlotUnavailable):
        linkplot._plt()


def test_plt_is_pyplot_on_agg():
    assert linkplot._plt() is plt and matplotlib.get_backend().lower() == "agg"
    linkplot.require_matplotlib()  # present: nothing raised
