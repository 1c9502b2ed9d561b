"""Transmitter and receiver derive byte-identical plans: two separate Python processes
(one building the Allocator, one loading its saved state; plus one rebuilding it from
the tables) over 1,000 random (P_tot, gamma) give identical bytes."""
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from escmvq.runtime import Allocator

    mode, path, method, out = sys.argv[1:5]
    if mode == "build":
        rng = np.random.default_rng(2024)
        V, N, B = 5, 64, 9
        mm = np.array([0.0005, 0.001, 0.0045, 0.02, 0.05])
        mu = np.minimum(mm[:, None, None] * np.exp(rng.uniform(0, 2.5, (V, N, B))), 0.5)
        D = rng.uniform(0.2, 1, N)[None] * (1 + np.cumsum(rng.uniform(0.05, 0.6, (V, N)), axis=0))
        if method.endswith("+erasures"):  # erasure states, flip-cost layout and per-position powers
            extra = dict(erasure_distortion=D[-1] * rng.uniform(1.2, 2.5, N), flip_cost=rng.uniform(1, 9, (V, N, B)),
                         positions=True)
        else:
            extra = {}
        alloc = Allocator(D, mu, rate=4, method=method.split("+")[0], **extra)
        np.savez(path, **alloc.state())
    else:
        with np.load(path, allow_pickle=False) as z:
            alloc = Allocator.from_state(z)
    rng = np.random.default_rng(99)
    snr = rng.uniform(-10, 35, 1000)
    gamma = rng.exponential(size=1000) + 1e-4
    p_tot = 576 * 10 ** (snr / 10)
    with open(out, "wb") as f:
        for p, g in zip(p_tot, gamma):
            f.write(alloc.plan(float(p), float(g)).to_bytes())
    """
)


def _run(args):
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)


def test_two_processes_byte_identical(tmp_path):
    for method in ("jcamp", "jcap", "jcamp+erasures"):
        st = tmp_path / f"{method}.npz"
        a, b, c = (tmp_path / f"{method}_{x}.bin" for x in "abc")
        p = _run(["build", str(st), method, str(a)])
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
        procs = [_run(["load", str(st), method, str(b)]), _run(["build", str(tmp_path / "again.npz"), method, str(c)])]
        for q in procs:
            assert q.wait(timeout=300) == 0, q.stderr.read()[-3000:]
        da, db, dc = (x.read_bytes() for x in (a, b, c))
        assert len(da) > 1000 * 144 * 8
        assert hashlib.sha256(da).digest() == hashlib.sha256(db).digest() == hashlib.sha256(dc).digest()
        # and the plans are not all the same: the budgets span the trajectory
        n = len(da) // 1000
        assert n * 1000 == len(da)
        assert len({da[i * n : (i + 1) * n] for i in range(1000)}) > 100


GAMMA_WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from escmvq.core.channels import channel_gamma, draw_h, snr_db_to_ptot
    from escmvq.runtime import Allocator

    side, state, frame, out = sys.argv[1:5]
    with np.load(state, allow_pickle=False) as z:
        alloc = Allocator.from_state(z)
    if side == "tx":  # draws h, keeps it as complex64 (what the frame carries) and writes it
        rng = np.random.default_rng(5)
        h = np.concatenate([draw_h(rng, 300, "rayleigh"), (draw_h(rng, 200, "rayleigh") * 1e-3).astype(np.complex64)])
        open(frame, "wb").write(h.tobytes())
    else:  # reads the coefficients from the bytes only
        h = np.frombuffer(open(frame, "rb").read(), np.complex64)
    p_tot = snr_db_to_ptot(10.0, 576, noise_var=0.7)
    with open(out, "wb") as f:
        for g in channel_gamma(h, 0.7):
            f.write(np.float64(g).tobytes() + alloc.plan(float(p_tot), float(g)).to_bytes())
    """
)


def test_tx_and_rx_derive_identical_gamma_and_plans_from_the_frame(tmp_path):
    """Each end computes gamma from the frame's complex64 h itself (channel_gamma) and
    plans from (P_tot, gamma): the gammas and plans of two processes agree byte for byte."""
    st = tmp_path / "state.npz"
    p = _run(["build", str(st), "jcamp", str(tmp_path / "unused.bin")])
    assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    frame, a, b = tmp_path / "h.bin", tmp_path / "tx.bin", tmp_path / "rx.bin"
    for side, out in (("tx", a), ("rx", b)):
        q = subprocess.Popen([sys.executable, "-c", GAMMA_WORKER, side, str(st), str(frame), str(out)], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
        assert q.wait(timeout=300) == 0, q.stderr.read()[-3000:]
    da, db = a.read_bytes(), b.read_bytes()
    assert len(da) > 500 * 8 and da == db
