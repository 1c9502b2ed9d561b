"""The Sec. V baselines as presets of the same trainer (escmvq.training.baselines)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from escmvq.training import losses as L
from escmvq.training.baselines import BASELINES, FIXED_MU, baseline_levels, baseline_preset
from escmvq.training.model import ESCMVQ, row_to_scalars, scalars_to_row
from escmvq.training.presets import get_preset


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("base_name", ["cpu", "paper"])
def test_every_baseline_keeps_the_bit_budget(method, base_name):
    base = get_preset(base_name)
    for level in baseline_levels(method, base):
        p = baseline_preset(base, method, level)
        assert p.V == 1 and len(p.epochs_per_stage) == 1
        assert p.N * p.B == base.N * base.B  # same compression ratio L = N*B
        assert p.hidden == base.hidden and p.batch_size == base.batch_size and p.lr == base.lr


def test_baseline_fields():
    base = get_preset("cpu")
    svq = baseline_preset(base, "esc-svq", 3)
    assert svq.mu_min == (base.mu_min[2],) and svq.lambdas == (base.lambdas[2],) and svq.mu_fixed is None
    vq = baseline_preset(base, "bsc-vq", "0.02")
    assert vq.mu_fixed == 0.02 and vq.quantizer == "vq"
    sq = baseline_preset(base, "bsc-sq", 0.1)
    assert (sq.quantizer, sq.D, sq.B, sq.sq_channels, sq.mu_fixed) == ("sq", 1, 3, 3, 0.1)
    assert sq.latent_hw == (8, 24) and sq.N == 192
    bl = baseline_preset(base, "blindsc", 5)
    assert bl.quantizer == "sq" and bl.mu_fixed is None and bl.regulariser == "mse-half"
    assert baseline_levels("bsc-vq", base) == tuple(f"{m:g}" for m in FIXED_MU)
    with pytest.raises(ValueError, match="not one of"):
        baseline_preset(base, "bsc-vq", 0.3)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_preset(base, "nope", 1)


def test_sq_layout_round_trip():
    z = torch.randn(2, 3, 4, 5)
    row = scalars_to_row(z)
    assert row.shape == (2, 1, 4, 15)
    # a position's 3 scalars sit side by side in raster order
    assert torch.equal(row[0, 0, 1, 6:9], z[0, :, 1, 2])
    assert torch.equal(row_to_scalars(row, 3), z)


def test_sq_model_fixed_levels_fixed_mu_and_bounded_latent():
    p = baseline_preset(get_preset("tiny"), "bsc-sq", 0.02)
    m = ESCMVQ(p)
    assert torch.allclose(m.codebooks[0, :, 0], torch.linspace(-1, 1, 8))
    assert not m.codebooks.requires_grad and not m.mu_raw.requires_grad
    assert torch.all(m.mu() == 0.02)
    x = torch.randn(4, 3, 32, 32)
    z = m.encoder(x)
    assert z.shape == (4, 1, 8, 24) and float(z.detach().abs().max()) <= 1.0
    loss, st = m(x, 1, 0.5, torch.Generator().manual_seed(0))
    assert float(st["R"][0]) == 0.0  # fixed mu: no regulariser
    loss.backward()
    assert m.codebooks.grad is None and m.mu_raw.grad is None
    assert m.encoder.proj.weight.grad is not None
    # hard labels are the uniform SQ of the latent
    zs = z.detach().reshape(4, -1)
    expect = torch.round((zs.clamp(-1, 1) + 1) / 2 * 7).long()
    assert torch.equal(st["idx"][0], expect)


def test_blindsc_regulariser_pulls_mean_mu_to_half():
    mu = torch.full((4, 3), 0.1, requires_grad=True)
    r = L.regulariser(mu, "mse-half")
    assert float(r.detach()) == pytest.approx(0.16)
    r.backward()
    assert torch.all(mu.grad < 0)  # gradient descent raises mu
    assert float(L.regulariser(torch.full((2, 2), 0.5), "mse-half")) == 0.0
    with pytest.raises(ValueError):
        L.regulariser(mu, "nope")


@pytest.mark.parametrize("method,level", [("bsc-vq", "0.05"), ("blindsc", "5"), ("bsc-sq", "0.1")])
def test_baseline_pair_trains_exports_and_runs(tmp_path, method, level):
    """A tiny pair of each kind trains through the same trainer, exports, and the torch-free
    runtime sends and receives with it."""
    from escmvq.export.pipeline import export_checkpoint
    from escmvq.runtime.receiver import Receiver
    from escmvq.runtime.transmitter import Transmitter
    from escmvq.training.trainer import build_tiny_checkpoint, synthetic_images

    p = baseline_preset(get_preset("tiny"), method, level)
    ck = build_tiny_checkpoint(tmp_path / "b.ckpt", preset=p)
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=synthetic_images(40, 32, seed=3))
    out = tmp_path / "b.escmvq"
    export_checkpoint(ck, out, calib, n_calib=24, n_check=16, int8=False, log=lambda m: None)
    tx = Transmitter(out)
    rx = Receiver(tx.bundle)
    assert tx.bundle.codebooks.shape == ((1, 8, 1) if p.quantizer == "sq" else (1, 512, 4))
    tiles = synthetic_images(3, 32, seed=5).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    r = tx.send(tiles, snr_db=40.0)
    assert r.samples.shape == (3, 144)  # L = 576 bits at R = 4 for every baseline
    o = rx.receive(r.samples, r.h, r.p_tot)  # noiseless: the sent labels come back
    assert np.array_equal(o.labels, r.labels)
    assert o.tiles.shape == (3, 3, 32, 32)


def test_train_baselines_command_trains_exports_skips_and_reports(tmp_path):
    """``escmvq train-baselines``: two tiny pairs side by side, bundles + baselines.json;
    a second call skips both; a bad pair spec, or a driver already running in --out, is a one-line error."""
    import json

    import typer
    from typer.testing import CliRunner

    from escmvq.cli import baselines as cli
    from escmvq.training.trainer import synthetic_images

    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "train.npz", images=synthetic_images(40, 32, 1))
    np.savez(data / "test.npz", images=synthetic_images(24, 32, 2))
    app = typer.Typer(pretty_exceptions_enable=False)
    cli.register(app)
    app.command("noop")(lambda: None)  # keep typer in multi-command mode
    args = ["train-baselines", "--out", str(tmp_path / "bl"), "--data-dir", str(data), "--dataset", "npz",
            "--preset", "tiny", "--pairs", "bsc-sq:0.1,esc-svq:5", "--epochs", "1", "--steps-per-epoch", "2",
            "--jobs", "2", "--calib", str(data / "test.npz")]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    js = json.loads((tmp_path / "bl" / "baselines.json").read_text())
    assert set(js["pairs"]) == {"tiny-bsc-sq-0.1", "tiny-esc-svq-5"} and js["steps_per_pair"] == 2
    sq = js["pairs"]["tiny-bsc-sq-0.1"]
    assert sq["steps"] == 2 and sq["mu_mean"] == pytest.approx(0.1) and sq["preset"]["quantizer"] == "sq"
    assert sq["parameter_bytes"] > 0 and len(sq["bundle_sha256"]) == 64
    man = json.loads((tmp_path / "bl" / "bundles" / "tiny-esc-svq-5.escmvq" / "manifest.json").read_text())
    assert man["model"]["allocator"]["method"] == "jcap" and not man["model"]["allocator"].get("erasures")
    r2 = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert r2.exit_code == 0 and r2.output.count(": exists") == 2
    bad = CliRunner().invoke(app, args[:9] + ["--pairs", "bsc-vq:0.3"], env={"COLUMNS": "200"})
    assert bad.exit_code != 0 and "not one of" in bad.output
    import fcntl

    with open(tmp_path / "bl" / ".train-baselines.lock", "w") as held:  # a driver already running there
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert busy.exit_code != 0 and "another escmvq train-baselines is running" in busy.output
    assert ": exists" not in busy.output  # refused before touching any pair
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # lock released: runs again
    assert again.exit_code == 0 and again.output.count(": exists") == 2
