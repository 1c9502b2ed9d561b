"""Transmitter and receiver as two long-lived processes over a local (Unix) socket.

The transmitter process encodes and modulates each image and sends its frame; the
receiver process applies the channel (its own seeded generator), demodulates, decodes,
writes a PNG and answers with an acknowledgement. Each side prints one JSON line per
image with its own latency (stdout); progress goes to stderr.

Wire format: messages of ``b"EM" | type u8 | 0 u8 | length u32 | payload``; type 1 = an
image (``u16 name length | name utf-8 | .tx frame``), 2 = end of stream, 3 = the
receiver's acknowledgement (JSON), 4 = the receiver's greeting (JSON), sent when it
starts serving a transmitter.

Robustness:

- The receiver binds its socket path only if nothing is there or a *stale* socket is (a
  socket file nobody answers on); a regular file, a folder or a socket a live receiver
  answers on is refused with :class:`StreamError`. On exit it removes the socket only if
  it is still the one it bound.
- One transmitter is served at a time. Others that connect meanwhile wait in the listen
  queue (the transmitter says "waiting for the receiver" on stderr until the greeting
  comes) and are served one after another; the receiver exits once a stream has ended
  and nobody else is waiting. A connection that sends nothing (a probe) is ignored.
- A bad image (a frame that does not parse, e.g. a valid CRC around absurd values, a
  frame from another bundle, an unwritable output) is answered ``ok: false`` with a
  one-line reason and the stream carries on; so does the transmitter for an image it
  cannot read or send (too large for a frame, ...).
- Every image gets its own output name within a run: a second ``x.png`` (from another
  folder) is written to ``x-1.rx.png``, never over the first one.
"""
from __future__ import annotations

import json
import os
import select
import socket
import stat
import struct
import sys
import time
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = ["serve_receiver", "run_transmitter", "StreamError", "claim_socket_path"]

_HEAD = struct.Struct("<2sBBI")
MSG_IMAGE, MSG_END, MSG_ACK, MSG_HELLO = 1, 2, 3, 4
_MAX_MSG = 1 << 30
_BACKLOG = 16  # transmitters that may wait for their turn


class StreamError(RuntimeError):
    pass


def _recv_exact(conn: socket.socket, n: int, allow_eof: bool = False) -> bytes | None:
    """``n`` bytes; ``None`` if ``allow_eof`` and the peer closed before sending any."""
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            if allow_eof and not buf:
                return None
            raise StreamError("connection closed mid-message")
        buf += chunk
    return bytes(buf)


def send_msg(conn: socket.socket, kind: int, payload: bytes = b"") -> None:
    conn.sendall(_HEAD.pack(b"EM", kind, 0, len(payload)) + payload)


def recv_msg(conn: socket.socket, allow_eof: bool = False) -> tuple[int | None, bytes]:
    """One message; ``(None, b"")`` if ``allow_eof`` and the peer closed between messages."""
    head = _recv_exact(conn, _HEAD.size, allow_eof)
    if head is None:
        return None, b""
    magic, kind, _, n = _HEAD.unpack(head)
    if magic != b"EM" or n > _MAX_MSG:
        raise StreamError("bad stream message header")
    return kind, _recv_exact(conn, n)


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip()
    msg = msg.splitlines()[0] if msg else ""
    known = type(e).__module__.startswith("escmvq") or isinstance(e, (OSError, ValueError))
    return msg if known and msg else f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def claim_socket_path(sock_path: str, probe_timeout: float = 2.0) -> None:
    """Make ``sock_path`` free to bind: nothing there, or remove a stale socket (one nobody
    answers on). Anything else raises :class:`StreamError` and is left untouched."""
    try:
        st = os.lstat(sock_path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a symbolic link" if stat.S_ISLNK(st.st_mode) \
            else "a file" if stat.S_ISREG(st.st_mode) else "not a socket"
        raise StreamError(f"socket path {sock_path} exists and is {what}: refusing to replace it "
                          f"(choose another --socket)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(probe_timeout)
    try:
        probe.connect(sock_path)
    except ConnectionRefusedError:  # a socket file without a listener: left behind by a dead receiver
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass
        return
    except FileNotFoundError:
        return
    except (socket.timeout, BlockingIOError):
        pass  # a listener with a full queue: in use
    except OSError as e:
        raise StreamError(f"socket {sock_path}: cannot tell whether it is in use ({e.strerror or e})") from None
    finally:
        probe.close()
    raise StreamError(f"socket {sock_path} is in use by a running receiver (stop it or choose another --socket)")


def _safe_stem(name: str) -> str:
    """The file stem of an image name from the wire (no folders, never empty, '.' or '..')."""
    stem = PurePosixPath(name.replace("\\", "/")).stem if name else ""
    return stem if stem not in ("", ".", "..") else "image"


def _output_path(outdir: Path, name: str, used: set[Path], force: bool = False) -> Path:
    """``STEM.rx.png``; if this run already wrote that name, the first ``STEM-i.rx.png`` that
    this run did not write and (without ``force``) that does not exist: never overwrite within
    a run, never overwrite an older file under a stepped name without ``--force``."""
    stem = _safe_stem(name)
    out, i = outdir / f"{stem}.rx.png", 0
    while out.resolve() in used or (i and out.exists() and not force):
        i += 1
        out = outdir / f"{stem}-{i}.rx.png"
    return out


class _Served:
    """Outcome of one connection."""
    EMPTY, DONE, BROKEN = "empty", "done", "broken"


def serve_receiver(sock_path: str, bundle=None, outdir: str | os.PathLike = ".", seed: int = 0,
                   force: bool = False, device: str = "cpu", ready=None, decoding: str | None = None) -> int:
    """Listen on ``sock_path`` and decode every frame of every transmitter that connects
    (one at a time) until a stream has ended and nobody else waits; returns images decoded.
    ``decoding``: the receiver's "hard" | "soft" (None: its default).

    Raises :class:`StreamError` if the path is taken (see :func:`claim_socket_path`) or if a
    transmitter broke off mid-stream (after serving everyone else)."""
    from escmvq.runtime.files import atomic_write
    from escmvq.runtime.frame import parse
    from escmvq.runtime.images import save_png
    from escmvq.runtime.link import receive_frame
    from escmvq.runtime.receiver import Receiver

    outdir = Path(outdir)
    claim_socket_path(sock_path)  # fail fast, before loading the model
    rx = Receiver(bundle, device=device, **({} if decoding is None else {"decoding": decoding}))
    rng = np.random.default_rng(seed)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(sock_path)
    except OSError as e:
        srv.close()
        raise StreamError(f"socket {sock_path}: cannot listen there ({e.strerror or e})") from None
    ino = os.stat(sock_path).st_ino
    done, broken, used = 0, 0, set()
    try:
        srv.listen(_BACKLOG)
        hello = json.dumps({"bundle": rx.bundle.hash_hex}).encode()
        print(f"stream rx: listening on {sock_path} (bundle {rx.bundle.hash_hex[:12]})", file=sys.stderr, flush=True)
        if ready is not None:
            ready()

        def image(payload: bytes) -> dict:
            t0 = time.perf_counter()
            name = "?"
            ack = {"side": "rx", "image": name}
            try:
                if len(payload) < 2:
                    raise StreamError("image message too short")
                (nlen,) = struct.unpack_from("<H", payload)
                ack["image"] = name = payload[2:2 + nlen].decode("utf-8", "replace")
                frame = parse(payload[2 + nlen:])
                failed = []
                img, timings, _ = receive_frame(rx, frame, rng, header_failures=failed)
                out = _output_path(outdir, name, used, force)
                atomic_write(out, lambda p: save_png(img, p), force)
                used.add(out.resolve())
                ack.update(ok=True, output=str(out), latency_ms=round(1e3 * (time.perf_counter() - t0), 3),
                           stages_ms={k: round(1e3 * v, 3) for k, v in timings.items()},
                           **({"csi": "pilots", "pilots": frame.csi.pilots, "tiles": frame.n_tiles,
                               "header_failures": len(failed)} if frame.estimated else {}))
            except Exception as e:  # noqa: BLE001 - one bad image must not end the stream
                ack.update(ok=False, error=_one_line(e))
            return ack

        def serve(conn: socket.socket) -> str:
            nonlocal done
            try:
                send_msg(conn, MSG_HELLO, hello)
            except OSError:
                return _Served.EMPTY  # a probe that has already gone
            got = False
            while True:
                try:
                    kind, payload = recv_msg(conn, allow_eof=True)
                except (StreamError, OSError) as e:
                    if not got:  # e.g. a probe (claim_socket_path) that closed without reading the greeting
                        return _Served.EMPTY
                    print(f"stream rx: transmitter broke off mid-stream ({_one_line(e)})", file=sys.stderr, flush=True)
                    return _Served.BROKEN
                if kind is None:
                    if got:
                        print("stream rx: transmitter left without ending its stream", file=sys.stderr, flush=True)
                        return _Served.BROKEN
                    return _Served.EMPTY
                got = True
                if kind == MSG_END:
                    return _Served.DONE
                if kind != MSG_IMAGE:
                    print(f"stream rx: unexpected message type {kind}; dropping that transmitter", file=sys.stderr,
                          flush=True)
                    return _Served.BROKEN
                ack = image(payload)
                done += bool(ack.get("ok"))
                _emit(ack)
                try:
                    send_msg(conn, MSG_ACK, json.dumps(ack).encode())
                except OSError as e:
                    print(f"stream rx: transmitter went away ({_one_line(e)})", file=sys.stderr, flush=True)
                    return _Served.BROKEN

        streams = 0
        while True:
            if streams and not select.select([srv], [], [], 0)[0]:
                break  # a stream has ended and nobody else is waiting
            conn, _ = srv.accept()
            with conn:
                res = serve(conn)
            if res != _Served.EMPTY:
                streams += 1
                broken += res == _Served.BROKEN
    finally:
        srv.close()
        try:  # remove the socket only if it is still ours
            if os.stat(sock_path).st_ino == ino:
                os.unlink(sock_path)
        except OSError:
            pass
    if broken:
        raise StreamError(f"{broken} transmitter(s) broke off mid-stream ({done} images decoded)")
    return done


def run_transmitter(sock_path: str, images: list[Path], snr_db: float, bundle=None, seed: int = 0,
                    channel: str = "rayleigh", per_image: bool = False, device: str = "cpu",
                    connect_timeout: float = 30.0, receiver_alive=None, hello_wait: float = 1.0,
                    csi=None) -> list[dict]:
    """Connect to a receiver and stream ``images``; returns one record per image. ``csi``: the
    transmitter's "perfect" (default) | "pilots" | :class:`~escmvq.runtime.csi.CsiConfig` (the
    receiver reads it from each frame).

    An image that cannot be read or sent gets a record with ``ok: false`` and the stream
    goes on. If the receiver is serving another transmitter, says so on stderr and waits
    for its turn. ``receiver_alive``: optional callable, False once the receiver process is
    known to have exited (stops waiting for it to listen)."""
    from escmvq.runtime.images import load_image
    from escmvq.runtime.link import transmit_image
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle, device=device, csi=csi)
    rng = np.random.default_rng(seed)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            conn.connect(sock_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if receiver_alive is not None and not receiver_alive():
                conn.close()
                raise StreamError("the receiver process exited before listening") from None
            if time.monotonic() > deadline:
                conn.close()
                raise StreamError(f"no receiver listening on {sock_path}") from None
            time.sleep(0.05)
    records = []
    with conn:
        if not select.select([conn], [], [], hello_wait)[0]:
            print(f"stream tx: waiting for the receiver on {sock_path} (it is serving another transmitter)...",
                  file=sys.stderr, flush=True)
        try:
            kind, _ = recv_msg(conn, allow_eof=True)
        except (StreamError, OSError):
            kind = None
        if kind != MSG_HELLO:
            raise StreamError(f"the receiver on {sock_path} closed the connection without serving it")

        def exchange(msg_kind: int, payload: bytes = b"", reply: bool = True):
            try:
                send_msg(conn, msg_kind, payload)
                return recv_msg(conn) if reply else (None, b"")
            except (StreamError, OSError) as e:
                raise StreamError(f"the receiver on {sock_path} went away ({_one_line(e)})") from None

        for path in images:
            rec = {"side": "tx", "image": str(path)}
            t0 = time.perf_counter()
            try:
                img = load_image(path)
                frame, timings, _, _ = transmit_image(tx, img, snr_db, rng, channel, per_image)
                data = frame.to_bytes()
                del img, frame
            except Exception as e:  # noqa: BLE001 - one bad image must not end the stream
                rec.update(ok=False, error=_one_line(e))
                _emit(rec)
                records.append(rec)
                continue
            name = Path(path).name.encode()[:65535]
            t1 = time.perf_counter()
            kind, payload = exchange(MSG_IMAGE, struct.pack("<H", len(name)) + name + data)
            t2 = time.perf_counter()
            ack = json.loads(payload) if kind == MSG_ACK else {}
            rec.update(ok=bool(ack.get("ok")), tx_ms=round(1e3 * (t1 - t0), 3), round_trip_ms=round(1e3 * (t2 - t0), 3),
                       stages_ms={k: round(1e3 * v, 3) for k, v in timings.items()}, rx=ack)
            _emit({k: v for k, v in rec.items() if k != "rx"} | {"rx_ok": ack.get("ok"), "rx_error": ack.get("error"),
                                                                 "rx_output": ack.get("output")}
                  | ({"rx_header_failures": ack["header_failures"]} if "header_failures" in ack else {}))
            records.append(rec)
        exchange(MSG_END, reply=False)
    return records
