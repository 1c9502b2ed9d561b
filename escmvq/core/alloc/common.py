"""Shared set-up and plan assembly for the iterative allocators and the Allocator."""
from __future__ import annotations

import numpy as np

from .. import ber as _ber
from .plan import Plan, finish_powers
from .validate import METHODS, VARIANTS, check_choice, check_iter_max, check_rate, check_tables
from .walkers import Tables

DEFAULT_ITER_MAX = 1000


def build_tables(distortion, mu, rate, m_max, method, variant, iter_max, ber_model, flip_cost=None, positions=False):
    method = check_choice("method", method, METHODS)
    variant = check_choice("variant", variant, VARIANTS)
    iter_max = check_iter_max(iter_max)
    d, m = check_tables(distortion, mu)
    if method == "jcap":  # JCAP uses the single order R: m_max = R
        r, _, _ = check_rate(rate, 8, m.shape[1] * m.shape[2])
        m_max = r
    else:
        r, m_max, _ = check_rate(rate, m_max, m.shape[1] * m.shape[2])
    model = _ber.get_model(ber_model)
    if flip_cost is not None:
        flip_cost = np.asarray(flip_cost, np.float64)
        if flip_cost.shape != m.shape or not np.all(np.isfinite(flip_cost)):
            raise ValueError(f"flip_cost: expected finite values of mu's shape {m.shape}, got {flip_cost.shape}")
    if positions and variant != "exact":
        raise ValueError("positions: the per-position power model needs variant='exact'")
    return Tables(d, m, r, m_max, model, flip_cost, positions), method, variant, iter_max


def assemble(tab: Tables, method, variant, k, v, orders, bit_order, base, base_sum, p_tot, gamma, extra_warnings=()):
    powers, warnings = finish_powers(base, base_sum, p_tot, gamma, variant)
    warnings = list(extra_warnings) + warnings
    return Plan(
        codebooks=np.asarray(v, np.int64),
        orders=np.asarray(orders, np.int64),
        powers=powers,
        bit_order=np.asarray(bit_order, np.int64),
        method=method,
        variant=variant,
        p_tot=p_tot,
        gamma=gamma,
        n_target=tab.T,
        state_index=int(k),
        distortion=float(tab.D[np.asarray(v), tab.ar_n].sum()),
        warnings=tuple(warnings),
    )
