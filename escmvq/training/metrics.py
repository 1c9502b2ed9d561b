"""Training metrics you can watch while a run goes: ``OUT/metrics.jsonl`` and, optionally,
TensorBoard.

``metrics.jsonl`` holds one JSON object per line, one line per evaluation (the end of every
epoch), appended and flushed as training goes, so ``tail -f`` or a notebook can follow a run.
Each line is the trainer's epoch record (the same dict as the checkpoint's ``history``)
plus ``format``, ``version`` and ``time_utc``:

- ``step`` (optimizer steps so far), ``stage`` (1-based, codebooks 1..stage trained),
  ``epoch`` (1-based within the stage), ``elapsed_s`` (wall seconds of the whole run,
  earlier processes of a resumed run included), ``img_per_s`` (training images per second
  over the epoch, all ranks), ``lr`` (network/codebook learning rate), ``tau`` (Gumbel
  temperature);
- per trained codebook (lists of length ``stage``, entry ``v`` = codebook ``v+1``):
  ``eval_psnr`` (dB, clean decoding of the evaluation images), ``d0``, ``d1``, ``R`` (epoch
  means of the loss terms), ``mu`` (``{"mean", "median", "min", "max"}`` of the bit error
  probabilities), ``eval_perplexity`` / ``eval_dead`` (codeword use on the evaluation images),
  ``train_perplexity`` / ``train_dead`` (over the epoch's training batches), ``restarted``
  (dead codewords reset during the epoch).

Non-finite numbers are written as ``null`` (strict JSON). On ``--resume`` the file keeps
exactly the lines up to the checkpoint's step (an epoch that ran after the last checkpoint is
trained again and must not appear twice); a file that is missing then is rebuilt from the
checkpoint's history. A fresh run starts a new file.

With TensorBoard, the same numbers go to ``OUT/tensorboard`` as scalars at ``global_step =
step``: ``<name>`` for the run-wide ones and ``<name>/cb<v>`` per codebook (``mu_mean/cb1``,
...). A resumed run purges the events after its step, for the same reason.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

__all__ = ["FORMAT", "VERSION", "METRICS_FILE", "TENSORBOARD_DIR", "MetricsWriter", "tensorboard_missing",
           "read_metrics"]

FORMAT = "escmvq-train-metrics"
VERSION = 1
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RUN_SCALARS = ("stage", "epoch", "lr", "tau", "img_per_s", "elapsed_s")
_CODEBOOK_SCALARS = ("eval_psnr", "d0", "d1", "R", "eval_perplexity", "eval_dead", "train_perplexity",
                     "train_dead", "restarted")
_MU_STATS = ("mean", "median", "min", "max")


def tensorboard_missing() -> str | None:
    """None when ``torch.utils.tensorboard`` can be used, else a one-line message saying
    how to install it (the check runs before training starts, not after the first epoch)."""
    try:
        import tensorboard  # noqa: F401 - torch.utils.tensorboard needs the package itself
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return "--tensorboard needs the tensorboard package: pip install tensorboard"
    return None


def _finite(x):
    """JSON-safe copy: non-finite floats -> None, tuples -> lists, numpy/torch scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    if hasattr(x, "item"):  # numpy / torch scalar
        return _finite(x.item())
    x = float(x)
    return x if math.isfinite(x) else None


def read_metrics(path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (lines that do not parse, e.g. one cut by a crash
    mid-write, are skipped)."""
    out = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            out.append(rec)
    return out


class MetricsWriter:
    """Appends the trainer's epoch records to ``out/metrics.jsonl`` (and TensorBoard).

    out : run folder; resume_step : the resumed checkpoint's step (None for a fresh run);
    history : the resumed checkpoint's records (used only when the file is missing);
    tensorboard : also write TensorBoard scalars (raises ``ImportError`` with a one-line
    message when the package is missing).
    """

    def __init__(self, out, resume_step: int | None = None, history=(), tensorboard: bool = False):
        self.out = Path(out)
        self.path = self.out / METRICS_FILE
        self._tb = None
        if tensorboard:
            msg = tensorboard_missing()
            if msg:
                raise ImportError(msg)
        self.out.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            kept = []
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        else:
            kept = [self._line(r) for r in history if int(r.get("step", 0)) <= resume_step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in kept:
                f.write(json.dumps(r, allow_nan=False) + "\n")
        os.replace(tmp, self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.out / TENSORBOARD_DIR),
                                     purge_step=None if resume_step is None else resume_step + 1)

    @staticmethod
    def _line(rec: dict) -> dict:
        line = {"format": FORMAT, "version": VERSION}
        line.update(_finite(rec))
        line.setdefault("time_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return line

    def write(self, rec: dict) -> dict:
        """Append one epoch record (flushed to disk); returns the line written."""
        line = self._line(rec)
        self._f.write(json.dumps(line, allow_nan=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        if self._tb is not None:
            self._scalars(line)
        return line

    def _scalars(self, line: dict) -> None:
        step = int(line["step"])
        add = self._tb.add_scalar
        for k in _RUN_SCALARS:
            if line.get(k) is not None:
                add(k, line[k], step)
        for k in _CODEBOOK_SCALARS:
            for v, x in enumerate(line.get(k) or []):
                if x is not None:
                    add(f"{k}/cb{v + 1}", x, step)
        for v, mu in enumerate(line.get("mu") or []):
            for s in _MU_STATS:
                if mu.get(s) is not None:
                    add(f"mu_{s}/cb{v + 1}", mu[s], step)
        self._tb.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
