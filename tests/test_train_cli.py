"""``escmvq train`` / ``report`` / ``mu-plot`` end to end on a tiny synthetic npz; checkpoints,
resume, bad input; DDP with two gloo processes."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from escmvq.training.trainer import build_tiny_checkpoint, synthetic_images  # noqa: E402
from train_helpers import train_cli as _cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def npz_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    np.savez(d / "train.npz", images=synthetic_images(40, 32, 1))
    np.savez(d / "test.npz", images=synthetic_images(8, 32, 2))
    return d


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.ckpt")


def test_checkpoint_format_matches_interface(tiny_ckpt):
    model, ck = load_checkpoint(tiny_ckpt)
    assert ck["format"] == "escmvq-ckpt" and ck["version"] == 1
    assert ck["image_size"] == [32, 32] and ck["latent_shape"] == [4, 8, 8]
    assert tuple(np.asarray(ck["codebooks"]).shape) == (5, 512, 4)
    mu = np.asarray(ck["mu"])
    assert mu.shape == (5, 64, 9) and mu.dtype == np.float32
    assert (mu >= np.array(model.preset.mu_min)[:, None, None] - 1e-7).all() and (mu <= 0.5).all()
    dist = np.asarray(ck["distortion"])
    assert dist.shape == (5, 64) and dist.dtype == np.float64 and (dist > 0).all()
    assert set(ck["normalisation"]) == {"mean", "std"}
    np.testing.assert_array_equal(np.asarray(ck["codebooks"]), model.codebooks.detach().numpy())
    # the stored table is (31) of the numpy runtime code over the training images
    from escmvq.core import pvq
    from escmvq.training.trainer import encode_all

    train = synthetic_images(48, 32, 0)[8:]
    mean = torch.tensor(ck["normalisation"]["mean"], dtype=torch.float32)
    std = torch.tensor(ck["normalisation"]["std"], dtype=torch.float32)
    ref = pvq.distortion_table(encode_all(model, train, mean, std), np.asarray(ck["codebooks"], np.float64),
                               np.asarray(ck["mu"], np.float64))
    np.testing.assert_allclose(dist, ref, rtol=1e-5)
    # larger mu, larger expected distortion (30): codebook 5 (mu >= 0.05) above codebook 1
    assert dist[4].mean() > dist[0].mean()


def test_checkpoint_roundtrip_and_bad_files(tmp_path, tiny_ckpt):
    model, ck = load_checkpoint(tiny_ckpt)
    p = save_checkpoint(tmp_path / "a.ckpt", model, model.preset, normalisation=ck["normalisation"], epoch=3)
    m2, ck2 = load_checkpoint(p)
    for k, v in model.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    assert ck2["epoch"] == 3 and ck2["distortion"] is None
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "bad.ckpt")
    torch.save({"format": "other"}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not an escmvq checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_train_resume_report_and_plot(tmp_path, npz_dir):
    out = tmp_path / "run"
    r = _cli("train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(out),
             "--epochs", "1,1,1,1,1", "--seed", "3", "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stage 5/5" in r.stdout and "checkpoint:" in r.stdout
    ck = torch.load(out / "last.ckpt", weights_only=True)
    assert ck["stage"] == 5 and ck["stage_done"] and "optimizer" in ck
    assert len(ck["history"]) == 5 and all("eval_psnr" in h for h in ck["history"])
    assert all(len(h["train_perplexity"]) == h["stage"] for h in ck["history"])
    final = torch.load(out / "final.ckpt", weights_only=True)
    assert final["distortion"].shape == (5, 64)
    # resume after a finished run: nothing left to train, same weights
    r = _cli("train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(out),
             "--resume", "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed from" in r.stdout
    again = torch.load(out / "last.ckpt", weights_only=True)
    assert again["step"] == ck["step"]
    # report + shipped copy + Fig. 3
    prefix = tmp_path / "rep" / "tiny"
    r = _cli("report", str(out / "final.ckpt"), "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(prefix),
             "--draws", "2", "--ship", str(tmp_path / "ship.ckpt"), "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    rep = json.loads(prefix.with_name("tiny.report.json").read_text())
    assert len(rep["codebooks"]) == 5 and rep["test_images"] == 8
    assert all(len(c["psnr_own_mu_draws"]) == 2 for c in rep["codebooks"])
    raw = final["model_state"]["mu_raw"].double()
    for v, c in enumerate(rep["codebooks"]):  # the sigmoid input behind each codebook's mu
        assert c["mu_raw_min"] == pytest.approx(float(raw[v].min()))
        assert c["mu_raw_max"] == pytest.approx(float(raw[v].max()))
        assert c["mu_near_floor_fraction"] == pytest.approx(float((torch.sigmoid(raw[v]) < 0.01).double().mean()))
    assert rep["codebooks"][4]["mu_near_floor_fraction"] == 1.0  # copied at 1.01 x its floor (raw ~ -6.8)
    assert "near floor" in prefix.with_name("tiny.report.md").read_text()
    assert prefix.with_name("tiny.mu-cdf.png").read_bytes()[:4] == b"\x89PNG"
    shipped = torch.load(tmp_path / "ship.ckpt", weights_only=True)
    assert "optimizer" not in shipped and "rng" not in shipped and shipped["distortion"] is not None
    r = _cli("mu-plot", str(tmp_path / "ship.ckpt"), "--out", str(tmp_path / "mu.png"))
    assert r.returncode == 0, r.stdout + r.stderr
    for png in (tmp_path / "mu.png", prefix.with_name("tiny.mu-cdf.png")):
        _assert_mu_cdf_plot(png)


def _assert_mu_cdf_plot(path, n_codebooks=5):
    """A 720x480 PNG (6x4 in at 120 dpi) with one CDF line per codebook, each in its own
    matplotlib default colour (C0..C4)."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (720, 480)
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in
               ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")[:n_codebooks]}
    present = {tuple(p) for p in np.unique(px, axis=0)}
    assert colours <= present, f"missing line colours {colours - present}"


def test_resume_mid_training_continues(tmp_path, npz_dir):
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(out),
            "--threads", "1", "--epochs", "2,1,1,1,1"]
    # a run that stops after stage 1 epoch 1 is simulated by a budget that ends every stage at once
    r = _cli(*args, "--budget-minutes", "0.00001")
    assert r.returncode == 0, r.stdout + r.stderr
    ck = torch.load(out / "last.ckpt", weights_only=True)
    assert ck["stage"] == 5 and ck["step"] == 5  # one step per stage
    first = torch.load(out / "last.ckpt", weights_only=True)
    # rewrite as "stage 1, epoch 1 of 2, not done" and resume: the run must continue from there
    # ... after earlier processes that trained for 1,000 s: wall time adds up across resumes
    assert 0 < first["wall_s"] < 1000
    first.update(stage=1, epoch=1, stage_done=False, stage_elapsed=[0.0] * 5, wall_s=1000.0)
    torch.save(first, out / "last.ckpt")
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed from" in r.stdout and "stage 1 epoch 2" in r.stdout and "stage 2/5" in r.stdout
    last = torch.load(out / "last.ckpt", weights_only=True)
    assert last["stage"] == 5
    final = torch.load(out / "final.ckpt", weights_only=True)
    assert 1000 < last["wall_s"] <= final["train_wall_s"] < 2000
    assert all(1000 < h["elapsed_s"] < 2000 for h in last["history"][-5:])  # the resumed process's epochs


def test_mu_raw_min_bounds_the_flat_tail(tmp_path, npz_dir):
    """Codebook 5 is copied from codebook 4 at 1.01 x its floor 0.05 (raw ~ -6.8): unbounded it
    stays below -6; with ``--mu-raw-min -6`` every raw is >= -6 after copies and steps, the bound
    is recorded in the checkpoint's preset, and a bad bound is a one-line error."""
    args = ["train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(npz_dir), "--epochs", "1,1,1,1,1",
            "--seed", "3", "--threads", "1"]
    raws = {}
    for name, extra in (("free", []), ("bounded", ["--mu-raw-min", "-6"])):
        r = _cli(*args, "--out", str(tmp_path / name), *extra)
        assert r.returncode == 0, r.stdout + r.stderr
        ck = torch.load(tmp_path / name / "final.ckpt", weights_only=True)
        raws[name] = ck["model_state"]["mu_raw"]
        assert ck["preset"]["mu_raw_min"] == (None if name == "free" else -6.0)
    assert float(raws["free"][4].max()) < -6.0
    assert float(raws["bounded"].min()) >= -6.0
    assert float(raws["bounded"][4].min()) > float(raws["free"][4].max()) + 0.5  # started at -6, not -6.8
    r = _cli(*args, "--out", str(tmp_path / "bad"), "--mu-raw-min", "3")
    assert r.returncode != 0 and "mu_raw_min must lie in [-50, 0)" in r.stdout
    assert len(r.stdout.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_bad_input_is_one_line_error(tmp_path, npz_dir):
    r = _cli("train", "--preset", "tiny", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    assert "CIFAR-10 not found" in r.stdout and len(r.stdout.strip().splitlines()) == 1
    r = _cli("train", "--preset", "huge", "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "unknown preset" in r.stdout and "Traceback" not in r.stdout + r.stderr
    r = _cli("train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(tmp_path / "o"), "--resume")
    assert r.returncode != 0 and "no checkpoint" in r.stdout
    r = _cli("report", str(tmp_path / "missing.ckpt"), "--dataset", "npz", "--data-dir", str(npz_dir), "--out", str(tmp_path / "r"))
    assert r.returncode != 0 and "checkpoint not found" in r.stdout and "Traceback" not in r.stdout + r.stderr


def test_ddp_two_gloo_processes(tmp_path, npz_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29577",
           "-m", "escmvq.cli.main", "train", "--preset", "tiny", "--dataset", "npz", "--data-dir", str(npz_dir),
           "--out", str(out), "--epochs", "2,1,0,0,0", "--threads", "1"]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = torch.load(out / "last.ckpt", weights_only=True)
    assert ck["world_size"] == 2 and ck["stage"] == 2
    assert ck["step"] == 2 * 2 + 2  # tiny: 2 steps per epoch; epochs 2 + 1
    assert "batch 8x2" in r.stdout
    model, _ = load_checkpoint(out / "final.ckpt")
    assert torch.isfinite(model.codebooks).all()
