"""SigMF recordings: ``escmvq.runtime.sigmf`` (Frame <-> NAME.sigmf-data + NAME.sigmf-meta) and
``escmvq tx --sigmf`` / ``escmvq rx NAME.sigmf-meta``."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run

pytest.importorskip("sigmf")


def _frame(kind=0, n=6, T=5, seed=1, image_size=(40, 90), n_bits=18):
    from escmvq.runtime.frame import Frame

    rng = np.random.default_rng(seed)
    c = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(np.complex64)  # noqa: E731
    return Frame(kind=kind, channel="rayleigh", bundle_hash=bytes(range(32)), snr_db=7.5, p_tot=3.25, noise_var=0.5,
                 image_size=image_size, tile_size=(32, 32), n_bits=n_bits, h=c(n), samples=c(n, T))


def _same(a, b):
    for k in ("kind", "channel", "bundle_hash", "snr_db", "p_tot", "noise_var", "image_size", "tile_size", "n_bits"):
        assert getattr(a, k) == getattr(b, k), k
    assert a.h.dtype == b.h.dtype == np.complex64 and np.array_equal(a.h, b.h)
    assert a.samples.dtype == b.samples.dtype == np.complex64 and np.array_equal(a.samples, b.samples)


@pytest.mark.parametrize("kind", [0, 1])
def test_round_trip_is_exact_and_valid_sigmf(tmp_path, kind):
    from sigmf import sigmffile

    from escmvq.runtime.sigmf import read_sigmf, write_sigmf

    f = _frame(kind)
    data, meta = write_sigmf(f, tmp_path / "rec", sample_rate=2.5e6, seed=9)
    assert (data.name, meta.name) == ("rec.sigmf-data", "rec.sigmf-meta")
    # the data file is the samples, cf32_le, tile after tile
    assert data.read_bytes() == f.samples.astype("<c8").tobytes()
    rec = sigmffile.fromfile(str(meta))  # the sigmf package reads it back and checks the sha512
    rec.validate()
    g = rec.get_global_info()
    assert g["core:datatype"] == "cf32_le" and g["core:sample_rate"] == 2.5e6 and g["core:version"]
    assert {"name": "escmvq", "version": "1.0.0", "optional": False} in g["core:extensions"]
    assert g["escmvq:kind"] == ("transmitted", "received")[kind] and g["escmvq:seed"] == 9
    assert g["escmvq:tiles"] == 6 and g["escmvq:channel_uses_per_tile"] == 5 and g["escmvq:image_size"] == [40, 90]
    assert np.array_equal(rec.read_samples(), f.samples.reshape(-1))
    for name in ("rec", "rec.sigmf-meta", "rec.sigmf-data"):  # any of the three names reads the recording
        _same(read_sigmf(tmp_path / name), f)


def test_meta_to_frame_refuses_what_the_tx_parser_refuses(tmp_path):
    from escmvq.runtime.frame import FrameError
    from escmvq.runtime.sigmf import SigMFError, frame_to_meta, meta_to_frame

    f = _frame()
    g = frame_to_meta(f)
    flat = f.samples.reshape(-1)
    _same(meta_to_frame(g, flat), f)
    cases = [
        ({"core:datatype": "ci16_le"}, flat, "datatype 'ci16_le' not supported"),
        ({"escmvq:frame_version": 1}, flat, "version 1 not supported: its samples use the earlier QAM labelling"),
        ({"escmvq:frame_version": 99}, flat, "version 99 not supported"),
        ({"escmvq:kind": "sideways"}, flat, "escmvq:kind 'sideways' unknown"),
        ({"escmvq:channel": "rician"}, flat, "escmvq:channel 'rician' unknown"),
        ({"escmvq:h": g["escmvq:h"][:-1]}, flat, "5 coefficients for 6 tiles"),
        ({"escmvq:h": [[0.0, 0.0]] * 6}, flat, "channel coefficient of tile 0 is zero"),
        ({"escmvq:noise_var": -1.0}, flat, "must be > 0"),
        ({"escmvq:tiles": "6"}, flat, "escmvq:tiles = \"6\" is not an integer"),
        ({"escmvq:image_size": [40]}, flat, "not a list of two integers"),
        ({"core:extensions": []}, flat, "not an escmvq recording"),
        ({}, flat[:-1], "holds 29 samples, the metadata announces 6 tiles x 5 = 30 (truncated)"),
        ({"escmvq:image_size": [400, 90]}, flat, "needs 39"),
    ]
    for change, samples, msg in cases:
        with pytest.raises(SigMFError, match=None) as e:
            meta_to_frame({**g, **change}, samples)
        assert msg in str(e.value) and "\n" not in str(e.value), (change, str(e.value))
        assert isinstance(e.value, FrameError)
    gone = dict(g)
    del gone["escmvq:p_tot"]
    with pytest.raises(SigMFError, match="lacks escmvq:p_tot"):
        meta_to_frame(gone, flat)


def test_a_failed_write_leaves_nothing_and_existing_files_need_force(tmp_path, monkeypatch):
    import sigmf

    from escmvq.runtime.files import OutputExistsError
    from escmvq.runtime.sigmf import SigMFError, write_sigmf

    def reject(self):
        raise sigmf.error.SigMFValidationError("schema says no\nsecond line")

    with monkeypatch.context() as m:
        m.setattr(sigmf.SigMFFile, "validate", reject)
        with pytest.raises(SigMFError, match="rejected by the sigmf package: schema says no second line"):
            write_sigmf(_frame(), tmp_path / "rec")
    assert list(tmp_path.iterdir()) == []  # the data file went first and was taken back
    write_sigmf(_frame(), tmp_path / "rec")
    (tmp_path / "rec.sigmf-meta").unlink()
    with pytest.raises(OutputExistsError, match="--force"):  # either file existing is enough to refuse
        write_sigmf(_frame(seed=2), tmp_path / "rec")
    assert (tmp_path / "rec.sigmf-data").read_bytes() == _frame().samples.tobytes()
    write_sigmf(_frame(seed=2), tmp_path / "rec", force=True)
    assert (tmp_path / "rec.sigmf-data").read_bytes() == _frame(seed=2).samples.tobytes()
    with pytest.raises(SigMFError, match="sample rate"):
        write_sigmf(_frame(), tmp_path / "bad", sample_rate=0.0)


def test_without_the_sigmf_package_one_line_says_how_to_get_it(work, monkeypatch):
    from escmvq.runtime.sigmf import SigMFError, read_sigmf, require_sigmf

    monkeypatch.setitem(sys.modules, "sigmf", None)
    with pytest.raises(SigMFError, match=r"pip install 'escmvq\[radio\]'"):
        require_sigmf()
    with pytest.raises(SigMFError, match="escmvq"):
        read_sigmf(work / "x")
    assert_one_line_error(run("tx", "--snr", "10", "img.png", "--sigmf", "-o", "rec"), "escmvq[radio]")
    assert sorted(p.name for p in work.iterdir()) == ["img.png"]


@pytest.mark.parametrize("through", [False, True])
def test_rx_decodes_a_recording_to_the_bytes_of_the_tx_frame(work, bundle_dir, through):
    extra = ["--through-channel"] if through else []
    for args in (["-o", "a.tx"], ["--sigmf", "-o", "rec", "--sample-rate", "2e6"]):
        res = run("tx", "--snr", "8", "img.png", "-b", bundle_dir, "--seed", "3", *args, *extra)
        assert res.exit_code == 0, res.stderr
    assert "rec.sigmf-data and rec.sigmf-meta (SigMF, 2e+06 Hz)" in res.stdout
    assert json.loads((work / "rec.sigmf-meta").read_text())["global"]["escmvq:kind"] == \
        ("received" if through else "transmitted")
    for src, out in (("a.tx", "a.png"), ("rec.sigmf-meta", "r.png")):
        res = run("rx", src, "-o", out, "-b", bundle_dir, "--seed", "5", "-r", "img.png")
        assert res.exit_code == 0, res.stderr
    assert (work / "a.png").read_bytes() == (work / "r.png").read_bytes()
    # and the recording holds exactly the frame's samples
    from escmvq.runtime.frame import parse

    assert (work / "rec.sigmf-data").read_bytes() == parse((work / "a.tx").read_bytes()).samples.tobytes()


def test_bad_recordings_are_one_line_errors_with_no_output(work, bundle_dir):
    assert run("tx", "--snr", "10", "img.png", "-b", bundle_dir, "--sigmf", "-o", "rec").exit_code == 0
    meta, data = (work / "rec.sigmf-meta").read_text(), (work / "rec.sigmf-data").read_bytes()

    def rec(name, m=meta, d=data):
        (work / f"{name}.sigmf-meta").write_text(m)
        if d is not None:
            (work / f"{name}.sigmf-data").write_bytes(d)

    rec("dtype", m=meta.replace('"cf32_le"', '"ci16_le"'))
    rec("nodata", d=None)
    rec("cut", d=data[:-8])
    flipped = bytearray(data)
    flipped[100] ^= 0x40
    rec("flip", d=bytes(flipped))
    rec("nojson", m="{not json")
    other = work / "other.escmvq"
    shutil.copytree(bundle_dir, other)
    m = json.loads((other / "manifest.json").read_text())
    m["model"]["quantizer"] = "another model"
    (other / "manifest.json").write_text(json.dumps(m))
    before = {p.name for p in work.iterdir()}
    for name, msg in (("dtype", "datatype 'ci16_le' not supported"), ("nodata", "nodata.sigmf-data: no such file"),
                      ("cut", "(truncated)"), ("flip", "hash does not match"), ("nojson", "not a SigMF metadata file"),
                      ("missing", "missing.sigmf-meta: no such file")):
        assert_one_line_error(run("rx", f"{name}.sigmf-meta", "-o", "o.png", "-b", bundle_dir), msg)
    assert_one_line_error(run("rx", "rec.sigmf-meta", "-o", "o.png", "-b", other), "refusing to decode")
    # an existing output is kept without --force (either of the two files)
    assert_one_line_error(run("tx", "--snr", "10", "img.png", "-b", bundle_dir, "--sigmf", "-o", "rec"), "--force")
    (work / "x.sigmf-data").write_bytes(b"precious")
    assert_one_line_error(run("tx", "--snr", "10", "img.png", "-b", bundle_dir, "--sigmf", "-o", "x.sigmf-meta"),
                          "x.sigmf-data exists")
    assert (work / "x.sigmf-data").read_bytes() == b"precious"
    assert_one_line_error(run("tx", "--snr", "10", "img.png", "-b", bundle_dir, "--sigmf", "-o", "y",
                              "--sample-rate", "0"), "--sample-rate", code=2)
    assert {p.name for p in work.iterdir()} == before | {"x.sigmf-data"}
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temporary files
    res = run("tx", "--snr", "10", "img.png", "-b", bundle_dir, "--sigmf", "-o", "rec", "--force", "--seed", "1")
    assert res.exit_code == 0 and (work / "rec.sigmf-data").read_bytes() != data
