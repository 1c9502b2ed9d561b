"""Combine the JSON files of several ``escmvq eval`` sweeps into one result (one Fig. 5 with
every method, one table), as the paper's figures combine methods trained and run separately.

Two sweeps can be merged only when they measured the same thing: same dataset, channel, SNR
grid, images, realisations, seed and batch (the fading and noise draws follow from the seed,
the batch and the image index, so such sweeps saw identical channels). Method names must be
unique after merging; ``LABEL=PATH`` prefixes every method of that file as ``LABEL:method``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["SHARED_FIELDS", "load_sweep", "merge_sweeps", "markdown_table", "parse_source", "common_receiver",
           "merge_results", "LEGACY_RECEIVER", "LEARNED_KINDS"]

# fields that must agree for two sweeps to be comparable point by point
SHARED_FIELDS = ("dataset", "channel", "snr_db", "n_images", "realizations", "seed", "batch")
# results written before the receiver was recorded all used hard decisions
LEGACY_RECEIVER = {"decoding": "hard", "estimate": None, "llr": None, "prior": None}
# method kinds with a learned receiver (their receiver settings must agree to be merged)
LEARNED_KINDS = ("esc-mvq", "pair-set")


def load_sweep(path) -> tuple[dict, str]:
    """Read one ``escmvq eval`` JSON. Returns ``(doc, sha256 of the file)``; a file that is not
    such a result is a ``ValueError`` naming it."""
    path = Path(path)
    data = path.read_bytes()
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != "escmvq-eval" or not isinstance(doc.get("methods"), dict):
        raise ValueError(f"{path}: not an `escmvq eval` result (format 'escmvq-eval' with methods)")
    if doc.get("version") != 1:
        raise ValueError(f"{path}: eval result version {doc.get('version')!r}, this escmvq reads version 1")
    missing = [k for k in SHARED_FIELDS if k not in doc]
    if missing:
        raise ValueError(f"{path}: eval result lacks {', '.join(missing)}")
    return doc, hashlib.sha256(data).hexdigest()


def merge_sweeps(sources, keep=None, rename=None) -> dict:
    """sources : ``[(label or None, path)]``; keep : merged method names to keep, in that order
    (None: every method, in file order); rename : ``{merged name: new name}`` applied last
    (e.g. ``{"old:jpeg-ldpc": "jpeg-ldpc"}`` where the label says nothing about that method).
    Returns one eval result (same format, version 1) with ``merged_from`` listing each file's
    path, label, sha256, command and bundle."""
    if not sources:
        raise ValueError("nothing to merge: give at least one eval JSON")
    first = None
    methods: dict = {}
    merged_from = []
    for label, path in sources:
        doc, sha = load_sweep(path)
        if first is None:
            first = (path, doc)
        else:
            for k in SHARED_FIELDS:
                if doc[k] != first[1][k]:
                    raise ValueError(f"{path}: {k} {doc[k]!r} differs from {first[0]}'s {first[1][k]!r}; "
                                     "only sweeps of the same points can be merged")
        for name, r in doc["methods"].items():
            full = f"{label}:{name}" if label else name
            if full in methods:
                earlier = merged_from[methods[full]["merged_from_index"]]["path"]
                raise ValueError(f"method {full!r} is in both {earlier} and {path}: "
                                 "prefix one file as LABEL=PATH")
            methods[full] = dict(r, merged_from_index=len(merged_from))
            if "csi" in doc:  # how this method's receiver knew the channel (files may differ: a comparison)
                methods[full].setdefault("csi", doc["csi"])
        merged_from.append({"path": str(path), "label": label, "sha256": sha, "command": doc.get("command"),
                            "bundle": doc.get("bundle")})
    if keep is not None:
        unknown = [m for m in keep if m not in methods]
        if unknown:
            raise ValueError(f"--methods: {', '.join(unknown)} not in the inputs (they have: {', '.join(methods)})")
        methods = {m: methods[m] for m in keep}
    for old, new in (rename or {}).items():
        if old not in methods:
            raise ValueError(f"--rename: {old!r} not in the merged methods ({', '.join(methods)})")
        if new in methods and new != old:
            raise ValueError(f"--rename: {new!r} is already a method name")
        methods = {(new if m == old else m): r for m, r in methods.items()}
    base = first[1]
    out = {"format": "escmvq-eval", "version": 1, "merged_from": merged_from}
    out.update({k: base[k] for k in SHARED_FIELDS})
    for k in ("throughput_unit", "statistic"):
        if k in base:
            out[k] = base[k]
    out["methods"] = methods
    return out


def parse_source(spec: str) -> tuple[str | None, Path]:
    """``PATH`` or ``LABEL=PATH`` (LABEL: letters, digits, ``_ . -``) -> ``(label or None, path)``;
    an existing file named like ``LABEL=PATH`` is read as a path."""
    import re

    m = re.fullmatch(r"([A-Za-z0-9_.-]+)=(.+)", spec)
    return (m.group(1), Path(m.group(2))) if m and not Path(spec).exists() else (None, Path(spec))


def common_receiver(sources) -> dict | None:
    """The receiver setting shared by every file with a learned method (files before the
    setting was recorded: hard decisions), None when no file has one; a difference is a
    one-line ValueError."""
    first = None
    for _, path in sources:
        doc, _ = load_sweep(path)
        if not any(r.get("kind") in LEARNED_KINDS or ("kind" not in r and r.get("pairs"))
                   for r in doc["methods"].values()):
            continue
        rx = doc.get("receiver", LEGACY_RECEIVER)
        if first is None:
            first = (path, rx)
        elif rx != first[1]:
            raise ValueError(f"{path}: receiver {json.dumps(rx)} differs from {first[0]}'s {json.dumps(first[1])}; "
                             "only sweeps with the same receiver setting can be merged")
    return None if first is None else first[1]


def merge_results(sources, keep=None, rename=None) -> dict:
    """What ``escmvq eval-merge`` merges: :func:`merge_sweeps` of ``sources`` (``[(label or None,
    path)]``, see :func:`parse_source`), refusing files whose learned methods used different
    receiver settings, and recording the common setting as ``receiver``."""
    receiver = common_receiver(sources)
    doc = merge_sweeps(sources, keep, rename)
    if receiver is not None:
        doc["receiver"] = receiver
    return doc


def markdown_table(doc: dict) -> str:
    """A markdown table, one row per SNR point and one column per method (mean PSNR in dB,
    the best of each row in bold), then a row of pairs / MB of parameters where known."""
    ms = doc["methods"]
    cols = list(ms)
    lines = ["| SNR (dB) | " + " | ".join(cols) + " |",
             "| ---: | " + " | ".join("---:" for _ in cols) + " |"]
    for i, s in enumerate(doc["snr_db"]):
        vals = [ms[m]["psnr_mean"][i] for m in cols]
        best = max(v for v in vals if v is not None)
        cells = ["-" if v is None else (f"**{v:.2f}**" if v == best else f"{v:.2f}") for v in vals]
        lines.append(f"| {s:g} | " + " | ".join(cells) + " |")

    def mem(r):
        if not r.get("pairs"):
            return "-"
        return f"{r['pairs']} / {r['parameter_bytes'] / 1e6:.2f}" if r.get("parameter_bytes") else f"{r['pairs']} / -"

    if any(ms[m].get("pairs") for m in cols):
        lines.append("| pairs / MB | " + " | ".join(mem(ms[m]) for m in cols) + " |")
    return "\n".join(lines) + "\n"
