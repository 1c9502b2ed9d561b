"""``escmvq.runtime.stream`` in one process: the wire framing on socket pairs, the receiver's
socket claim, output names, and ``serve_receiver`` / ``run_transmitter`` in threads against each
other or against scripted peers, on the shipped bundle. Fast and exact (no subprocesses).

Sockets live in a short folder under /tmp: a Unix socket path must stay under ~108 bytes."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import select
import shutil
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from escmvq.runtime import stream
from escmvq.runtime.images import load_image
from escmvq.runtime.stream import (MSG_ACK, MSG_END, MSG_HELLO, MSG_IMAGE, StreamError, _emit, _one_line,
                                   _output_path, _recv_exact, _safe_stem, claim_socket_path, recv_msg, send_msg)

JOIN = 10.0  # seconds a thread may take before the test gives up (a hang guard)
SHAPES = {"a/x.png": (40, 70), "b/x.png": (20, 30), "c/y.png": (33, 45), "d/z.png": (32, 32)}


# ------------------------------------------------------------------------ fixtures and helpers
@pytest.fixture(scope="module")
def kit():
    """The shipped bundle, a transmitter and a receiver on it, and a good frame (40x70, 6 tiles)."""
    from escmvq.runtime import Receiver, Transmitter
    from escmvq.runtime.bundle import load_bundle
    from escmvq.runtime.link import transmit_image

    bundle = load_bundle()
    tx = Transmitter(bundle)
    img = np.random.default_rng(9).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    frame = transmit_image(tx, img, 10.0, np.random.default_rng(0))[0].to_bytes()
    return types.SimpleNamespace(bundle=bundle, tx=tx, rx=Receiver(bundle), frame=frame)


@pytest.fixture
def sock():
    """A socket path in a fresh short folder."""
    d = tempfile.mkdtemp(prefix="esc", dir="/tmp")
    yield os.path.join(d, "s.sock")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pics(tmp_path) -> Path:
    """Random RGB images at ``SHAPES`` under ``tmp_path/pics``."""
    rng = np.random.default_rng(1)
    for name, (h, w) in SHAPES.items():
        (tmp_path / "pics" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "pics" / name)
    return tmp_path / "pics"


class Lines:
    """A thread-safe stand-in for stdout / stderr: what was written, and how often it was flushed."""

    def __init__(self):
        self._parts, self.flushes, self._lock = [], 0, threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            self._parts.append(s)
        return len(s)

    def flush(self) -> None:
        with self._lock:
            self.flushes += 1

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)

    def wait_for(self, needle: str) -> bool:
        end = time.monotonic() + JOIN
        while needle not in self.text and time.monotonic() < end:
            time.sleep(0.005)
        return needle in self.text


@pytest.fixture
def io(monkeypatch):
    """``io()`` in a test: stdout and stderr from then on, as :class:`Lines` (pytest resets them between a
    fixture and its test)."""
    def grab() -> tuple[Lines, Lines]:
        out, err = Lines(), Lines()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        return out, err

    return grab


@pytest.fixture
def spies(monkeypatch):
    """Record how the stream builds its ends and what it hands to transmit_image / receive_frame
    (``tx_timings`` / ``rx_timings``: replace the stage timings; ``failures``: header failures to report)."""
    import escmvq.runtime.link as link
    import escmvq.runtime.receiver as receiver_mod
    import escmvq.runtime.transmitter as transmitter_mod

    s = types.SimpleNamespace(rx_made=[], tx_made=[], tx_calls=[], rx_calls=[], tx_timings=None, rx_timings=None,
                              failures=[], selects=[])

    class SpyReceiver(receiver_mod.Receiver):
        def __init__(self, bundle, **kwargs):
            s.rx_made.append((bundle, kwargs))
            super().__init__(bundle, **kwargs)

    class SpyTransmitter(transmitter_mod.Transmitter):
        def __init__(self, bundle, **kwargs):
            s.tx_made.append((bundle, kwargs))
            super().__init__(bundle, **kwargs)

    real_tx, real_rx = link.transmit_image, link.receive_frame

    def transmit_image(tx, img, snr_db, rng, *args):
        s.tx_calls.append((tx, img.copy(), snr_db, rng, rng.bit_generator.state, args))
        frame, timings, *rest = real_tx(tx, img, snr_db, rng, *args)
        return (frame, s.tx_timings or timings, *rest)

    def receive_frame(rx, frame, rng, **kwargs):
        s.rx_calls.append((rx, frame, rng, rng.bit_generator.state, dict(kwargs)))
        img, timings, labels = real_rx(rx, frame, rng, **kwargs)
        kwargs["header_failures"].extend(s.failures)
        return img, s.rx_timings or timings, labels

    def spy_select(r, w, x, timeout):
        s.selects.append(timeout)
        return select.select(r, w, x, timeout)

    monkeypatch.setattr(receiver_mod, "Receiver", SpyReceiver)
    monkeypatch.setattr(transmitter_mod, "Transmitter", SpyTransmitter)
    monkeypatch.setattr(link, "transmit_image", transmit_image)
    monkeypatch.setattr(link, "receive_frame", receive_frame)
    monkeypatch.setattr(stream, "select", types.SimpleNamespace(select=spy_select))
    return s


def _bg(fn, *args, **kwargs):
    """``fn`` in a daemon thread: (thread, result dict that gets 'value' or 'error')."""
    res = {}

    def target():
        try:
            res["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - checked by the test
            res["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, res


def _done(t: threading.Thread, res: dict) -> dict:
    t.join(JOIN)
    assert not t.is_alive(), "the thread hangs"
    return res


def _call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a thread, so that a bug cannot hang the test: its value, or its exception raised."""
    res = _done(*_bg(fn, *args, **kwargs))
    if "error" in res:
        raise res["error"]
    return res["value"]


def _serve(sock: str, bundle, outdir, **kwargs):
    """``serve_receiver`` in a thread, once it listens."""
    ready = threading.Event()
    t, res = _bg(stream.serve_receiver, sock, bundle, outdir, ready=ready.set, **kwargs)
    while not ready.wait(0.01):
        assert t.is_alive(), res
    return t, res


def _client(sock: str, hello: bool = True) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(JOIN)
    c.connect(sock)
    if hello:
        assert recv_msg(c)[0] == MSG_HELLO
    return c


def _image(name: bytes, data: bytes) -> bytes:
    return struct.pack("<H", len(name)) + name + data


def _ask(c: socket.socket, payload: bytes) -> dict:
    """Send an image message, return the acknowledgement."""
    send_msg(c, MSG_IMAGE, payload)
    kind, ack = recv_msg(c)
    assert kind == MSG_ACK
    return json.loads(ack)


def _listening(sock: str, bundle) -> str:
    return f"stream rx: listening on {sock} (bundle {bundle.hash_hex[:12]})\n"


def _stale(path: str) -> None:
    """A socket file nobody listens on (a receiver that died)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def _expected(kit, paths, snr_db, tx_seed, rx_seed, channel="rayleigh", per_image=False) -> list[np.ndarray]:
    """What the receiver decodes from ``paths``: the frames through their bytes, one generator per end."""
    from escmvq.runtime.frame import parse
    from escmvq.runtime.receiver import receive_frame
    from escmvq.runtime.transmitter import transmit_image

    txr, rxr = np.random.default_rng(tx_seed), np.random.default_rng(rx_seed)
    outs = []
    for p in paths:
        frame = transmit_image(kit.tx, load_image(p), snr_db, txr, channel, per_image)[0]
        outs.append(receive_frame(kit.rx, parse(frame.to_bytes()), rxr)[0])
    return outs


def _tx_line(rec: dict) -> dict:
    ack = rec["rx"]
    return {k: v for k, v in rec.items() if k != "rx"} | {"rx_ok": ack.get("ok"), "rx_error": ack.get("error"),
                                                          "rx_output": ack.get("output")}


def _dumps(objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


# ------------------------------------------------------------------------ framing
def test_send_msg_writes_the_header_then_the_payload():
    a, b = socket.socketpair()
    b.settimeout(JOIN)
    with a, b:
        send_msg(a, 3, b"xyz")
        send_msg(a, 2)
        send_msg(a, 255, b"\x00")
        want = b"EM\x03\x00\x03\x00\x00\x00xyz" + b"EM\x02\x00\x00\x00\x00\x00" + b"EM\xff\x00\x01\x00\x00\x00\x00"
        assert _recv_exact(b, len(want)) == want


def test_recv_msg_reads_back_every_kind_and_length():
    a, b = socket.socketpair()
    big = bytes(np.random.default_rng(0).integers(0, 256, (3 << 20) + 7, dtype=np.uint8))
    msgs = [(MSG_IMAGE, b"img"), (MSG_END, b""), (MSG_ACK, b"{}"), (MSG_HELLO, b"h" * 300), (0, b"\x00"),
            (255, b""), (7, big), (1, b"after")]
    with a, b:
        t, res = _bg(lambda: [send_msg(a, k, p) for k, p in msgs])
        b.settimeout(JOIN)
        got = [recv_msg(b) for _ in msgs]
        _done(t, res)
        assert got == msgs and all(type(p) is bytes for _, p in got)
        a.close()
        assert recv_msg(b, allow_eof=True) == (None, b"")


class Chunks:
    """A connection that hands out ``chunks`` one per ``recv`` (then EOF) and records the sizes asked for."""

    def __init__(self, *chunks: bytes):
        self.chunks, self.asked = list(chunks), []

    def recv(self, n: int) -> bytes:
        self.asked.append(n)
        c = self.chunks.pop(0) if self.chunks else b""
        assert len(c) <= n
        return c


def test_recv_exact_joins_chunks_and_asks_for_at_most_a_mebibyte():
    c = Chunks(b"a" * (1 << 20), b"bbb", b"cc")
    got = _recv_exact(c, (1 << 20) + 5)
    assert got == b"a" * (1 << 20) + b"bbbcc" and type(got) is bytes
    assert c.asked == [1 << 20, 5, 2]
    c = Chunks(b"x", b"yz")
    assert _recv_exact(c, 3, allow_eof=True) == b"xyz" and c.asked == [3, 2]
    c = Chunks()
    assert _recv_exact(c, 0) == b"" and _recv_exact(c, 0, allow_eof=True) == b"" and c.asked == []


def test_recv_exact_at_end_of_file():
    assert _recv_exact(Chunks(), 4, allow_eof=True) is None
    for conn, allow in [(Chunks(), False), (Chunks(b"ab"), True), (Chunks(b"ab"), False)]:
        with pytest.raises(StreamError) as e:
            _recv_exact(conn, 4, allow)
        assert str(e.value) == "connection closed mid-message"
    with pytest.raises(StreamError, match="^connection closed mid-message$"):
        _recv_exact(Chunks(), 4)  # allow_eof is off by default


def _head(kind: int, n: int, magic: bytes = b"EM", spare: int = 0) -> bytes:
    return magic + bytes([kind, spare]) + n.to_bytes(4, "little")


@pytest.mark.parametrize("allow_eof", [True, False])
def test_recv_msg_at_end_of_file(allow_eof):
    cases = [(_head(1, 0)[:3],), (_head(1, 0)[:7],), (_head(1, 5),), (_head(1, 5), b"ab")]  # in a header or payload
    for chunks in cases:
        with pytest.raises(StreamError, match="^connection closed mid-message$"):
            recv_msg(Chunks(*chunks), allow_eof)
    c = Chunks(_head(4, 0), _head(2, 2, spare=9), b"ok")
    assert recv_msg(c, allow_eof) == (4, b"") and recv_msg(c, allow_eof) == (2, b"ok")
    assert c.asked == [8, 8, 2]
    if allow_eof:
        assert recv_msg(c, True) == (None, b"")
    else:
        with pytest.raises(StreamError, match="^connection closed mid-message$"):
            recv_msg(c)


def test_recv_msg_refuses_a_bad_header():
    for data in [_head(1, 0, b"ME"), _head(1, 0, b"Em"), _head(1, (1 << 30) + 1), _head(1, 0xFFFFFFFF)]:
        c = Chunks(data)
        with pytest.raises(StreamError) as e:
            recv_msg(c, allow_eof=True)
        assert str(e.value) == "bad stream message header" and c.asked == [8]
    c = Chunks(_head(1, 1 << 30))  # the largest message allowed: then the payload is missing
    with pytest.raises(StreamError, match="^connection closed mid-message$"):
        recv_msg(c)
    assert c.asked == [8, 1 << 20]


# ------------------------------------------------------------------------ _emit, _one_line
def test_emit_prints_one_json_line_and_flushes(io):
    out, _ = io()
    _emit({"side": "rx", "ok": False, "n": [1, None], "x": 1.5})
    assert out.text == '{"side": "rx", "ok": false, "n": [1, null], "x": 1.5}\n' and out.flushes >= 1


class _Odd(Exception):
    pass


class _Plugin(Exception):
    pass


_Odd.__module__, _Plugin.__module__ = "xescmvq.odd", "escmvq_plugin"


@pytest.mark.parametrize("exc, line", [
    (StreamError("first\nsecond"), "first"),
    (StreamError("  \n  padded  \nnext"), "padded  "),
    (StreamError(""), "StreamError"),
    (StreamError(" \n "), "StreamError"),
    (OSError("disk\nfull"), "disk"),
    (FileNotFoundError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
    (ValueError("bad value"), "bad value"),
    (ValueError(), "ValueError"),
    (RuntimeError("boom\nmore"), "RuntimeError: boom"),
    (RuntimeError(), "RuntimeError"),
    (RuntimeError("\n"), "RuntimeError"),
    (KeyError("k"), "KeyError: 'k'"),
    (_Odd("m"), "_Odd: m"),
    (_Plugin("p\nq"), "p"),
])
def test_one_line(exc, line):
    assert _one_line(exc) == line


# ------------------------------------------------------------------------ claim_socket_path
def test_claim_leaves_a_free_path_free(sock):
    assert claim_socket_path(sock) is None and not os.path.lexists(sock)


def test_claim_removes_a_stale_socket(sock):
    _stale(sock)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert claim_socket_path(sock) is None and not os.path.lexists(sock)
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # bound, open, but not listening
    with bound:
        bound.bind(sock)
        assert claim_socket_path(sock) is None and not os.path.lexists(sock)


def test_claim_refuses_a_socket_a_receiver_answers_on(sock):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with srv:
        srv.bind(sock)
        srv.listen(4)
        with pytest.raises(StreamError) as e:
            claim_socket_path(sock)
        assert str(e.value) == f"socket {sock} is in use by a running receiver (stop it or choose another --socket)"
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        srv.settimeout(JOIN)
        srv.accept()[0].close()  # the probe connected, and is gone


def test_claim_refuses_a_receiver_with_a_full_queue(sock):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fillers = []
    try:
        srv.bind(sock)
        srv.listen(0)
        while len(fillers) < 64:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            fillers.append(c)
            try:
                c.connect(sock)
            except BlockingIOError:
                break
        else:
            pytest.skip("could not fill the listen queue")
        t, res = _bg(claim_socket_path, sock, probe_timeout=0.5)  # a probe without a timeout would block
        t.join(5.0)
        assert not t.is_alive() and "is in use by a running receiver" in str(res.get("error"))
        assert os.path.lexists(sock)
    finally:
        for c in fillers:
            c.close()
        srv.close()


@pytest.mark.parametrize("what", ["a file", "a folder", "a symbolic link", "a dangling symbolic link",
                                  "a link to a socket", "a fifo"])
def test_claim_refuses_what_is_not_a_socket(sock, what):
    d = os.path.dirname(sock)
    if what == "a file":
        Path(sock).write_text("data")
    elif what == "a folder":
        os.mkdir(sock)
    elif what == "a symbolic link":
        Path(d, "f").write_text("data")
        os.symlink(os.path.join(d, "f"), sock)
    elif what == "a dangling symbolic link":
        os.symlink(os.path.join(d, "nowhere"), sock)
    elif what == "a link to a socket":
        _stale(os.path.join(d, "other.sock"))
        os.symlink(os.path.join(d, "other.sock"), sock)
    else:
        os.mkfifo(sock)
    before = os.lstat(sock)
    with pytest.raises(StreamError) as e:
        claim_socket_path(sock)
    said = {"a fifo": "not a socket"}.get(what, "a symbolic link" if "link" in what else what)
    assert str(e.value) == f"socket path {sock} exists and is {said}: refusing to replace it (choose another --socket)"
    after = os.lstat(sock)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    if what == "a file":
        assert Path(sock).read_text() == "data"
    if what == "a link to a socket":
        assert os.path.lexists(os.path.join(d, "other.sock"))


class _Probe:
    """A probe socket whose ``connect`` raises ``error`` (after ``then()``)."""

    def __init__(self, *args, error=None, then=None):
        self.args, self.error, self.then, self.timeout, self.closed = args, error, then, None, False

    def settimeout(self, t):
        self.timeout = t

    def connect(self, path):
        self.path = path
        if self.then:
            self.then()
        raise self.error

    def close(self):
        self.closed = True


def _probe_with(monkeypatch, error, then=None) -> list:
    made = []

    def factory(*args):
        p = _Probe(*args, error=error, then=then)
        made.append(p)
        return p

    monkeypatch.setattr(stream, "socket", types.SimpleNamespace(socket=factory, AF_UNIX=socket.AF_UNIX,
                                                                SOCK_STREAM=socket.SOCK_STREAM,
                                                                timeout=socket.timeout))
    return made


@pytest.mark.parametrize("error, said", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), None),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), None),
    (socket.timeout("timed out"), "in use"),
    (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), "in use"),
    (PermissionError(errno.EACCES, "Permission denied"), "cannot tell whether it is in use (Permission denied)"),
    (OSError("odd failure"), "cannot tell whether it is in use (odd failure)"),
])
def test_claim_reads_the_probes_outcome(sock, monkeypatch, error, said):
    _stale(sock)
    made = _probe_with(monkeypatch, error)
    if said is None:
        assert claim_socket_path(sock, probe_timeout=0.25) is None
        assert os.path.lexists(sock) == isinstance(error, FileNotFoundError)  # refused: stale, removed
    else:
        with pytest.raises(StreamError) as e:
            claim_socket_path(sock, probe_timeout=0.25)
        if said == "in use":
            assert str(e.value) == (f"socket {sock} is in use by a running receiver "
                                    f"(stop it or choose another --socket)")
        else:
            assert str(e.value) == f"socket {sock}: {said}"
        assert os.path.lexists(sock)
    (p,) = made
    assert p.args == (socket.AF_UNIX, socket.SOCK_STREAM) and p.timeout == 0.25 and p.path == sock and p.closed


def test_claim_probes_for_two_seconds_and_copes_with_a_vanishing_socket(sock, monkeypatch):
    _stale(sock)
    made = _probe_with(monkeypatch, ConnectionRefusedError(), then=lambda: os.unlink(sock))
    assert claim_socket_path(sock) is None and not os.path.lexists(sock)
    assert made[0].timeout == 2.0 and made[0].closed


# ------------------------------------------------------------------------ output names
@pytest.mark.parametrize("name, stem", [
    ("x.png", "x"), ("a/b/x.png", "x"), ("a\\b\\x.png", "x"), ("C:\\dir\\pic.jpeg", "pic"), ("x.tar.gz", "x.tar"),
    ("noext", "noext"), (".hidden", ".hidden"), ("dir/", "dir"), ("../../etc/passwd", "passwd"), ("", "image"),
    (".", "image"), ("..", "image"), ("a/..", "image"), ("..\\..", "image"), ("/", "image"), ("a/./", "a"),
])
def test_safe_stem(name, stem):
    assert _safe_stem(name) == stem


def test_output_path_steps_past_this_runs_names(tmp_path):
    used = set()
    assert _output_path(tmp_path, "a/x.png", used) == tmp_path / "x.rx.png" and used == set()
    used.add((tmp_path / "x.rx.png").resolve())
    assert _output_path(tmp_path, "b\\x.jpg", used) == tmp_path / "x-1.rx.png"
    used.add((tmp_path / "x-1.rx.png").resolve())
    assert _output_path(tmp_path, "x", used) == tmp_path / "x-2.rx.png"
    assert _output_path(tmp_path, "x", used, force=True) == tmp_path / "x-2.rx.png"
    assert _output_path(tmp_path, "y.png", used) == tmp_path / "y.rx.png"
    assert _output_path(tmp_path, "..", used) == tmp_path / "image.rx.png"
    assert len(used) == 2


def test_output_path_keeps_older_files_unless_forced(tmp_path):
    for n in ["x.rx.png", "x-1.rx.png", "x-2.rx.png"]:
        (tmp_path / n).touch()
    # the first name is this run's to try even if a file is there (the writer refuses it without --force)
    assert _output_path(tmp_path, "x.png", set()) == tmp_path / "x.rx.png"
    used = {(tmp_path / "x.rx.png").resolve()}
    assert _output_path(tmp_path, "x.png", used) == tmp_path / "x-3.rx.png"
    assert _output_path(tmp_path, "x.png", used, False) == tmp_path / "x-3.rx.png"
    assert _output_path(tmp_path, "x.png", used, force=True) == tmp_path / "x-1.rx.png"
    used.add((tmp_path / "x-1.rx.png").resolve())
    assert _output_path(tmp_path, "x.png", used, force=True) == tmp_path / "x-2.rx.png"


def test_output_path_compares_resolved_paths(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    used = {(tmp_path / "real" / "x.rx.png").resolve()}
    assert _output_path(tmp_path / "link", "x.png", used) == tmp_path / "link" / "x-1.rx.png"


# ------------------------------------------------------------------------ receiver and transmitter together
def test_a_stream_between_threads(kit, pics, sock, io, tmp_path, spies):
    """Same-named images get their own outputs, a missing image and an existing output are reported and the
    stream goes on; the outputs are exactly what the seeded ends decode; every line and record, field by field."""
    out, err = io()
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "y.rx.png").write_bytes(b"older")
    images = [pics / "a/x.png", pics / "b/x.png", pics / "missing.png", pics / "c/y.png", pics / "d/z.png"]
    t, res = _serve(sock, kit.bundle, outdir, seed=4)
    tt, tres = _bg(stream.run_transmitter, sock, images, 6.0, kit.bundle, seed=3, channel="rayleigh", per_image=True)
    assert _done(tt, tres).keys() == {"value"}, tres
    assert _done(t, res) == {"value": 3}
    recs = tres["value"]
    sent = [images[i] for i in (0, 1, 3, 4)]
    want = _expected(kit, sent, 6.0, 3, 4, "rayleigh", True)
    assert np.array_equal(load_image(outdir / "x.rx.png"), want[0])
    assert np.array_equal(load_image(outdir / "x-1.rx.png"), want[1])
    assert np.array_equal(load_image(outdir / "z.rx.png"), want[3]) and (outdir / "y.rx.png").read_bytes() == b"older"
    assert sorted(p.name for p in outdir.iterdir()) == ["x-1.rx.png", "x.rx.png", "y.rx.png", "z.rx.png"]
    # the seeds matter: other seeds decode something else
    assert any(not np.array_equal(a, b) for a, b in zip(want, _expected(kit, sent, 6.0, 3, 5, "rayleigh", True)))
    assert any(not np.array_equal(a, b) for a, b in zip(want, _expected(kit, sent, 6.0, 4, 4, "rayleigh", True)))

    assert len(recs) == 5
    missing = {"side": "tx", "image": str(images[2]), "ok": False, "error": f"{images[2]}: no such file"}
    assert recs[2] == missing and list(recs[2]) == list(missing)
    outputs = [outdir / "x.rx.png", outdir / "x-1.rx.png", None, None, outdir / "z.rx.png"]
    tx_keys = _stage_keys(kit, "tx")
    rx_keys = _stage_keys(kit, "rx")
    for i in (0, 1, 3, 4):
        rec, ack = recs[i], recs[i]["rx"]
        assert list(rec) == ["side", "image", "ok", "tx_ms", "round_trip_ms", "stages_ms", "rx"]
        assert rec["side"] == "tx" and rec["image"] == str(images[i]) and rec["ok"] is (i != 3)
        assert set(rec["stages_ms"]) == tx_keys and all(v >= 0 for v in rec["stages_ms"].values())
        assert 0 <= rec["tx_ms"] <= rec["round_trip_ms"]
        assert ack["side"] == "rx" and ack["image"] == images[i].name and ack["ok"] is (i != 3)
        if i == 3:
            assert ack == {"side": "rx", "image": "y.png", "ok": False,
                           "error": f"{outdir / 'y.rx.png'} exists (pass --force to overwrite)"}
            continue
        assert list(ack) == ["side", "image", "ok", "output", "latency_ms", "stages_ms"]
        assert ack["output"] == str(outputs[i]) and set(ack["stages_ms"]) == rx_keys
        assert 0 <= ack["latency_ms"] <= rec["round_trip_ms"] - rec["tx_ms"] + 0.002
        assert all(v >= 0 for v in ack["stages_ms"].values())
        assert sum(ack["stages_ms"].values()) <= ack["latency_ms"] + 0.01
    lines = [recs[0]["rx"], _tx_line(recs[0]), recs[1]["rx"], _tx_line(recs[1]), recs[2], recs[3]["rx"],
             _tx_line(recs[3]), recs[4]["rx"], _tx_line(recs[4])]
    assert out.text == _dumps(lines)
    assert _tx_line(recs[3])["rx_error"] == recs[3]["rx"]["error"] and _tx_line(recs[3])["rx_output"] is None
    assert err.text == _listening(sock, kit.bundle) and not os.path.lexists(sock)
    # what the ends were built with and handed
    assert spies.rx_made == [(kit.bundle, {"device": "cpu"})]
    assert spies.tx_made == [(kit.bundle, {"device": "cpu", "csi": None})]
    assert [(c[2], c[5]) for c in spies.tx_calls] == [(6.0, ("rayleigh", True))] * 4
    assert len({id(c[3]) for c in spies.tx_calls}) == 1 and len({id(c[2]) for c in spies.rx_calls}) == 1
    assert spies.tx_calls[0][4] == np.random.default_rng(3).bit_generator.state
    assert spies.rx_calls[0][3] == np.random.default_rng(4).bit_generator.state
    assert all(c[4] == {"header_failures": []} for c in spies.rx_calls)
    assert spies.selects == [1.0, 0]  # the transmitter waits a second for the greeting; the receiver never waits


def _stage_keys(kit, end: str) -> set:
    from escmvq.runtime.frame import parse
    from escmvq.runtime.receiver import receive_frame
    from escmvq.runtime.transmitter import transmit_image

    img = np.zeros((8, 8, 3), np.uint8)
    if end == "tx":
        return set(transmit_image(kit.tx, img, 10.0, np.random.default_rng(0))[1])
    return set(receive_frame(kit.rx, parse(kit.frame), np.random.default_rng(0))[1])


def test_a_stream_with_the_defaults(kit, pics, sock, io, tmp_path, monkeypatch):
    """The shipped bundle, seed 0 at both ends, Rayleigh fading per tile, outputs in the current folder; a
    receiver started without ``ready``."""
    out, err = io()
    monkeypatch.chdir(tmp_path)
    t, res = _bg(stream.serve_receiver, sock)
    assert err.wait_for("listening"), res
    tt, tres = _bg(stream.run_transmitter, sock, [pics / "a/x.png", pics / "c/y.png"], 12.0)
    recs = _done(tt, tres)["value"]
    assert _done(t, res) == {"value": 2}
    want = _expected(kit, [pics / "a/x.png", pics / "c/y.png"], 12.0, 0, 0)
    assert np.array_equal(load_image(tmp_path / "x.rx.png"), want[0])
    assert np.array_equal(load_image(tmp_path / "y.rx.png"), want[1])
    assert [(r["ok"], r["rx"]["output"]) for r in recs] == [(True, "x.rx.png"), (True, "y.rx.png")]
    assert err.text == _listening(sock, kit.bundle) and not os.path.lexists(sock)


def test_exact_timings_and_estimated_csi(kit, pics, sock, io, tmp_path, spies, monkeypatch):
    """Latencies from the clock, stage timings in ms to 3 decimals; a frame with pilots is acknowledged with
    its pilots, tiles and header failures."""
    from escmvq.runtime.csi import CsiConfig

    out, err = io()
    # tx start, tx sent, rx start, rx done, tx acknowledged
    clock = iter([10.0, 10.0012344, 10.5, 10.5107444, 11.2500444])
    monkeypatch.setattr(stream, "time", types.SimpleNamespace(perf_counter=lambda: next(clock),
                                                              monotonic=time.monotonic, sleep=time.sleep))
    spies.tx_timings = {"quantize": 0.0012344, "modulate": 0.0107}
    spies.rx_timings = {"channel": 0.0004567, "decode": 0.25}
    spies.failures = [(2, "bad header")]
    csi = CsiConfig(mode="pilots", pilots=3)
    t, res = _serve(sock, kit.bundle, tmp_path, seed=1, decoding="hard")
    tt, tres = _bg(stream.run_transmitter, sock, [pics / "a/x.png"], 20.0, kit.bundle, channel="awgn", csi=csi)
    assert _done(tt, tres).keys() == {"value"}, tres
    assert _done(t, res) == {"value": 1}
    ack = {"side": "rx", "image": "x.png", "ok": True, "output": str(tmp_path / "x.rx.png"), "latency_ms": 10.744,
           "stages_ms": {"channel": 0.457, "decode": 250.0}, "csi": "pilots", "pilots": 3, "tiles": 6,
           "header_failures": 1}
    rec = {"side": "tx", "image": str(pics / "a/x.png"), "ok": True, "tx_ms": 1.234, "round_trip_ms": 1250.044,
           "stages_ms": {"quantize": 1.234, "modulate": 10.7}, "rx": ack}
    assert tres["value"] == [rec] and json.dumps(tres["value"]) == json.dumps([rec])
    line = _tx_line(rec) | {"rx_header_failures": 1}
    assert out.text == _dumps([ack, line])
    assert spies.rx_made == [(kit.bundle, {"device": "cpu", "decoding": "hard"})]
    assert spies.tx_made == [(kit.bundle, {"device": "cpu", "csi": csi})]
    assert [(c[2], c[5]) for c in spies.tx_calls] == [(20.0, ("awgn", False))]
    assert spies.tx_calls[0][4] == np.random.default_rng(0).bit_generator.state
    assert spies.rx_calls[0][3] == np.random.default_rng(1).bit_generator.state
    assert spies.rx_calls[0][1].estimated and spies.rx_calls[0][1].n_tiles == 6
    assert np.array_equal(load_image(tmp_path / "x.rx.png").shape, (40, 70, 3))


# ------------------------------------------------------------------------ the receiver against scripted clients
def test_receiver_greets_and_exits_after_a_stream(kit, sock, io, tmp_path, spies):
    out, err = io()
    t, res = _serve(sock, kit.bundle, tmp_path)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode) and err.text == _listening(sock, kit.bundle)
    with _client(sock, hello=False) as c:
        assert recv_msg(c) == (MSG_HELLO, f'{{"bundle": "{kit.bundle.hash_hex}"}}'.encode())
        send_msg(c, MSG_END)
        assert _done(t, res) == {"value": 0}
        assert recv_msg(c, allow_eof=True) == (None, b"")  # closed
    assert not os.path.lexists(sock) and out.text == "" and err.text == _listening(sock, kit.bundle)
    assert spies.selects == [0] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["probe", "claim", "silent", "partial", "bad header"])
def test_receiver_ignores_a_connection_that_sends_nothing_whole(kit, sock, io, tmp_path, how):
    """A probe, another receiver's claim, or a first message that never completes: not a stream."""
    out, err = io()
    t, res = _serve(sock, kit.bundle, tmp_path)
    if how == "claim":
        with pytest.raises(StreamError, match="in use by a running receiver"):
            claim_socket_path(sock)
    else:
        with _client(sock, hello=how != "probe") as c:
            if how == "partial":
                c.sendall(_head(MSG_IMAGE, 10) + b"abc")
            elif how == "bad header":
                c.sendall(_head(MSG_IMAGE, 0, b"XX"))
    t.join(0.3)
    assert t.is_alive(), res  # still waiting for a transmitter
    with _client(sock) as c:
        assert _ask(c, _image(b"x.png", kit.frame))["ok"] is True
        send_msg(c, MSG_END)
    assert _done(t, res) == {"value": 1}
    assert err.text == _listening(sock, kit.bundle) and len(out.text.splitlines()) == 1


def test_receiver_serves_waiting_transmitters_in_turn(kit, pics, sock, io, tmp_path):
    out, err = io()
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    t, res = _serve(sock, kit.bundle, tmp_path)
    first = _client(sock)
    second = _client(sock, hello=False)  # queued
    tt, tres = _bg(stream.run_transmitter, sock, [pics / "c/y.png"], 10.0, kit.bundle, hello_wait=0.05)
    try:
        assert err.wait_for("stream tx: waiting")
        assert not select.select([second], [], [], 0.1)[0]  # no greeting while the first one is served
        assert _ask(first, _image(b"x.png", kit.frame))["output"] == str(tmp_path / "x.rx.png")
        send_msg(first, MSG_END)
        assert recv_msg(second)[0] == MSG_HELLO
        assert _ask(second, _image(b"x.png", kit.frame))["output"] == str(tmp_path / "x-1.rx.png")
        send_msg(second, MSG_END)
    finally:
        first.close()
        second.close()
    assert _done(tt, tres).keys() == {"value"}, tres
    assert [r["ok"] for r in tres["value"]] == [True]
    assert _done(t, res) == {"value": 3}
    waiting = f"stream tx: waiting for the receiver on {sock} (it is serving another transmitter)...\n"
    assert err.text == _listening(sock, kit.bundle) + waiting
    assert err.flushes == 2  # each line flushed as written (another process may be reading it)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-1.rx.png", "x.rx.png", "y.rx.png"]


@pytest.mark.parametrize("how", ["left", "cut", "unexpected", "went away"])
def test_receiver_reports_a_transmitter_that_broke_off(kit, sock, io, tmp_path, how):
    out, err = io()
    t, res = _serve(sock, kit.bundle, tmp_path)
    with _client(sock) as c:
        if how == "unexpected":
            send_msg(c, 9, b"?")
        elif how == "went away":
            send_msg(c, MSG_IMAGE, _image(b"x.png", kit.frame))
        else:
            assert _ask(c, _image(b"x.png", kit.frame))["ok"] is True
            if how == "cut":
                c.sendall(_head(MSG_IMAGE, 100) + b"x")
    _done(t, res)
    decoded = 0 if how == "unexpected" else 1
    assert str(res["error"]) == f"1 transmitter(s) broke off mid-stream ({decoded} images decoded)"
    assert type(res["error"]) is StreamError and not os.path.lexists(sock)
    said = {"left": "transmitter left without ending its stream",
            "cut": "transmitter broke off mid-stream (connection closed mid-message)",
            "unexpected": "unexpected message type 9; dropping that transmitter",
            "went away": "transmitter went away ([Errno 32] Broken pipe)"}[how]
    assert err.text == _listening(sock, kit.bundle) + f"stream rx: {said}\n" and err.flushes == 2
    assert len(out.text.splitlines()) == decoded


def test_receiver_counts_every_broken_stream_and_serves_the_rest(kit, sock, io, tmp_path):
    out, err = io()
    t, res = _serve(sock, kit.bundle, tmp_path)
    clients = [_client(sock)] + [_client(sock, hello=False) for _ in range(3)]
    try:
        send_msg(clients[0], MSG_ACK, b"{}")
        for c, kind in zip(clients[1:], [MSG_HELLO, None, MSG_END]):
            assert recv_msg(c)[0] == MSG_HELLO
            if kind is None:
                assert _ask(c, _image(b"x.png", kit.frame))["ok"] is True
                send_msg(c, MSG_END)
            else:
                send_msg(c, kind)
        _done(t, res)
    finally:
        for c in clients:
            c.close()
    assert str(res["error"]) == "2 transmitter(s) broke off mid-stream (1 images decoded)"
    assert err.text == (_listening(sock, kit.bundle) + "stream rx: unexpected message type 3; dropping that "
                        "transmitter\nstream rx: unexpected message type 4; dropping that transmitter\n")


def test_receiver_answers_bad_images_and_carries_on(kit, sock, io, tmp_path):
    """A message too short, a frame that does not parse, a frame of another bundle: ``ok: false``, one line."""
    out, err = io()
    other = dataclasses.replace(kit.bundle, hash=bytes(range(32)))
    t, res = _serve(sock, other, tmp_path)
    msgs = [b"", b"\x05", b"\x00\x00", _image(b"bad\xffname.png", b"junk"), b"\x09\x00ab",
            _image(b"ok.png", kit.frame)]
    with _client(sock, hello=False) as c:
        assert recv_msg(c) == (MSG_HELLO, json.dumps({"bundle": other.hash_hex}).encode())
        acks = [_ask(c, m) for m in msgs]
        send_msg(c, MSG_END)
    assert _done(t, res) == {"value": 0}
    magic = "not an escmvq .tx frame (bad magic)"
    other_bundle = (f"frame was made with bundle {kit.bundle.hash_hex[:16]}, this receiver has "
                    f"{other.hash_hex[:16]}: refusing to decode")
    assert acks == [{"side": "rx", "image": "?", "ok": False, "error": "image message too short"}] * 2 + [
        {"side": "rx", "image": "", "ok": False, "error": magic},
        {"side": "rx", "image": "bad\ufffdname.png", "ok": False, "error": magic},
        {"side": "rx", "image": "ab", "ok": False, "error": magic},
        {"side": "rx", "image": "ok.png", "ok": False, "error": other_bundle}]
    assert out.text == _dumps(acks) and err.text == _listening(sock, other) and list(tmp_path.iterdir()) == []


def test_receiver_reads_a_name_length_as_unsigned(kit, sock, io, tmp_path):
    """A name of 40,000 bytes (past a signed 16-bit length) is read whole; too long a file name to write."""
    io()
    name = "n" * 40000 + ".png"
    t, res = _serve(sock, kit.bundle, tmp_path)
    with _client(sock) as c:
        ack = _ask(c, _image(name.encode(), kit.frame))
        send_msg(c, MSG_END)
    assert _done(t, res) == {"value": 0}
    assert ack["image"] == name and ack["ok"] is False and "File name too long" in ack["error"]


@pytest.mark.parametrize("older, force, outputs", [
    (["x-1"], False, ["x", "x-2", "x-3", "y"]),
    (["x", "x-1"], False, [None, None, None, "y"]),
    (["x", "x-1"], True, ["x", "x-1", "x-2", "y"]),
])
def test_receiver_names_outputs_and_keeps_older_files(kit, sock, io, tmp_path, older, force, outputs):
    out, err = io()
    for n in older:
        (tmp_path / f"{n}.rx.png").write_bytes(b"old")
    t, res = _serve(sock, kit.bundle, tmp_path, force=force)
    with _client(sock) as c:
        acks = [_ask(c, _image(n, kit.frame)) for n in [b"a/x.png", b"b\\x.png", b"x.jpeg", b"../y.png"]]
        send_msg(c, MSG_END)
    assert _done(t, res) == {"value": sum(o is not None for o in outputs)}
    for ack, o in zip(acks, outputs):
        if o is None:
            assert ack["ok"] is False and ack["error"] == f"{tmp_path / 'x.rx.png'} exists (pass --force to overwrite)"
        else:
            assert ack["ok"] is True and ack["output"] == str(tmp_path / f"{o}.rx.png")
            assert load_image(tmp_path / f"{o}.rx.png").shape == (40, 70, 3)
    for n in older:
        assert ((tmp_path / f"{n}.rx.png").read_bytes() == b"old") == (n not in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({f"{n}.rx.png" for n in older + outputs if n})


# ------------------------------------------------------------------------ the receiver's socket
def test_receiver_refuses_a_taken_path_before_loading(kit, sock, spies):
    Path(sock).write_text("data")
    with pytest.raises(StreamError, match="exists and is a file"):
        _call(stream.serve_receiver, sock, kit.bundle)
    assert spies.rx_made == [] and Path(sock).read_text() == "data"


@pytest.mark.parametrize("where, said", [("long", "AF_UNIX path too long"), ("nowhere", "No such file or directory")])
def test_receiver_that_cannot_listen(kit, sock, io, spies, where, said):
    _, err = io()
    path = os.path.join(os.path.dirname(sock), "s" * 120 if where == "long" else "nowhere/s.sock")
    with pytest.raises(StreamError) as e:
        _call(stream.serve_receiver, path, kit.bundle)
    assert str(e.value) == f"socket {path}: cannot listen there ({said})" and len(spies.rx_made) == 1
    assert err.text == ""


@pytest.mark.parametrize("then", ["replaced", "removed"])
def test_receiver_removes_only_its_own_socket(kit, sock, tmp_path, then):
    t, res = _serve(sock, kit.bundle, tmp_path)
    with _client(sock) as c:
        os.unlink(sock)
        if then == "replaced":
            Path(sock).write_text("someone else's")
        send_msg(c, MSG_END)
        assert _done(t, res) == {"value": 0}
    assert (Path(sock).read_text() == "someone else's") if then == "replaced" else not os.path.lexists(sock)


# ------------------------------------------------------------------------ the transmitter against scripted receivers
def _fake_rx(sock: str, script):
    """A listener that accepts one connection and runs ``script(conn)``; returns (thread, result)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(1)
    srv.settimeout(JOIN)

    def run():
        with srv:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(JOIN)
                return script(conn)

    return _bg(run)


def test_transmitter_wire_format(kit, pics, sock, io):
    """The greeting awaited, each image as ``u16 name length | name | frame``, the end of stream last;
    a reply that is not an acknowledgement counts as a failure."""
    from escmvq.runtime.link import transmit_image

    out, err = io()

    def script(conn):
        conn.sendall(b"EM\x04\x00\x02\x00\x00\x00{}")
        got = []
        ack = b'{"ok": 1, "output": "o", "x": [1]}'
        for reply in [b"EM\x03\x00" + struct.pack("<I", len(ack)) + ack, b"EM\x04\x00\x00\x00\x00\x00"]:
            head = _recv_exact(conn, 8)
            got.append((head, _recv_exact(conn, struct.unpack("<I", head[4:])[0])))
            conn.sendall(reply)
        got.append(conn.recv(100))
        got.append(conn.recv(100))
        return got

    t, res = _fake_rx(sock, script)
    paths = [pics / "a/x.png", pics / "b/x.png"]
    recs = _call(stream.run_transmitter, sock, paths, 8.0, kit.bundle, seed=2, channel="awgn")
    got = _done(t, res)["value"]
    rng = np.random.default_rng(2)
    frames = [transmit_image(kit.tx, load_image(p), 8.0, rng, "awgn", False)[0].to_bytes() for p in paths]
    for (head, payload), frame in zip(got[:2], frames):
        assert head == b"EM\x01\x00" + struct.pack("<I", 7 + len(frame)) and payload == b"\x05\x00x.png" + frame
    assert got[2:] == [b"EM\x02\x00\x00\x00\x00\x00", b""]
    assert [(r["ok"], r["rx"]) for r in recs] == [(True, {"ok": 1, "output": "o", "x": [1]}), (False, {})]
    assert [list(r) for r in recs] == [["side", "image", "ok", "tx_ms", "round_trip_ms", "stages_ms", "rx"]] * 2
    lines = [json.loads(x) for x in out.text.splitlines()]
    assert [(x["rx_ok"], x["rx_error"], x["rx_output"]) for x in lines] == [(1, None, "o"), (None, None, None)]
    assert err.text == ""


def test_transmitter_cuts_a_name_to_the_length_field(kit, sock, io, monkeypatch):
    """An image name longer than its unsigned 16-bit length field is sent as its first 65,535 bytes."""
    io()
    import escmvq.runtime.images as images

    monkeypatch.setattr(images, "load_image", lambda p: np.zeros((32, 32, 3), np.uint8))  # no such file

    def script(conn):
        send_msg(conn, MSG_HELLO, b"{}")
        _, payload = recv_msg(conn)  # the image message
        send_msg(conn, MSG_ACK, b'{"ok": true}')
        assert recv_msg(conn)[0] == MSG_END
        return payload

    t, res = _fake_rx(sock, script)
    recs = _call(stream.run_transmitter, sock, ["/nowhere/" + "n" * 70000 + ".png"], 10.0, kit.bundle)
    payload = _done(t, res)["value"]
    assert payload[:2] == b"\xff\xff" and payload[2:65537] == b"n" * 65535 and recs[0]["ok"] is True


@pytest.mark.parametrize("first", [b"", b"EM\x03\x00\x00\x00\x00\x00", b"XX\x04\x00\x00\x00\x00\x00", b"EM\x04"])
def test_transmitter_refuses_a_receiver_that_does_not_greet(kit, pics, sock, io, first):
    out, err = io()
    t, res = _fake_rx(sock, lambda conn: conn.sendall(first))
    with pytest.raises(StreamError) as e:
        _call(stream.run_transmitter, sock, [pics / "a/x.png"], 10.0, kit.bundle, hello_wait=5.0)
    assert str(e.value) == f"the receiver on {sock} closed the connection without serving it"
    _done(t, res)
    assert out.text == "" and err.text == ""


@pytest.mark.parametrize("reply, said", [(b"", "connection closed mid-message"),
                                         (b"EM\x03\x00\x05\x00\x00\x00{", "connection closed mid-message"),
                                         (b"EN\x03\x00\x00\x00\x00\x00", "bad stream message header")])
def test_transmitter_reports_a_receiver_that_went_away(kit, pics, sock, io, reply, said):
    out, _ = io()
    def script(conn):
        send_msg(conn, MSG_HELLO, b"{}")
        recv_msg(conn)  # the image
        conn.sendall(reply)

    t, res = _fake_rx(sock, script)
    with pytest.raises(StreamError) as e:
        _call(stream.run_transmitter, sock, [pics / "a/x.png"], 10.0, kit.bundle)
    assert str(e.value) == f"the receiver on {sock} went away ({said})"
    _done(t, res)
    assert out.text == ""


class _Clock:
    """``monotonic`` and ``sleep`` of a clock that only moves when slept on."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def monotonic(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


@pytest.mark.parametrize("stale", [False, True])
def test_transmitter_waits_for_a_receiver_then_gives_up(kit, pics, sock, monkeypatch, stale):
    if stale:
        _stale(sock)  # connecting is refused
    clock = _Clock()
    monkeypatch.setattr(stream, "time", types.SimpleNamespace(perf_counter=time.perf_counter,
                                                              monotonic=clock.monotonic, sleep=clock.sleep))
    more = {"connect_timeout": 1.0} if stale else {}
    with pytest.raises(StreamError) as e:
        _call(stream.run_transmitter, sock, [pics / "a/x.png"], 10.0, kit.bundle, **more)
    assert str(e.value) == f"no receiver listening on {sock}"
    limit = 1.0 if stale else 30.0
    assert limit < clock.now <= limit + 0.05 + 1e-9 and set(clock.sleeps) == {0.05}


def test_transmitter_gives_up_only_after_the_deadline(kit, pics, sock, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(stream, "time", types.SimpleNamespace(perf_counter=time.perf_counter,
                                                              monotonic=clock.monotonic, sleep=clock.sleep))
    with pytest.raises(StreamError, match="no receiver listening"):
        _call(stream.run_transmitter, sock, [pics / "a/x.png"], 10.0, kit.bundle, connect_timeout=0.0)
    assert clock.sleeps == [0.05]  # at the deadline itself it tries once more


def test_transmitter_stops_waiting_when_the_receiver_exited(kit, pics, sock, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(stream, "time", types.SimpleNamespace(perf_counter=time.perf_counter,
                                                              monotonic=clock.monotonic, sleep=clock.sleep))
    alive = iter([True, True, False])
    with pytest.raises(StreamError) as e:
        _call(stream.run_transmitter, sock, [pics / "a/x.png"], 10.0, kit.bundle, receiver_alive=lambda: next(alive))
    assert str(e.value) == "the receiver process exited before listening"
    assert clock.sleeps == [0.05, 0.05]
