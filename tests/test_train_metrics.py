"""``OUT/metrics.jsonl`` and ``--tensorboard``: one line per evaluation, written as training
goes, cut back to the checkpoint's step on resume; TensorBoard scalars equal to the lines;
a missing tensorboard package is a one-line error before training starts."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training import metrics as M  # noqa: E402
from escmvq.training import trainer as T  # noqa: E402
from escmvq.training.data import ImageSet  # noqa: E402
from escmvq.training.presets import get_preset  # noqa: E402
from train_helpers import train_cli  # noqa: E402

RUN_KEYS = {"format", "version", "time_utc", "step", "stage", "epoch", "elapsed_s", "img_per_s", "lr", "tau"}
PER_CODEBOOK = ("eval_psnr", "d0", "d1", "R", "mu", "eval_perplexity", "eval_dead", "train_perplexity",
                "train_dead", "restarted")


@pytest.fixture(scope="module")
def data():
    imgs = T.synthetic_images(40, 32, 5)
    return ImageSet("synthetic", imgs[8:], imgs[:8])


def _train(out, data, epochs=(1, 1, 1, 1, 1), **kw):
    pre = get_preset("tiny").replace(epochs_per_stage=tuple(epochs))
    return T.train(T.TrainConfig(preset=pre, data=data, out=out, seed=1, progress=False, console=None, **kw))


def _history_line(rec: dict) -> dict:
    """A checkpoint history record as metrics.jsonl writes it (JSON round trip)."""
    return json.loads(json.dumps(rec))


def _strip(line: dict) -> dict:
    return {k: v for k, v in line.items() if k not in ("format", "version", "time_utc")}


def test_one_line_per_evaluation_written_as_training_goes(tmp_path, data, monkeypatch):
    out = tmp_path / "run"
    seen = []
    save = T.save_checkpoint

    def spy(path, model, preset, **extra):  # the checkpoint of each epoch: its line is already on disk
        seen.append((len(M.read_metrics(out / M.METRICS_FILE)), len(extra["history"])))
        return save(path, model, preset, **extra)

    monkeypatch.setattr(T, "save_checkpoint", spy)
    res = _train(out, data, epochs=(2, 1, 1, 1, 1))
    hist = res["summary"]["history"]
    assert seen == [(n, n) for n in range(1, 7)]
    lines = [json.loads(x) for x in (out / M.METRICS_FILE).read_text().splitlines()]
    assert len(lines) == len(hist) == 6
    assert [(x["stage"], x["epoch"]) for x in lines] == [(1, 1), (1, 2), (2, 1), (3, 1), (4, 1), (5, 1)]
    steps = [x["step"] for x in lines]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # tiny: 2 steps per epoch
    for x, h in zip(lines, hist):
        assert x["format"] == "escmvq-train-metrics" and x["version"] == 1
        assert RUN_KEYS <= set(x) and x["time_utc"].endswith("Z")
        assert _strip(x) == _history_line(h)
        for k in PER_CODEBOOK:
            assert len(x[k]) == x["stage"], k
        assert set(x["mu"][0]) == {"mean", "median", "min", "max"}
        assert all(0 < p < 100 for p in x["eval_psnr"]) and x["img_per_s"] > 0


def _resume_point(tmp_path, data, monkeypatch, **kw):
    """A run of 6 epochs and a copy of its checkpoint after epoch 1 (stage 1, step 2)."""
    out = tmp_path / "run"
    save = T.save_checkpoint
    first = tmp_path / "epoch1.ckpt"

    def keep_first(path, model, preset, **extra):
        r = save(path, model, preset, **extra)
        if not first.exists():
            shutil.copy(path, first)
        return r

    monkeypatch.setattr(T, "save_checkpoint", keep_first)
    _train(out, data, epochs=(2, 1, 1, 1, 1), **kw)
    monkeypatch.setattr(T, "save_checkpoint", save)
    return out, first


def test_resume_keeps_lines_up_to_the_checkpoint(tmp_path, data, monkeypatch):
    out, first = _resume_point(tmp_path, data, monkeypatch)
    full = M.read_metrics(out / M.METRICS_FILE)
    assert [x["step"] for x in full] == [2, 4, 6, 8, 10, 12]
    # the process died after epoch 1's checkpoint: the later lines must go, the resumed epochs
    # come back once each; a line cut mid-write is dropped too
    shutil.copy(first, out / "last.ckpt")
    with open(out / M.METRICS_FILE, "a") as f:
        f.write('{"step": 14, "stage": 5, "ep')
    res = _train(out, data, epochs=(2, 1, 1, 1, 1), resume=True)
    lines = M.read_metrics(out / M.METRICS_FILE)
    assert [x["step"] for x in lines] == [2, 4, 6, 8, 10, 12]
    assert lines[0] == full[0]  # the kept line is untouched (same time stamp)
    assert [_strip(x) for x in lines] == [_history_line(h) for h in res["summary"]["history"]]
    assert len((out / M.METRICS_FILE).read_text().splitlines()) == 6


def test_resume_without_a_metrics_file_rebuilds_it_from_the_checkpoint(tmp_path, data, monkeypatch):
    out, first = _resume_point(tmp_path, data, monkeypatch)
    shutil.copy(first, out / "last.ckpt")
    (out / M.METRICS_FILE).unlink()
    res = _train(out, data, epochs=(2, 1, 1, 1, 1), resume=True)
    lines = M.read_metrics(out / M.METRICS_FILE)
    assert [_strip(x) for x in lines] == [_history_line(h) for h in res["summary"]["history"]]
    assert [x["step"] for x in lines] == [2, 4, 6, 8, 10, 12]


def test_fresh_run_starts_a_new_file(tmp_path, data):
    out = tmp_path / "run"
    out.mkdir()
    (out / M.METRICS_FILE).write_text('{"step": 1, "stale": true}\n' * 3)
    _train(out, data)
    lines = M.read_metrics(out / M.METRICS_FILE)
    assert len(lines) == 5 and not any("stale" in x for x in lines)


def test_non_finite_numbers_are_null(tmp_path):
    w = M.MetricsWriter(tmp_path)
    w.write({"step": 3, "stage": 1, "epoch": 1, "d0": [float("nan")], "eval_psnr": (float("inf"), 20.0),
             "img_per_s": np.float32(5.0), "mu": [{"mean": torch.tensor(0.25)}]})
    w.close()
    text = (tmp_path / M.METRICS_FILE).read_text()
    line = json.loads(text)  # strict JSON: no NaN / Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    assert line["d0"] == [None] and line["eval_psnr"] == [None, 20.0]
    assert line["img_per_s"] == 5.0 and line["mu"] == [{"mean": 0.25}]


def test_tensorboard_scalars_equal_the_lines(tmp_path, data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    _train(out, data, tensorboard=True)
    lines = M.read_metrics(out / M.METRICS_FILE)
    acc = EventAccumulator(str(out / M.TENSORBOARD_DIR))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"lr", "tau", "img_per_s", "elapsed_s", "stage", "eval_psnr/cb1", "eval_psnr/cb5", "d0/cb3",
            "mu_median/cb5", "eval_dead/cb2", "restarted/cb1"} <= tags

    def check(tag, expected):
        got = acc.Scalars(tag)
        assert [e.step for e in got] == [step for step, _ in expected], tag
        assert [e.value for e in got] == pytest.approx([v for _, v in expected], rel=1e-6), tag  # float32 events

    check("eval_psnr/cb1", [(x["step"], x["eval_psnr"][0]) for x in lines])
    check("eval_psnr/cb5", [(lines[-1]["step"], lines[-1]["eval_psnr"][4])])
    check("mu_mean/cb2", [(x["step"], x["mu"][1]["mean"]) for x in lines[1:]])
    check("lr", [(x["step"], x["lr"]) for x in lines])
    check("d1/cb3", [(x["step"], x["d1"][2]) for x in lines[2:]])


def test_tensorboard_after_resume_has_each_step_once(tmp_path, data, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, first = _resume_point(tmp_path, data, monkeypatch, tensorboard=True)
    shutil.copy(first, out / "last.ckpt")
    _train(out, data, epochs=(2, 1, 1, 1, 1), resume=True, tensorboard=True)
    lines = M.read_metrics(out / M.METRICS_FILE)
    acc = EventAccumulator(str(out / M.TENSORBOARD_DIR))
    acc.Reload()
    got = acc.Scalars("eval_psnr/cb1")
    assert [e.step for e in got] == [2, 4, 6, 8, 10, 12]  # the first process's steps 4..12 purged
    assert [e.value for e in got] == pytest.approx([x["eval_psnr"][0] for x in lines], rel=1e-6)


def test_missing_tensorboard_is_a_one_line_error_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    assert "pip install tensorboard" in M.tensorboard_missing()
    with pytest.raises(ImportError, match="pip install tensorboard"):
        M.MetricsWriter(tmp_path / "api", tensorboard=True)
    assert not (tmp_path / "api").exists()
    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "train.npz", images=T.synthetic_images(16, 32, 1))
    np.savez(d / "test.npz", images=T.synthetic_images(4, 32, 2))
    r = train_cli("train", "--preset", "tiny", "--dataset", "npz", "--data-dir", d, "--out", tmp_path / "o",
                  "--threads", "1", "--tensorboard")
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    assert r.stdout.strip().splitlines() == ["error: --tensorboard needs the tensorboard package: pip install tensorboard"]
    assert not (tmp_path / "o").exists()


def test_cli_writes_metrics_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "train.npz", images=T.synthetic_images(16, 32, 1))
    np.savez(d / "test.npz", images=T.synthetic_images(4, 32, 2))
    out = tmp_path / "o"
    r = train_cli("train", "--preset", "tiny", "--dataset", "npz", "--data-dir", d, "--out", out,
                  "--threads", "1", "--epochs", "1,1,1,1,1", "--tensorboard")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(M.read_metrics(out / M.METRICS_FILE)) == 5
    assert any(p.name.startswith("events.out.tfevents") for p in (out / M.TENSORBOARD_DIR).iterdir())
    ck = torch.load(out / "last.ckpt", weights_only=True)
    assert [_strip(x) for x in M.read_metrics(out / M.METRICS_FILE)] == [_history_line(h) for h in ck["history"]]
