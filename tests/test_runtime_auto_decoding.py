"""``decoding="auto"`` (the receivers' default): the decoding the bundle recommends in its
manifest (``escmvq export --decoding``), hard decisions where it recommends none."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from escmvq.core import channels
from escmvq.runtime.bundle import BundleError, load_bundle
from escmvq.runtime.receiver import DEFAULT_DECODING, Receiver, resolve_decoding


def _with_receiver(src, dst, rec):
    """A copy of bundle ``src`` at ``dst`` whose manifest's ``receiver`` section is ``rec``
    (None: removed)."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m.pop("receiver", None)
    if rec is not None:
        m["receiver"] = rec
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _noisy(bundle, seed=3, b=4):
    rng = np.random.default_rng(seed)
    T = bundle.n_symbols
    y = (rng.standard_normal((b, T)) + 1j * rng.standard_normal((b, T))).astype(np.complex64)
    return y, channels.rayleigh(rng, b)


def test_auto_is_the_default_and_follows_the_bundles_recommendation(bundle_dir, tmp_path):
    assert DEFAULT_DECODING == "auto"
    soft_b = load_bundle(_with_receiver(bundle_dir, tmp_path / "soft.escmvq", {"decoding": "soft"}))
    none_b = load_bundle(_with_receiver(bundle_dir, tmp_path / "none.escmvq", None))
    # the recommendation is not part of the identity: frames of either copy decode with the other
    assert soft_b.hash == none_b.hash
    assert soft_b.recommended_decoding == "soft" and none_b.recommended_decoding is None
    assert resolve_decoding("auto", soft_b) == "soft" and resolve_decoding("auto", none_b) == "hard"
    assert resolve_decoding("hard", soft_b) == "hard" and resolve_decoding("soft", none_b) == "soft"

    auto_soft, auto_none = Receiver(soft_b), Receiver(none_b)
    assert auto_soft.decoding == "soft" and auto_none.decoding == "hard"
    assert auto_soft.settings["decoding"] == "soft" and auto_soft.settings["auto"] is True
    assert auto_none.settings == {"decoding": "hard", "estimate": None, "llr": None, "prior": None, "auto": True}
    assert "auto" not in Receiver(soft_b, decoding="soft").settings

    y, h = _noisy(soft_b)
    got = auto_soft.receive(y, h, 50.0).tiles
    assert np.array_equal(got, Receiver(soft_b, decoding="soft").receive(y, h, 50.0).tiles)
    assert not np.allclose(got, Receiver(soft_b, decoding="hard").receive(y, h, 50.0).tiles, atol=1e-4)
    assert np.array_equal(auto_none.receive(y, h, 50.0).tiles,
                          Receiver(none_b, decoding="hard").receive(y, h, 50.0).tiles)


@pytest.mark.parametrize("rec", [{"decoding": "auto"}, {"decoding": "fancy"}, "soft", {}])
def test_a_bad_recommendation_is_refused_in_one_line(bundle_dir, tmp_path, rec):
    p = _with_receiver(bundle_dir, tmp_path / "bad.escmvq", rec)
    with pytest.raises(BundleError, match="receiver") as e:
        load_bundle(p)
    assert "\n" not in str(e.value)


def test_the_shipped_default_bundle_recommends_soft():
    b = load_bundle()
    assert b.recommended_decoding == "soft" and b.label_prior is not None
    rx = Receiver(b)
    assert rx.settings == {"decoding": "soft", "estimate": "mmse", "llr": "exact", "prior": "bundle", "auto": True}


def test_export_writes_the_recommendation_and_refuses_soft_without_a_prior(bundle_dir, tmp_path):
    from escmvq.export.pipeline import export_checkpoint
    from escmvq.training.trainer import synthetic_images

    imgs = synthetic_images(48, 32, 1)
    np.save(tmp_path / "imgs.npy", imgs)
    ck = bundle_dir.parent / "tiny.ckpt"
    kw = dict(n_calib=16, n_check=16, int8=False, log=lambda m: None)
    res = export_checkpoint(ck, tmp_path / "s.escmvq", tmp_path / "imgs.npy", stats_source=tmp_path / "imgs.npy",
                            n_stats=48, decoding="soft", **kw)
    assert res.manifest["receiver"] == {"decoding": "soft"}
    assert Receiver(res.path).decoding == "soft"
    plain = export_checkpoint(ck, tmp_path / "p.escmvq", tmp_path / "imgs.npy", stats_source=tmp_path / "imgs.npy",
                              n_stats=48, **kw)
    assert "receiver" not in plain.manifest and plain.hash == res.hash
    for bad, word in (({"decoding": "soft"}, "label prior"), ({"decoding": "auto", "stats_source": tmp_path / "imgs.npy"},
                                                               "expected one of hard, soft")):
        with pytest.raises(ValueError, match=word):
            export_checkpoint(ck, tmp_path / "x.escmvq", tmp_path / "imgs.npy", **bad, **kw)
    assert not (tmp_path / "x.escmvq").exists()


def test_export_distortion_table_for_the_soft_receiver(bundle_dir, tmp_path):
    """``distortion_for="soft"``: the table (31) recomputed with the posterior-mean reconstruction
    on the statistics latents (a different table, hence a different identity), named in the
    manifest; it needs the label prior."""
    from escmvq.export.pipeline import export_checkpoint
    from escmvq.training.trainer import synthetic_images

    np.save(tmp_path / "imgs.npy", synthetic_images(48, 32, 2))
    ck = bundle_dir.parent / "tiny.ckpt"
    kw = dict(n_calib=16, n_check=16, int8=False, log=lambda m: None, stats_source=tmp_path / "imgs.npy", n_stats=48)
    hard = export_checkpoint(ck, tmp_path / "h.escmvq", tmp_path / "imgs.npy", **kw)
    soft_ = export_checkpoint(ck, tmp_path / "s.escmvq", tmp_path / "imgs.npy", distortion_for="soft", **kw)
    assert soft_.manifest["model"]["distortion_source"].startswith("soft receiver")
    assert not hard.manifest["model"]["distortion_source"].startswith("soft")
    dh, ds = (load_bundle(r.path).distortion for r in (hard, soft_))
    assert soft_.hash != hard.hash and not np.allclose(dh, ds)
    kw.pop("stats_source")
    with pytest.raises(ValueError, match="label prior"):
        export_checkpoint(ck, tmp_path / "x.escmvq", tmp_path / "imgs.npy", distortion_for="soft", **kw)
    with pytest.raises(ValueError, match="hard or soft"):
        export_checkpoint(ck, tmp_path / "x.escmvq", tmp_path / "imgs.npy", distortion_for="map", **kw)
    assert not (tmp_path / "x.escmvq").exists()
