"""SigMF metadata field by field: every refusal of :func:`escmvq.runtime.sigmf.meta_to_frame`
and :func:`read_sigmf` word for word, the estimated-CSI fields both ways, the core fields
:func:`frame_to_meta` and :func:`write_sigmf` write."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("sigmf")

from escmvq.runtime import frame as _frame  # noqa: E402
from test_runtime_sigmf import _frame as _frame_of  # noqa: E402  (the same test frame)
from escmvq.runtime.sigmf import (SigMFError, _one_line, frame_to_meta, meta_to_frame, read_sigmf,  # noqa: E402
                                  sigmf_paths, write_sigmf)


@pytest.fixture(scope="module")
def pilots_frame(bundle_dir):
    from PIL import Image

    from escmvq.export.testing import KODAK
    from escmvq.runtime.transmitter import Transmitter, transmit_image

    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[:40, :70]
    return transmit_image(Transmitter(bundle_dir, csi="pilots"), img, 5.0, np.random.default_rng(0))[0]


def _refused(g, samples, message):
    with pytest.raises(SigMFError) as e:
        meta_to_frame(g, samples)
    assert str(e.value) == message
    return e.value


def _with(good: dict, **kv) -> dict:
    """``good`` with fields replaced (``escmvq__tiles=3`` sets ``escmvq:tiles``) or removed (``=KeyError``)."""
    g = dict(good)
    for k, v in kv.items():
        k = k.replace("__", ":")
        if v is KeyError:
            g.pop(k)
        else:
            g[k] = v
    return g


def _flat(f):
    return f.tile_samples().reshape(-1)


# ------------------------------- what is written -------------------------------
def test_core_fields(pilots_frame):
    from escmvq import __version__

    f = _frame_of()
    g = frame_to_meta(f)
    assert g["core:description"] == ("escmvq transmitted samples: 90x40 image, 6 tiles x 5 channel uses, rayleigh, "
                                     "SNR 7.5 dB; the sample rate is nominal (default 1e+06 Hz, tx --sample-rate)")
    assert g["core:recorder"] == f"escmvq {__version__}" and "core:author" not in g
    assert g["core:sample_rate"] == 1e6 and g["escmvq:seed"] is None
    assert g["escmvq:h"] == [[float(v.real), float(v.imag)] for v in f.h]
    g = frame_to_meta(f, 0.5, 3, "my capture", "me")  # any positive rate, even below 1 Hz
    assert (g["core:sample_rate"], g["escmvq:seed"], g["core:description"], g["core:author"]) == (
        0.5, 3, "my capture", "me")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(SigMFError) as e:
            frame_to_meta(f, bad)
        assert str(e.value) == f"sample rate must be a positive number of Hz, got {bad!r}"
    gp = frame_to_meta(pilots_frame)
    c = pilots_frame.csi
    assert ", estimated CSI, rayleigh," in gp["core:description"]
    assert gp["core:description"].startswith(
        f"escmvq transmitted samples: 70x40 image, 6 tiles x ({c.pilots} pilots + ")
    assert gp["escmvq:pilot_power"] is None and gp["escmvq:csi"] == "pilots"


def test_pilot_power_round_trip(pilots_frame):
    f = dataclasses.replace(pilots_frame, csi=dataclasses.replace(pilots_frame.csi, pilot_power=2.5))
    g = frame_to_meta(f)
    assert g["escmvq:pilot_power"] == 2.5 and type(g["escmvq:pilot_power"]) is float
    back = meta_to_frame(g, _flat(f))
    assert back.csi == f.csi and np.array_equal(back.preamble, f.preamble) and np.array_equal(back.samples, f.samples)
    back = meta_to_frame(frame_to_meta(pilots_frame), _flat(pilots_frame))
    assert back.csi == pilots_frame.csi and back.csi.pilot_power is None


def test_one_tile_of_one_channel_use():
    f = _frame_of(n=1, T=1, image_size=(32, 32), n_bits=8)
    back = meta_to_frame(frame_to_meta(f), f.samples.reshape(-1))
    assert back.samples.shape == (1, 1) and np.array_equal(back.samples, f.samples)


def test_write_passes_description_and_author_and_one_capture(tmp_path):
    from sigmf import sigmffile

    data, meta = write_sigmf(_frame_of(), tmp_path / "r", description="bench capture", author="lab 3")
    text = meta.read_text()
    assert text.endswith("}\n") and '\n    "global": {' in text  # pretty-printed
    rec = sigmffile.fromfile(str(meta))
    g = rec.get_global_info()
    assert g["core:description"] == "bench capture" and g["core:author"] == "lab 3"
    assert [c["core:sample_start"] for c in rec.get_captures()] == [0]


def test_a_replaced_data_file_stays_when_the_metadata_fails(tmp_path, monkeypatch):
    """With --force over an existing recording, a metadata failure does not delete the data
    file that was there (it is the user's); a new one is taken back."""
    import sigmf

    data, meta = write_sigmf(_frame_of(), tmp_path / "r")

    def refuse(self):
        raise sigmf.error.SigMFValidationError("bad   metadata\n  here")

    monkeypatch.setattr(sigmf.SigMFFile, "validate", refuse)
    with pytest.raises(SigMFError) as e:
        write_sigmf(_frame_of(seed=2), tmp_path / "r", force=True)
    assert str(e.value) == "SigMF metadata rejected by the sigmf package: bad metadata here"
    assert data.exists()
    with pytest.raises(SigMFError):
        write_sigmf(_frame_of(), tmp_path / "new")
    assert not sigmf_paths(tmp_path / "new")[0].exists()


def test_one_line():
    assert _one_line(ValueError("a  b\n c")) == "a b c"
    s = "x" * 200
    assert _one_line(ValueError(s)) == s
    assert _one_line(ValueError(s + "y")) == "x" * 197 + "..."


# ------------------------------- what is refused -------------------------------
def test_field_refusals_word_for_word():
    f = _frame_of()
    good = frame_to_meta(f)
    s = _flat(f)

    def with_(**kv):
        return _with(good, **kv)

    _refused(with_(core__extensions=KeyError), s, "not an escmvq recording (no escmvq extension in the metadata)")
    _refused(with_(escmvq__frame_version="1"), s, 'escmvq:frame_version = "1" is not an integer')
    _refused(with_(escmvq__channel=5), s, "escmvq:channel = 5 is not a channel name")
    _refused(with_(escmvq__channel="lte"), s, "escmvq:channel 'lte' unknown (expected one of awgn, rayleigh)")
    _refused(with_(escmvq__bundle_sha256=7), s, "escmvq:bundle_sha256 = 7 is not a hex string")
    e = _refused(with_(escmvq__bundle_sha256="zz"), s, "escmvq:bundle_sha256 is not a hex string")
    assert e.__suppress_context__
    _refused(with_(escmvq__snr_db="7"), s, 'escmvq:snr_db = "7" is not a number')
    _refused(with_(escmvq__p_tot=True), s, "escmvq:p_tot = true is not a number")
    _refused(with_(escmvq__tiles=True), s, "escmvq:tiles = true is not an integer")
    _refused(with_(escmvq__channel_uses_per_tile=KeyError), s,
             "metadata lacks escmvq:channel_uses_per_tile (an integer)")
    _refused(with_(escmvq__bits_per_tile=18.0), s, "escmvq:bits_per_tile = 18.0 is not an integer")
    _refused(with_(escmvq__channel_uses_per_tile="x" * 100), s,
             "escmvq:channel_uses_per_tile = " + json.dumps("x" * 100)[:60] + " is not an integer")
    for n, T in ((0, 5), (6, 0), (-1, 5)):
        _refused(with_(escmvq__tiles=n, escmvq__channel_uses_per_tile=T), s,
                 f"escmvq:tiles = {n}, escmvq:channel_uses_per_tile = {T}: must be > 0")
    _refused(with_(escmvq__image_size=KeyError), s, "metadata lacks escmvq:image_size (a list of two integers)")
    _refused(with_(escmvq__image_size="40x90"), s, 'escmvq:image_size = "40x90" is not a list of two integers')
    for bad in ([40, 2.5], [40, True], [40], [1] * 40):
        _refused(with_(escmvq__tile_size=bad), s, f"escmvq:tile_size = {json.dumps(bad)[:60]} is not a list of two integers")
    _refused(with_(escmvq__h=KeyError), s, "metadata lacks escmvq:h (a list of [re, im] pairs)")
    _refused(with_(escmvq__h="none"), s, 'escmvq:h = "none" is not a list of [re, im] pairs')
    _refused(with_(escmvq__h=good["escmvq:h"][:5]), s, "escmvq:h holds 5 coefficients for 6 tiles")
    for bad in ([[1.0, 2.0, 3.0]] * 6, [["a", "b"]] * 6, [[1.0, [2.0]]] * 6):
        _refused(with_(escmvq__h=bad), s, "escmvq:h is not a list of [re, im] number pairs")
    _refused(good, np.concatenate([s, s[:1]]), "the data file holds 31 samples, the metadata announces 6 tiles x 5 = 30")
    _refused(good, s[:-1], "the data file holds 29 samples, the metadata announces 6 tiles x 5 = 30 (truncated)")
    assert meta_to_frame(good, s.reshape(6, 5)).samples.shape == (6, 5)  # any shape holding the samples


def test_csi_field_refusals_word_for_word(pilots_frame):
    f = pilots_frame
    good = frame_to_meta(f)
    s = _flat(f)
    c = f.csi
    k, r, T = good["escmvq:header_symbols"], c.repetitions, f.n_symbols

    def with_(**kv):
        return _with(good, **kv)

    _refused(with_(escmvq__csi="dmrs"), s, "escmvq:csi 'dmrs' unknown (frame version 3 recordings use 'pilots')")
    _refused(with_(escmvq__pilots=KeyError), s, "metadata lacks escmvq:pilots (an integer)")
    _refused(with_(escmvq__header_repetitions="2"), s, 'escmvq:header_repetitions = "2" is not an integer')
    _refused(with_(escmvq__pilot_power=0), s, "escmvq:pilot_power = 0: write null for the default P_tot / T")
    _refused(with_(escmvq__pilot_power="1"), s, 'escmvq:pilot_power = "1" is not a number or null')
    _refused(with_(escmvq__pilot_power=False), s, "escmvq:pilot_power = false is not a number or null")
    try:
        _frame.csi_from_fields(c.pilots, r, c.scale_bits, -1.0)
    except _frame.FrameError as e:
        want = str(e)
    e = _refused(with_(escmvq__pilot_power=-1.0), s, want)
    assert e.__suppress_context__
    assert meta_to_frame(with_(escmvq__pilot_power=1), s).csi.pilot_power == 1.0  # an integer is a number
    P = c.pilots + k * r
    _refused(with_(escmvq__samples_per_tile=P + T + 1), s,
             f"escmvq:samples_per_tile = {P + T + 1} is not {c.pilots} pilots + {r} x {k} header + {T} data symbols")
    _refused(with_(escmvq__header_symbols=0, escmvq__samples_per_tile=c.pilots + T), s,
             f"escmvq:samples_per_tile = {c.pilots + T} is not {c.pilots} pilots + {r} x 0 header + {T} data symbols")
    # one header symbol is allowed by this check (the data file then has the wrong size)
    e = _refused(with_(escmvq__header_symbols=1, escmvq__samples_per_tile=c.pilots + r + T), s,
                 f"the data file holds {s.size} samples, the metadata announces 6 tiles x {c.pilots + r + T} = "
                 f"{6 * (c.pilots + r + T)}")
    assert k > 1


def test_read_refusals_word_for_word(tmp_path):
    data, meta = write_sigmf(_frame_of(), tmp_path / "r")
    good = data.read_bytes()
    data.write_bytes(good[:-8])
    with pytest.raises(SigMFError) as e:
        read_sigmf(meta)
    assert str(e.value) == (f"{data}: 232 bytes, the metadata announces 6 tiles x 5 complex64 samples = 240 bytes"
                            " (truncated)")
    data.write_bytes(good + bytes(16))
    with pytest.raises(SigMFError) as e:
        read_sigmf(meta)
    assert str(e.value) == f"{data}: 256 bytes, the metadata announces 6 tiles x 5 complex64 samples = 240 bytes"
    data.write_bytes(good)
    text = meta.read_bytes()
    meta.write_bytes(b'{"captures": []}')
    with pytest.raises(SigMFError) as e:
        read_sigmf(meta)
    assert str(e.value) == f"{meta}: not a SigMF metadata file (no global object)"
    meta.write_bytes(b"[1, 2]")
    with pytest.raises(SigMFError) as e:
        read_sigmf(meta)
    assert str(e.value) == f"{meta}: not a SigMF metadata file (not a JSON object)"
    meta.write_bytes(text.replace(b'"core:description": "', b'"core:description": "\xff'))
    with pytest.raises(SigMFError) as e:  # not a UnicodeDecodeError from the sigmf package
        read_sigmf(meta)
    assert str(e.value) == f"{meta}: not a SigMF metadata file (not UTF-8 text)"
    meta.write_bytes(text)
    assert read_sigmf(meta).n_tiles == 6
