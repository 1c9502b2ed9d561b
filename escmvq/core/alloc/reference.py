"""Algorithm 3 (JCAP) transcribed literally, for the benchmark and as an independent check.

Every loop iteration re-solves eq. (38) for every bit it needs, as the pseudo-code
reads: the loop condition sums ``eps^-1(mu_ij^(v_i); R)`` over all N*B bits, and the
choice (51) evaluates the inverse at ``v_i`` and ``v_i - 1`` for every sub-vector.
No caching, no precomputation; vectorised over bits/sub-vectors within an iteration.
Returns the same :class:`Plan` as ``jcap(..., variant="paper")``.
"""
from __future__ import annotations

import math

import numpy as np

from .common import assemble, build_tables
from .plan import Plan
from .validate import check_budget

__all__ = ["jcap_literal"]


def jcap_literal(distortion, mu, p_tot, gamma, rate=4, *, ber_model=None) -> Plan:
    """Literal Algorithm 3 (paper variant semantics); arguments as ``jcap``."""
    p_tot, gamma = check_budget(p_tot, gamma)
    tab, _, _, _ = build_tables(distortion, mu, rate, rate, "jcap", "paper", 1, ber_model)
    model, R, V, N = tab.model, tab.R, tab.V, tab.N
    mu, D = tab.mu, tab.D
    ar = np.arange(N)
    v = np.full(N, V - 1, np.int64)
    i_star = None
    k = 0
    b = p_tot * gamma
    # sums are taken per sub-vector, then exactly rounded (fsum), as the cached walker does,
    # so that budgets that fall exactly on a state's cost compare the same way
    while math.fsum(model.power(mu[v, ar], R).sum(axis=1).tolist()) <= b:
        elig = v > 0
        if not elig.any():
            i_star = None
            break
        vm = np.maximum(v - 1, 0)
        dp = model.power(mu[vm, ar], R).sum(axis=1) - model.power(mu[v, ar], R).sum(axis=1)
        gain = D[v, ar] - D[vm, ar]
        i_star = int(np.argmax(tab.score(gain, dp, elig)))
        v[i_star] -= 1
        k += 1
    else:
        if i_star is not None:  # undo the step that broke the budget
            v[i_star] += 1
            k -= 1
    # post-processing
    bo = tab.sorted_bits(v)
    orders = np.full(tab.T, R, np.int64)
    base, s = tab.group_powers(v, orders, bo)
    return assemble(tab, "jcap", "paper", k, v, orders, bo, base, s, p_tot, gamma)
