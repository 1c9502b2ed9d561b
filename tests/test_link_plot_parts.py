"""The link plot's panels, checked by what they draw (image data, labels, marks, titles) on a
small hand-made capture; test_link_plot.py renders whole figures from real links."""
from __future__ import annotations

import types
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from escmvq.runtime import linkplot  # noqa: E402


def _cap(V=3):
    """2 x 3 tiles of a 2 x 2 latent (N = 4); tile 5 sends nothing."""
    cb = np.array([[0, 1, 2, 3], [0, 0, 0, 0], [2, 2, 3, 3], [1, 1, 1, 1], [0, 2, 2, 2], [3, 3, 3, 3]])
    errs = np.zeros_like(cb, bool)
    errs[0, 1] = errs[2, 3] = errs[4, 0] = True  # (2, 3) is not sent: no mark
    return types.SimpleNamespace(
        codebooks=cb, n_codebooks=V, latent_hw=(2, 2), label_errors=errs, grid=(2, 3),
        gamma=np.array([1.0, 10.0, 100.0, 0.0, 1e-6, 2.0]),
        orders=np.array([[2, 0, 4], [0, 0, 0]]), powers=np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 1.0]]))


@contextmanager
def drawn_codebook_map(cap, r: int = 0):
    """``_codebook_map`` of tile ``r`` on a new figure: yields ``(fig, ax)``, closes the figure after."""
    fig, ax = plt.subplots()
    try:
        linkplot._codebook_map(fig, ax, cap, r)
        yield fig, ax
    finally:
        plt.close(fig)


@contextmanager
def drawn_tile_maps(cap):
    """``_tile_maps`` on a new figure of two axes: yields ``(fig, ax_gamma, ax_mean)``, closes the figure after."""
    fig, (ag, am) = plt.subplots(1, 2)
    try:
        linkplot._tile_maps(fig, ag, am, cap)
        yield fig, ag, am
    finally:
        plt.close(fig)


def test_used_and_db():
    cap = _cap()
    assert linkplot._used(cap).tolist() == [[True, False, False], [False, False, False]]
    d = linkplot._db(np.array([1.0, 10.0, 0.0, 1e-6, 1e-3]))
    assert d.dtype == np.float64 and d.tolist() == [0.0, 10.0, -40.0, -40.0, -30.0]
    assert linkplot._db(np.array([1e-6]), floor=-70.0).tolist() == pytest.approx([-60.0])


def test_codebook_map_draws_each_sub_vector():
    cap = _cap()
    with drawn_codebook_map(cap) as (fig, ax):
        assert ax.images[0].get_array().tolist() == [[0, 1], [2, 3]]
        assert [t.get_text() for t in ax.texts] == ["1", "2", "3", "-"]
        marks = [p for p in ax.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
        assert [(p.get_x(), p.get_y()) for p in marks] == [(1 - 0.45, 0 - 0.45)]
        assert ax.get_title() == "codebook per sub-vector (2x2 latent)\n1 wrong label (red), 1 not sent"
        cbar = fig.axes[-1]
        assert [t.get_text() for t in cbar.get_yticklabels()] == ["1", "2", "3", "not sent"]
        assert ax.get_xlabel() == "latent column" and ax.get_ylabel() == "latent row"
        ax.clear()
        linkplot._codebook_map(fig, ax, cap, 2)  # one error on a sent, one on an unsent sub-vector
        assert ax.get_title() == "codebook per sub-vector (2x2 latent)\n0 wrong labels (red), 2 not sent"
        ax.clear()
        linkplot._codebook_map(fig, ax, cap, 4)
        assert ax.get_title() == "codebook per sub-vector (2x2 latent)\n1 wrong label (red)"
        assert [t.get_text() for t in ax.texts] == ["1", "3", "3", "3"]


def test_codebook_map_of_a_non_square_latent_is_one_row():
    cap = _cap()
    cap.latent_hw = (3, 3)  # does not hold N = 4: drawn as one row
    with drawn_codebook_map(cap) as (fig, ax):
        assert ax.images[0].get_array().tolist() == [[0, 1, 2, 3]]
        assert ax.get_title().startswith("codebook per sub-vector (1x4 latent)\n")


def test_tile_maps():
    cap = _cap()
    with drawn_tile_maps(cap) as (fig, ag, am):
        assert ag.images[0].get_array().tolist() == [[0.0, 10.0, 20.0], [-40.0, -40.0, pytest.approx(3.0103, abs=1e-4)]]
        m = am.images[0].get_array()
        assert m.mask.tolist() == [[False, False, False], [False, False, True]]
        assert m.data[:1].tolist() == [[2.0, 1.0, 3.0]] and m.data[1, :2].tolist() == [2.0, 2.5]
        assert am.get_title() == "mean codebook per tile\nnot sent: 29.2% of sub-vectors"
        assert ag.get_title() == "channel per tile\n$\\gamma = |h|^2/\\sigma^2$"
        for ax in (ag, am):
            assert ax.get_xlabel() == "tile column" and ax.get_ylabel() == "tile row"
            assert list(ax.get_xticks()) == [0, 1, 2] and list(ax.get_yticks()) == [0, 1]
        cap.codebooks = np.zeros((6, 4), int)
        with drawn_tile_maps(cap) as (_, bg, bm):
            assert bm.get_title() == "mean codebook per tile\nover the sub-vectors sent"


def test_save_link_plot_refuses_an_existing_file_unless_forced(tmp_path, monkeypatch):
    monkeypatch.setattr(linkplot, "render_link_plot", lambda *a, **k: b"png bytes")
    p = tmp_path / "x.png"
    p.write_bytes(b"mine")
    from escmvq.runtime.files import OutputExistsError

    with pytest.raises(OutputExistsError):
        linkplot.save_link_plot(p, None, None, None)
    assert p.read_bytes() == b"mine"
    linkplot.save_link_plot(p, None, None, None, force=True)
    assert p.read_bytes() == b"png bytes"
