"""Transmitter and receiver as two long-lived processes over a local (Unix) socket.

The transmitter process encodes and modulates each image and sends its frame; the
receiver process applies the channel (its own seeded generator), demodulates, decodes,
writes a PNG and answers with an acknowledgement. Each side prints one JSON line per
image with its own latency (stdout); progress goes to stderr.

Wire format: messages of ``b"EM" | type u8 | 0 u8 | length u32 | payload``; type 1 = an
image (``u16 name length | name utf-8 | .tx frame``), 2 = end of stream, 3 = the
receiver's acknowledgement (JSON).
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["serve_receiver", "run_transmitter", "StreamError"]

_HEAD = struct.Struct("<2sBBI")
MSG_IMAGE, MSG_END, MSG_ACK = 1, 2, 3
_MAX_MSG = 1 << 30


class StreamError(RuntimeError):
    pass


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise StreamError("connection closed mid-message")
        buf += chunk
    return bytes(buf)


def send_msg(conn: socket.socket, kind: int, payload: bytes = b"") -> None:
    conn.sendall(_HEAD.pack(b"EM", kind, 0, len(payload)) + payload)


def recv_msg(conn: socket.socket) -> tuple[int, bytes]:
    magic, kind, _, n = _HEAD.unpack(_recv_exact(conn, _HEAD.size))
    if magic != b"EM" or n > _MAX_MSG:
        raise StreamError("bad stream message header")
    return kind, _recv_exact(conn, n)


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def serve_receiver(sock_path: str, bundle=None, outdir: str | os.PathLike = ".", seed: int = 0,
                   force: bool = False, device: str = "cpu", ready=None) -> int:
    """Listen on ``sock_path``, decode every frame until end of stream; returns images decoded."""
    from escmvq.runtime.files import atomic_write
    from escmvq.runtime.frame import FrameError, parse
    from escmvq.runtime.images import save_png
    from escmvq.runtime.link import receive_frame
    from escmvq.runtime.receiver import Receiver

    rx = Receiver(bundle, device=device)
    rng = np.random.default_rng(seed)
    outdir = Path(outdir)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    srv.bind(sock_path)
    srv.listen(1)
    print(f"stream rx: listening on {sock_path} (bundle {rx.bundle.hash_hex[:12]})", file=sys.stderr, flush=True)
    if ready is not None:
        ready()
    done = 0
    try:
        conn, _ = srv.accept()
        with conn:
            while True:
                kind, payload = recv_msg(conn)
                if kind == MSG_END:
                    break
                if kind != MSG_IMAGE:
                    raise StreamError(f"unexpected message type {kind}")
                t0 = time.perf_counter()
                (nlen,) = struct.unpack_from("<H", payload)
                name = payload[2:2 + nlen].decode("utf-8", "replace")
                ack = {"side": "rx", "image": name}
                try:
                    frame = parse(payload[2 + nlen:])
                    img, timings, _ = receive_frame(rx, frame, rng)
                    out = outdir / (Path(name).stem + ".rx.png")
                    atomic_write(out, lambda p: save_png(img, p), force)
                    ack.update(ok=True, output=str(out), latency_ms=round(1e3 * (time.perf_counter() - t0), 3),
                               stages_ms={k: round(1e3 * v, 3) for k, v in timings.items()})
                    done += 1
                except (FrameError, OSError, ValueError) as e:
                    ack.update(ok=False, error=str(e).splitlines()[0])
                _emit(ack)
                send_msg(conn, MSG_ACK, json.dumps(ack).encode())
    finally:
        srv.close()
        if os.path.exists(sock_path):
            os.unlink(sock_path)
    return done


def run_transmitter(sock_path: str, images: list[Path], snr_db: float, bundle=None, seed: int = 0,
                    channel: str = "rayleigh", per_image: bool = False, device: str = "cpu",
                    connect_timeout: float = 30.0) -> list[dict]:
    """Connect to a receiver and stream ``images``; returns one record per image."""
    from escmvq.runtime.images import ImageError, load_image
    from escmvq.runtime.link import transmit_image
    from escmvq.runtime.transmitter import Transmitter

    tx = Transmitter(bundle, device=device)
    rng = np.random.default_rng(seed)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            conn.connect(sock_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise StreamError(f"no receiver listening on {sock_path}") from None
            time.sleep(0.05)
    records = []
    with conn:
        for path in images:
            rec = {"side": "tx", "image": str(path)}
            t0 = time.perf_counter()
            try:
                img = load_image(path)
            except ImageError as e:
                rec.update(ok=False, error=str(e))
                _emit(rec)
                records.append(rec)
                continue
            frame, timings, _, _ = transmit_image(tx, img, snr_db, rng, channel, per_image)
            name = Path(path).name.encode()[:65535]
            t1 = time.perf_counter()
            send_msg(conn, MSG_IMAGE, struct.pack("<H", len(name)) + name + frame.to_bytes())
            kind, payload = recv_msg(conn)
            t2 = time.perf_counter()
            ack = json.loads(payload) if kind == MSG_ACK else {}
            rec.update(ok=bool(ack.get("ok")), tx_ms=round(1e3 * (t1 - t0), 3), round_trip_ms=round(1e3 * (t2 - t0), 3),
                       stages_ms={k: round(1e3 * v, 3) for k, v in timings.items()}, rx=ack)
            _emit({k: v for k, v in rec.items() if k != "rx"} | {"rx_ok": ack.get("ok"), "rx_error": ack.get("error")})
            records.append(rec)
        send_msg(conn, MSG_END)
    return records
