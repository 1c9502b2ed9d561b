"""The iterative allocators: ``jcap`` (Algorithm 3) and ``jcamp`` (Algorithm 2).

Each call runs the greedy loop for one ``(P_tot, gamma)``. For many calls with the
same tables use :class:`escmvq.core.alloc.allocator.Allocator` (same answers, microseconds).
See :mod:`escmvq.core.alloc.walkers` for the algorithms and the exact-variant repair.
"""
from __future__ import annotations

from .common import DEFAULT_ITER_MAX, assemble, build_tables
from .plan import Plan
from .validate import check_budget
from .walkers import make_walker, run

__all__ = ["jcap", "jcamp"]


def _solve(distortion, mu, p_tot, gamma, rate, m_max, method, variant, iter_max, ber_model) -> Plan:
    p_tot, gamma = check_budget(p_tot, gamma)
    tab, method, variant, iter_max = build_tables(distortion, mu, rate, m_max, method, variant, iter_max, ber_model)
    w = make_walker(tab, method, variant, iter_max)
    k = run(w, p_tot * gamma)
    orders, bo, base, s, warn = w.layout()
    return assemble(tab, method, variant, k, w.v, orders, bo, base, s, p_tot, gamma, warn)


def jcap(distortion, mu, p_tot, gamma, rate=4, *, variant="exact", ber_model=None) -> Plan:
    """JCAP (Sec. IV-C, Algorithm 3): codebook assignment + power, fixed order ``rate``.

    distortion : [V, N] float, table (31); mu : [V, N, B] float in (0, 0.5], codebook 0 =
    lowest mu; p_tot : float > 0; gamma : float > 0 (``|h|^2/noise_var``);
    rate : even int, bits per symbol; variant : "exact" (default) or "paper";
    ber_model : None (eq. (33)), "gray-exact" or a :class:`escmvq.core.ber.BerModel`.
    Returns a :class:`Plan` with T = N*B/rate symbols.
    """
    return _solve(distortion, mu, p_tot, gamma, rate, rate, "jcap", variant, DEFAULT_ITER_MAX, ber_model)


def jcamp(distortion, mu, p_tot, gamma, rate=4, m_max=8, variant="exact", *, iter_max=DEFAULT_ITER_MAX, ber_model=None) -> Plan:
    """JCAMP (Sec. IV-B, Algorithm 2): codebook assignment + adaptive modulation + power.

    Arguments as :func:`jcap`, plus m_max : int in {2,4,6,8} (highest order) and
    iter_max : int, the (P2) swap iterations per greedy step.
    ``variant="exact"`` always returns T symbols with powers >= 0 summing to p_tot;
    ``variant="paper"`` is Algorithm 2 as written and reports (``plan.warnings``,
    ``plan.valid``) when it leaves the budget.
    """
    return _solve(distortion, mu, p_tot, gamma, rate, m_max, "jcamp", variant, iter_max, ber_model)
