"""escmvq.training.finalize: a Python caller of the trainer gets the exportable final.ckpt."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from escmvq.training.data import load_dataset
    from escmvq.training.presets import get_preset
    from escmvq.training.trainer import TrainConfig, synthetic_images, train

    d = tmp_path_factory.mktemp("data")
    np.savez(d / "train.npz", images=synthetic_images(40, 32, 1))
    np.savez(d / "test.npz", images=synthetic_images(8, 32, 2))
    data = load_dataset("npz", d)
    out = tmp_path_factory.mktemp("run")
    res = train(TrainConfig(preset=get_preset("tiny"), data=data, out=out, seed=0, threads=1,
                            epochs_override=(1, 1, 1, 1, 1), progress=False))
    return res, data, out


def test_finalize_writes_an_exportable_checkpoint(run):
    from escmvq.core import pvq
    from escmvq.training.checkpoint import load_checkpoint
    from escmvq.training.finalize import finalize
    from escmvq.training.trainer import encode_all

    res, data, out = run
    logged = []
    path = finalize(res, data.train, distortion_images=24, log=logged.append)
    assert path == out / "final.ckpt" and len(logged) == 1 and "over 24 training images" in logged[0]
    model, ck = load_checkpoint(path)
    dist = np.asarray(ck["distortion"])
    assert dist.shape == (5, 64) and dist.dtype == np.float64 and ck["distortion_images"] == 24
    # table (31) of the trained model over the first 24 training images, as the runtime computes it
    mean = torch.tensor(ck["normalisation"]["mean"], dtype=torch.float32)
    std = torch.tensor(ck["normalisation"]["std"], dtype=torch.float32)
    ref = pvq.distortion_table(encode_all(model, data.train[:24], mean, std), np.asarray(ck["codebooks"], np.float64),
                               np.asarray(ck["mu"], np.float64))
    np.testing.assert_allclose(dist, ref, rtol=1e-5)
    assert ck["train_wall_s"] >= res["summary"]["train_seconds"] and len(ck["history"]) == 5


def test_finalize_from_the_run_folder_equals_from_the_result(run, tmp_path):
    from escmvq.training.finalize import finalize

    res, data, out = run
    a = torch.load(finalize(res, data.train, out=tmp_path / "a.ckpt"), weights_only=True)
    b = torch.load(finalize(out, data.train, out=tmp_path / "b.ckpt"), weights_only=True)
    assert torch.equal(a["distortion"], b["distortion"]) and a["distortion_images"] == len(data.train)
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k])
    with pytest.raises(ValueError, match="not found"):
        finalize(tmp_path / "nothing-here", data.train)
