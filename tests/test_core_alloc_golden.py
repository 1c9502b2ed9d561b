"""Golden plans: ``Plan.digest()`` of JCAP / JCAMP (exact and paper variants) for fixed
tables and budgets, computed once from the code at commit 4829f1f (before the optional
erasure mode) and stored in ``tests/golden/alloc_plans.json``.

The Allocator and the iterative functions share the walkers, so their agreement cannot
show that a change left the plans alone; these digests can. With every argument as it
existed at that commit (no new options), the iterative functions, the precomputed
Allocator, its state reloaded, and (JCAP paper) the literal Algorithm 3 must reproduce
the stored bytes exactly.

Tables come from a generator that uses only PCG64's raw bit stream (fixed by the
algorithm, unlike ``Generator`` methods that numpy may change), so they are the same
on every numpy. The powers are solutions of (38) by a Newton iteration on scipy's
``erfcx``; on other numpy/scipy versions than the recorded ones the last bits of a power
may differ, so there the powers are compared to 1e-9 (codebooks, orders, bit order and
state index still exactly). Regenerate only on purpose:
``python tests/test_core_alloc_golden.py --write`` (and say why in the commit).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from escmvq.core.alloc import Allocator, jcamp, jcap, jcap_literal
from alloc_helpers import trained_like_tables

GOLDEN = Path(__file__).resolve().parent / "golden" / "alloc_plans.json"


def uniform(seed: int, shape, lo=0.0, hi=1.0) -> np.ndarray:
    """Uniform floats in [lo, hi) from PCG64's raw 64-bit outputs (53 bits each)."""
    n = int(np.prod(shape))
    raw = np.random.PCG64(seed).random_raw(n).astype(np.uint64)
    return lo + (hi - lo) * ((raw >> np.uint64(11)).astype(np.float64) * 2.0 ** -53).reshape(shape)


def tables(kind: str, seed: int, V: int, N: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """Trained-like tables (as ``tests/test_core_alloc.py::synth``): codebook v's mu >= its
    floor, spread per bit over a factor e^2.5; distortion rises with v. ``ties``: mu and D
    quantised and the second half of the sub-vectors a copy of the first (exact ties)."""
    return trained_like_tables(lambda k, shape, lo, hi: uniform(seed + k, shape, lo, hi), V, N, B,
                               kind == "ties")


def tables_digest(D, mu) -> str:
    return hashlib.sha256(np.ascontiguousarray(D, "<f8").tobytes() + np.ascontiguousarray(mu, "<f8").tobytes()).hexdigest()


def structure_digest(plan) -> str:
    """Digest of everything but the powers (codebooks, orders, bit order, state index)."""
    h = hashlib.sha256()
    for a, dt in ((plan.codebooks, "<i8"), (plan.orders, "<i8"), (plan.bit_order, "<i8")):
        h.update(np.ascontiguousarray(a, dt).tobytes())
    h.update(str(plan.state_index).encode())
    return h.hexdigest()


# (name, kind, seed, V, N, B, rate, m_max, n_budgets, iterative?): iterative calls walk the
# trajectory once per budget, so they run on the smaller tables only
CASES = [
    ("small", "random", 11, 3, 6, 4, 4, 8, 12, True),
    ("small-ties", "ties", 12, 3, 6, 4, 4, 8, 12, True),
    ("mid-r2", "random", 13, 4, 10, 6, 2, 6, 10, True),
    ("mid-r6-ties", "ties", 14, 4, 8, 9, 6, 8, 10, True),
    ("cifar", "random", 15, 5, 64, 9, 4, 8, 16, False),
    ("cifar-ties", "ties", 16, 5, 64, 9, 4, 8, 16, False),
]
COMBOS = [("jcap", "exact"), ("jcap", "paper"), ("jcamp", "exact"), ("jcamp", "paper")]


def _budgets(A, n: int, seed: int) -> list[tuple[float, float]]:
    """Budgets across the trajectory (used once, when writing the file; then stored)."""
    thr = np.asarray(A.thresholds)
    u = uniform(seed + 3, (n, 3))
    out = []
    for k in range(n):
        g = float(0.05 + 3.0 * u[k, 0])
        t = float(thr[int(u[k, 1] * thr.size)])
        out.append((float((0.5 + 1.5 * u[k, 2]) * t / g + 1e-9), g))
    out += [(float(thr[thr.size // 2]), 1.0), (float(thr[0]) * 1e-3, 1.0), (float(thr[-1]) * 10 + 1.0, 0.5)]
    return out


def _iterative(method, variant, D, mu, p, g, rate, m_max):
    if method == "jcap":
        return jcap(D, mu, p, g, rate=rate, variant=variant)
    return jcamp(D, mu, p, g, rate=rate, m_max=m_max, variant=variant)


def compute(case, budgets=None, cross_every: int = 1) -> dict:
    """Plans of one case for every method/variant: {"method/variant": [[p, g, digest,
    structure digest, state, sum(powers)], ...]}. Checks that all the ways of computing a
    plan give the same bytes (the slow iterative and literal ones on every
    ``cross_every``-th budget; all of them when the file was written)."""
    name, kind, seed, V, N, B, rate, m_max, nb, it = case
    D, mu = tables(kind, seed, V, N, B)
    out = {"tables_sha256": tables_digest(D, mu), "plans": {}}
    for method, variant in COMBOS:
        key = f"{method}/{variant}"
        A = Allocator(D, mu, rate=rate, method=method, variant=variant, m_max=m_max if method == "jcamp" else 8)
        A2 = Allocator.from_state(A.state())
        bs = budgets[key] if budgets is not None else _budgets(A, nb, seed)
        rows = []
        for j, (p, g) in enumerate(bs):
            plan = A.plan(p, g)
            d = plan.digest()
            assert A2.plan(p, g).digest() == d, (name, key, "from_state", p, g)
            if j % cross_every:
                pass
            elif it:
                assert _iterative(method, variant, D, mu, p, g, rate, m_max).digest() == d, (name, key, "iterative", p, g)
            if key == "jcap/paper" and not j % cross_every:
                assert jcap_literal(D, mu, p, g, rate=rate).digest() == d, (name, key, "literal", p, g)
            rows.append([p, g, d, structure_digest(plan), int(plan.state_index), float(np.sum(plan.powers))])
        out["plans"][key] = rows
    return out


def _versions() -> dict:
    import scipy

    return {"numpy": np.__version__, "scipy": scipy.__version__}


def _same_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_golden_file_covers_every_case(golden):
    assert [c["name"] for c in golden["cases"]] == [c[0] for c in CASES]
    for c in golden["cases"]:
        assert sorted(c["plans"]) == sorted(f"{m}/{v}" for m, v in COMBOS)
        states = {r[4] for rows in c["plans"].values() for r in rows}
        assert len(states) > 3  # the budgets span the trajectory
    # the stored budgets reach state 0 and the last state of every allocator
    assert golden["commit"] == "4829f1f"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_plans_match_golden_digests(golden, case):
    g = next(c for c in golden["cases"] if c["name"] == case[0])
    name, kind, seed, V, N, B, *_ = case
    D, mu = tables(kind, seed, V, N, B)
    assert tables_digest(D, mu) == g["tables_sha256"], "the table generator changed, not the allocator"
    exact_bytes = all(_same_minor(_versions()[k], v) for k, v in golden["versions"].items())
    budgets = {k: [(r[0], r[1]) for r in rows] for k, rows in g["plans"].items()}
    got = compute(case, budgets, cross_every=4)  # also checks iterative == Allocator == from_state (== literal)
    for key, rows in g["plans"].items():
        for want, have in zip(rows, got["plans"][key]):
            p, gam = want[0], want[1]
            assert have[4] == want[4], f"{name} {key} P_tot={p!r} gamma={gam!r}: state {have[4]} != golden {want[4]}"
            assert have[3] == want[3], f"{name} {key} P_tot={p!r} gamma={gam!r}: codebooks/orders/bit order changed"
            if exact_bytes:
                assert have[2] == want[2], f"{name} {key} P_tot={p!r} gamma={gam!r}: plan bytes changed (powers)"
            else:
                assert have[5] == pytest.approx(want[5], rel=1e-9)


def write() -> None:
    doc = {
        "about": "Plan.digest() of fixed tables/budgets; see tests/test_core_alloc_golden.py",
        "commit": "4829f1f",
        "versions": _versions(),
        "cases": [],
    }
    for case in CASES:
        doc["cases"].append({"name": case[0], **compute(case)})
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/test_core_alloc_golden.py --write  (overwrites the golden plans)")
    write()
