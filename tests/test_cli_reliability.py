"""The CLI used the way an adversarial user would (the stream receiver's socket,
CRC-valid absurd frames, busy receivers, clashing output names, oversized images, SIGTERM,
usage errors, default outputs) and the memory a large image needs.

Sockets are given relative to the test's folder (``work`` changes into it): a Unix socket
path must stay under ~108 bytes."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_error, run
from escmvq.export.testing import KODAK

REPO = Path(__file__).resolve().parents[1]
WAIT = float(os.environ.get("ESCMVQ_TEST_WAIT", 120))  # seconds a step may take before the test gives up (a hang guard)


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[:70, :100]
    Image.fromarray(img).save(tmp_path / "img.png")
    (tmp_path / "out").mkdir()
    return tmp_path


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def cli(*args, cwd: Path, env: dict | None = None, timeout: float = WAIT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "escmvq.cli.main", *map(str, args)], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def spawn(*args, cwd: Path, script: str | None = None) -> subprocess.Popen:
    head = ["-c", script] if script else ["-m", "escmvq.cli.main"]
    return subprocess.Popen([sys.executable, *head, *map(str, args)], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def first_line(p: subprocess.Popen) -> str:
    """The first line ``p`` writes on stderr ('' if it writes none within WAIT seconds)."""
    got = []
    t = threading.Thread(target=lambda: got.append(p.stderr.readline()), daemon=True)
    t.start()
    t.join(WAIT)
    return got[0] if got else ""


def start_receiver(work: Path, bundle_dir: Path, sock: str = "s.sock", outdir: str = "out") -> subprocess.Popen:
    """``escmvq stream-rx`` in the background, once it says it is listening."""
    (work / outdir).mkdir(exist_ok=True)
    p = spawn("stream-rx", "--socket", sock, "-o", outdir, "-b", bundle_dir, cwd=work)
    line = first_line(p)
    if "listening" not in line:
        p.kill()
        pytest.fail(f"receiver did not start: {line}")
    return p


def finish(p: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=WAIT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, out, err


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def absurd_frame(good: bytes, what: str) -> bytes:
    """A frame with a valid CRC around an absurd value: parse a good frame, change one field,
    re-serialise with the frame module's own writer and CRC (its field checks switched off)."""
    import escmvq.runtime.frame as fm

    f = fm.parse(good)
    h = f.h.copy()
    if what == "h=3e38":
        h[0] = 3e38
    elif what == "h=inf":
        h[0] = np.inf
    elif what == "h=nan":
        h[0] = complex(np.nan, 0.0)
    f = dataclasses.replace(f, h=h) if what.startswith("h=") else dataclasses.replace(f, noise_var=1e308)
    check, fm._check_fields = fm._check_fields, lambda frame: None
    try:
        return f.to_bytes()
    finally:
        fm._check_fields = check


ABSURD = ["h=3e38", "h=inf", "h=nan", "sigma2=1e308"]


# 1. the receiver's socket path -------------------------------------------------------------

def test_stream_rx_never_replaces_a_file_or_a_folder(work, bundle_dir):
    (work / "important.txt").write_text("data")
    r = cli("stream-rx", "--socket", "important.txt", "-o", "out", "-b", bundle_dir, cwd=work)
    assert_one_line_error(r.stderr, "important.txt exists and is a file", exit_code=r.returncode)
    assert (work / "important.txt").read_text() == "data"
    (work / "d").mkdir()
    r = cli("stream-rx", "--socket", "d", "-o", "out", "-b", bundle_dir, cwd=work)
    assert_one_line_error(r.stderr, "is a folder", exit_code=r.returncode)
    assert (work / "d").is_dir()


def test_stream_rx_refuses_a_socket_in_use_and_replaces_a_stale_one(work, bundle_dir):
    rx = start_receiver(work, bundle_dir)
    try:
        r = cli("stream-rx", "--socket", "s.sock", "-o", "out", "-b", bundle_dir, cwd=work)
        assert_one_line_error(r.stderr, "in use by a running receiver", exit_code=r.returncode)
        # the first receiver still owns its socket and serves
        r = cli("stream-tx", "--snr", "10", "--socket", "s.sock", "img.png", "-b", bundle_dir, cwd=work)
        assert r.returncode == 0, r.stderr
    finally:
        code, _, err = finish(rx)
    assert code == 0, err
    assert (work / "out/img.rx.png").exists() and not (work / "s.sock").exists()
    # a socket file nobody answers on (a receiver that died) is replaced
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind("stale.sock")
    stale.close()
    assert (work / "stale.sock").exists()
    rx = start_receiver(work, bundle_dir, "stale.sock", "out2")
    try:
        r = cli("stream-tx", "--snr", "10", "--socket", "stale.sock", "img.png", "-b", bundle_dir, cwd=work)
        assert r.returncode == 0, r.stderr
    finally:
        code, out, err = finish(rx)
    assert code == 0, err
    assert (work / "out2/img.rx.png").exists() and not (work / "stale.sock").exists()


# 2. CRC-valid frames with absurd values -----------------------------------------------------

@pytest.mark.parametrize("what", ABSURD)
def test_rx_refuses_crc_valid_absurd_frames(work, bundle_dir, what):
    assert run("tx", "--snr", "10", "img.png", "-o", "a.tx", "-b", bundle_dir).exit_code == 0
    (work / "bad.tx").write_bytes(absurd_frame((work / "a.tx").read_bytes(), what))
    res = run("rx", "bad.tx", "-o", "o.png", "-b", bundle_dir)
    assert_one_line_error(res, "bad.tx: ", code=1)
    assert not (work / "o.png").exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


def _serve_in_thread(work: Path, bundle_dir: Path, sock: str):
    from escmvq.runtime.stream import serve_receiver

    ready, result = threading.Event(), {}

    def target():
        try:
            result["done"] = serve_receiver(sock, bundle_dir, work / "out", ready=ready.set)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            result["error"] = e
        finally:
            ready.set()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    assert ready.wait(WAIT) and "error" not in result, result
    return t, result


def _client(sock: str) -> socket.socket:
    from escmvq.runtime.stream import MSG_HELLO, recv_msg

    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(WAIT)
    c.connect(sock)
    assert recv_msg(c)[0] == MSG_HELLO
    return c


@pytest.mark.parametrize("parser_checks", [True, False], ids=["parser-checks", "past-the-parser"])
def test_stream_rx_answers_absurd_frames_and_carries_on(work, bundle_dir, monkeypatch, parser_checks):
    """Each absurd frame gets ``ok: false`` and its reason; the stream goes on. Also when such a
    frame gets past the parser (its checks switched off): the receiver still carries on."""
    import escmvq.runtime.frame as fm
    from escmvq.runtime.link import transmit_image
    from escmvq.runtime.stream import MSG_ACK, MSG_END, MSG_IMAGE, recv_msg, send_msg
    from escmvq.runtime.transmitter import Transmitter

    img = np.asarray(Image.open(work / "img.png"))
    good = transmit_image(Transmitter(bundle_dir), img, 10.0, np.random.default_rng(0))[0].to_bytes()
    frames = [("first.png", good)] + [(f"{w}.png", absurd_frame(good, w)) for w in ABSURD] + [("last.png", good)]
    if not parser_checks:
        monkeypatch.setattr(fm, "_check_fields", lambda frame: None)
    t, result = _serve_in_thread(work, bundle_dir, "s.sock")
    c = _client("s.sock")
    acks = []
    with c:
        for name, data in frames:
            send_msg(c, MSG_IMAGE, len(name.encode()).to_bytes(2, "little") + name.encode() + data)
            kind, payload = recv_msg(c)
            assert kind == MSG_ACK
            acks.append(json.loads(payload))
        send_msg(c, MSG_END)
    t.join(WAIT)
    assert not t.is_alive() and result == {"done": 2}, result
    assert [a["ok"] for a in acks] == [True, False, False, False, False, True], acks
    for a in acks[1:-1]:
        assert a["error"] and "\n" not in a["error"]
    if parser_checks:
        assert "channel coefficient" in acks[1]["error"] and "finite" in acks[2]["error"]
        assert "noise_var" in acks[4]["error"]
    assert sorted(p.name for p in (work / "out").iterdir()) == ["first.rx.png", "last.rx.png"]


# 3. a second transmitter while the receiver is busy -----------------------------------------

def test_second_transmitter_waits_for_its_turn(work, bundle_dir):
    from escmvq.runtime.stream import MSG_END, send_msg

    rx = start_receiver(work, bundle_dir)
    tx2 = None
    try:
        first = _client("s.sock")  # a first transmitter holds the receiver
        tx2 = spawn("stream-tx", "--snr", "10", "--socket", "s.sock", "img.png", "-b", bundle_dir, cwd=work)
        line = first_line(tx2)
        assert "waiting for the receiver" in line, line
        send_msg(first, MSG_END)  # the first stream ends: the second one's turn
        first.close()
        code, out, err = finish(tx2)
        assert code == 0, err
        assert [r["ok"] for r in records(out)] == [True] and "Broken pipe" not in err
    finally:
        if tx2 is not None and tx2.poll() is None:
            tx2.kill()
        rcode, _, rerr = finish(rx)
    assert rcode == 0, rerr
    assert (work / "out/img.rx.png").exists()


# 4. and 6. stream: unique output names, an oversized image, temporary files ------------------

def test_stream_gives_same_named_images_their_own_outputs(work, bundle_dir):
    (work / "a").mkdir()
    (work / "b").mkdir()
    Image.open(work / "img.png").save(work / "a/x.png")
    Image.open(work / "img.png").crop((0, 0, 40, 30)).save(work / "b/x.png")
    for extra in ([], ["--force"]):  # a rerun with --force replaces this run's names, adds none
        r = cli("stream", "--snr", "10", "a/x.png", "b/x.png", "-b", bundle_dir, "-o", "out", *extra, cwd=work)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in (work / "out").iterdir()) == ["x-1.rx.png", "x.rx.png"]
        assert Image.open(work / "out/x.rx.png").size == (100, 70)
        assert Image.open(work / "out/x-1.rx.png").size == (40, 30)


def test_stream_reports_an_oversized_image_and_goes_on(work, bundle_dir):
    Image.new("RGB", (65_537, 1), (10, 200, 30)).save(work / "wide.png")  # wider than a frame can say
    (work / "tmp").mkdir()
    r = cli("stream", "--snr", "10", "wide.png", "img.png", "-b", bundle_dir, "-o", "out", cwd=work,
            env=_env(TMPDIR=str(work / "tmp")))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: stream: 1 of 2 images failed"), r.stderr
    tx = [x for x in records(r.stdout) if x["side"] == "tx"]
    assert [x["ok"] for x in tx] == [False, True] and "65537" in tx[0]["error"], tx
    assert (work / "out/img.rx.png").exists()
    assert not list((work / "tmp").glob("escmvq-*"))  # no escmvq-*/rx.sock left behind


# 7. SIGTERM ----------------------------------------------------------------------------------

HOLD = """
import pathlib, sys, time
import {module} as m

def hold(*args, **kwargs):
    for a in args:  # leave a partial file where the output is being written
        if isinstance(a, (str, pathlib.Path)) and str(a).endswith((".png", ".json")):
            pathlib.Path(a).write_bytes(b"partial")
    pathlib.Path("held").touch()
    time.sleep(600)

for name in {names}:
    setattr(m, name, hold)
sys.argv = ["escmvq"] + sys.argv[1:]
from escmvq.cli.main import main
main()
"""


def _terminate_when_held(p: subprocess.Popen, work: Path) -> tuple[int, str]:
    deadline = time.monotonic() + WAIT
    while not (work / "held").exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            pytest.fail(f"never reached the held step: {p.communicate()[1]}")
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    code, _, err = finish(p)
    (work / "held").unlink()
    return code, err


def test_sigterm_removes_the_partial_output(work, bundle_dir):
    script = HOLD.format(module="escmvq.runtime.images", names=["save_png", "save_side_by_side_png"])
    p = spawn("link", "--snr", "10", "img.png", "-o", "o.png", "-b", bundle_dir, cwd=work, script=script)
    code, err = _terminate_when_held(p, work)
    assert code == 143 and err.strip().splitlines()[-1] == "error: terminated", (code, err)
    assert sorted(p.name for p in work.iterdir()) == ["img.png", "out"]  # no o.png, no .o.png.*.part.png


def test_sigterm_removes_the_half_built_bundle(work, bundle_dir):
    pytest.importorskip("torch")
    script = HOLD.format(module="escmvq.export.bundle_writer", names=["write_manifest"])
    p = spawn("export", bundle_dir.parent / "tiny.ckpt", "-o", "e.escmvq", "--calib", KODAK / "kodim01.png",
              "--n-check", "16", "--n-calib", "16", "--n-stats", "64", cwd=work, script=script)
    code, err = _terminate_when_held(p, work)
    assert code == 143, (code, err)
    assert sorted(p.name for p in work.iterdir()) == ["img.png", "out"]  # no e.escmvq, no .e.escmvq.*.tmp/


def test_sigterm_removes_the_receivers_socket(work, bundle_dir):
    rx = start_receiver(work, bundle_dir)
    assert (work / "s.sock").exists()
    rx.send_signal(signal.SIGTERM)
    code, _, err = finish(rx)
    assert code == 143 and "error: terminated" in err, (code, err)
    assert not (work / "s.sock").exists()


# 8. usage errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("args, match", [
    (["link", "--snr", "10", "img.png", "--seed", "abc"], "--seed"),
    (["link", "--snr", "10"], "Missing argument"),
    (["link", "--snr", "10", "img.png", "--frobnicate"], "--frobnicate"),
    (["frobnicate"], "frobnicate"),
    (["export", "CKPT", "-o", "e.escmvq", "--rate", "0"], "--rate"),
    (["export", "CKPT", "-o", "e.escmvq", "--rate", "9"], "--rate"),
])
def test_usage_errors_are_one_line(work, bundle_dir, args, match):
    args = [str(bundle_dir.parent / "tiny.ckpt") if a == "CKPT" else a for a in args]
    res = run(*args)
    assert_one_line_error(res, match, code=2)
    assert "Usage" not in res.stderr + res.stdout and not (work / "e.escmvq").exists()


def test_usage_error_from_the_console_script_and_help_still_works(work):
    r = cli("tx", "--snr", "10", "img.png", "--seed", "1.5", cwd=work)
    assert_one_line_error(r.stderr, "--seed", code=2, exit_code=r.returncode)
    for args in (["--help"], ["link", "--help"]):
        res = run(*args)
        assert res.exit_code == 0 and "Usage" in res.stdout, res.stdout
    res = run()  # bare `escmvq`: the help
    assert "Usage" in res.stdout + res.stderr and "error:" not in res.stderr
    r = cli("--version", cwd=work)
    import importlib.metadata as md

    assert r.returncode == 0 and r.stdout.strip() == f"escmvq {md.version('escmvq')}", r.stdout + r.stderr


# 9. default outputs are said ------------------------------------------------------------------

def test_tx_and_rx_say_where_a_default_output_went(work, bundle_dir):
    first = run("tx", "--snr", "10", "img.png", "-b", bundle_dir)
    second = run("tx", "--snr", "10", "img.png", "-b", bundle_dir)
    assert first.exit_code == 0 and second.exit_code == 0, first.stderr + second.stderr
    assert str(work / "img.tx") in first.stderr
    assert str(work / "img-1.tx") in second.stderr and "img.tx exists" in second.stderr
    res = run("rx", "img.tx", "-b", bundle_dir)
    assert res.exit_code == 0 and str(work / "img.rx.png") in res.stderr, res.stderr
    # with -o nothing extra is said
    res = run("tx", "--snr", "10", "img.png", "-b", bundle_dir, "-o", "c.tx")
    assert res.exit_code == 0 and res.stderr == ""


# memory of a large image -------------------------------------------------------------------------

def test_link_memory_is_bounded_per_pixel(bundle_dir):
    """numpy's peak during run_link (traced by tracemalloc) grows with the image by the uint8
    output only, not by float copies of the whole image (it grew by ~68 bytes per pixel); the
    batch at work is a constant (measured as the difference between two image sizes)."""
    from escmvq.runtime.link import run_link
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle_dir)
    rx = Receiver(tx.bundle)
    big = np.tile(np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB")), (2, 2, 1))[:1024, :1536]
    run_link(tx, rx, big[:64, :256], 10.0, np.random.default_rng(0))  # warm up (allocator caches)
    peaks = []
    for img in (big[:256], big):  # 384 and 1536 tiles: both several batches of 256
        done = []
        tracemalloc.start()
        try:
            rep = run_link(tx, rx, img, 10.0, np.random.default_rng(0), "awgn", max_batch=256,
                           progress=done.append)  # AWGN: one plan in the caches (bounded LRUs) for all tiles
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert sum(done) == rep.n_tiles == img.shape[0] * img.shape[1] // 1024
        assert rep.image.shape == img.shape and 0 < rep.psnr_db < 60
    per_pixel = (peaks[1] - peaks[0]) / ((big.shape[0] - 256) * big.shape[1])
    assert per_pixel < 8, f"{per_pixel:.1f} bytes per pixel"


def test_receiver_refuses_a_frame_larger_than_the_pixel_cap(bundle_dir):
    """A frame may announce up to 65536 x 65536 pixels; the receiver refuses more than any
    input may have (64 MP) before allocating the output."""
    from escmvq.runtime.frame import FrameError
    from escmvq.runtime.link import receive_frame, transmit_image
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle_dir)
    f = transmit_image(tx, np.zeros((32, 32, 3), np.uint8), 10.0, np.random.default_rng(0))[0]
    n = 251 * 251  # 8001 x 8001 pixels in 32 x 32 tiles
    big = dataclasses.replace(f, image_size=(8001, 8001), h=np.ones(n, np.complex64),
                              samples=np.broadcast_to(f.samples[:1], (n, f.n_symbols)))
    with pytest.raises(FrameError, match="pixel limit"):
        receive_frame(Receiver(tx.bundle), big, np.random.default_rng(0))
