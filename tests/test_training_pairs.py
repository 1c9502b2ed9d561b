"""escmvq.training.pairs: the K-pair scheduler as a library call (skip, lock, bad specs); the
full train + export of two tiny pairs runs through the command in test_training_baselines."""
from __future__ import annotations

import json

import pytest

from escmvq.training.pairs import PairsBusy, pair_name, pair_paths, train_pairs


def _existing(out, name):
    _, bundle = pair_paths(out, name)
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")


def test_existing_bundles_are_skipped_and_reported(tmp_path):
    out = tmp_path / "bl"
    specs = ["bsc-sq:0.1", "esc-svq:5"]
    names = [pair_name("tiny", s) for s in specs]
    assert names == ["tiny-bsc-sq-0.1", "tiny-esc-svq-5"]
    for n in names:
        _existing(out, n)
    seen = []
    res = train_pairs(out, tmp_path, specs, preset="tiny", jobs=2, on_pair=lambda *a: seen.append(a))
    assert sorted(res.states) == [(n, "exists") for n in names] and not res.failed
    assert sorted(n for n, _, _ in seen) == names
    assert res.steps == 3 * 390 and res.pairs == {}  # no final.ckpt: nothing to summarise
    doc = json.loads(res.path.read_text())
    assert doc == {"format": "escmvq-baselines", "version": 1, "steps_per_pair": res.steps, "pairs": {}}
    assert not (out / pair_name("tiny", specs[0])).exists()  # no run folder made for a skipped pair


def test_bad_spec_and_busy_folder_refused_before_any_pair(tmp_path):
    out = tmp_path / "bl"
    with pytest.raises(ValueError, match="not one of"):
        train_pairs(out, tmp_path, ["bsc-vq:0.3"], preset="tiny")
    fcntl = pytest.importorskip("fcntl")
    out.mkdir(exist_ok=True)
    with open(out / ".train-baselines.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PairsBusy, match="another escmvq train-baselines is running"):
            train_pairs(out, tmp_path, ["bsc-sq:0.1"], preset="tiny", on_pair=lambda *a: pytest.fail("ran a pair"))
    assert not (out / "baselines.json").exists()


def test_progress_follows_each_pairs_metrics(tmp_path, monkeypatch):
    """on_progress sees each running pair's finished steps, read from its metrics.jsonl."""
    import time
    from pathlib import Path

    from escmvq.training import pairs as P

    def fake_run(cmd, log):
        log.write_text("boom\n")
        if "train" in cmd:
            run = Path(cmd[cmd.index("--out") + 1])
            for step in (390, 780):
                with open(run / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"step": step}) + "\n")
                time.sleep(0.3)
        return 1  # the pair then fails (no final.ckpt), after its progress was seen

    monkeypatch.setattr(P, "_run", fake_run)
    out = tmp_path / "bl"
    seen = {}
    res = train_pairs(out, tmp_path, ["bsc-sq:0.1", "esc-svq:5"], preset="tiny", jobs=2, poll_s=0.05,
                      on_progress=lambda name, steps: seen.setdefault(name, []).append(steps))
    names = [pair_name("tiny", s) for s in ("bsc-sq:0.1", "esc-svq:5")]
    assert sorted(res.failed) == sorted(names) and "boom" in res.states[0][1]
    for n in names:
        assert seen[n] == sorted(seen[n]) and seen[n][-1] == 780 and 390 in seen[n]
        assert P.pair_step(out, n) == 780
    assert P.pair_step(out, "nothing-here") == 0
