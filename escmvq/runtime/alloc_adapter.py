"""Thin adapter to the allocators of ``escmvq.core.alloc``, the single place the
transmitter, receiver and exporter touch them.

Both sides of a link derive a plan from ``(P_tot, gamma)`` alone (footnote 2), with
``gamma`` from :func:`escmvq.core.channels.channel_gamma` (the one bit-exact definition);
:class:`PlanCache` keys its plans by the exact float64 bits of ``(P_tot, gamma)``.

This module depends on ``escmvq.core`` only, so the bundle, the endpoints and the
``escmvq.runtime`` package can all import it without an import cycle.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from escmvq.core.alloc import Allocator

__all__ = ["make_allocator", "allocator_from_state", "PlanCache", "PlanArrays"]


def make_allocator(distortion, mu, rate: int, method: str, variant: str, m_max: int = 8, erasure_distortion=None,
                   erasure_floor=None, flip_cost=None, positions: bool = False):
    """An ``Allocator`` (see its docstring for the erasure and position-aware options)."""
    kw = dict(rate=rate, method=method, variant=variant, erasure_distortion=erasure_distortion,
              erasure_floor=erasure_floor, flip_cost=flip_cost, positions=positions)
    if method == "jcamp":
        kw["m_max"] = m_max
    return Allocator(np.asarray(distortion, np.float64), np.asarray(mu, np.float64), **kw)


def allocator_from_state(state: dict):
    return Allocator.from_state(dict(state))


@dataclass(frozen=True)
class PlanArrays:
    """The arrays of one :class:`escmvq.core.alloc.Plan` that the link needs, as plain int64 /
    float64 copies (a name of its own: the runtime exports the allocator's ``Plan``)."""
    codebooks: np.ndarray  # [N] int
    orders: np.ndarray  # [T] int
    powers: np.ndarray  # [T] float64
    bit_order: np.ndarray  # [L] int


class PlanCache:
    """``plan(p_tot, gamma)`` with a small LRU keyed by the exact float64 bits."""

    def __init__(self, allocator, size: int = 4096, n_symbols: int | None = None, n_bits: int | None = None):
        self.allocator = allocator
        self.size = size
        self.n_symbols, self.n_bits = n_symbols, n_bits
        self._cache: OrderedDict[tuple[float, float], PlanArrays] = OrderedDict()

    def __call__(self, p_tot: float, gamma: float) -> PlanArrays:
        key = (float(p_tot), float(gamma))
        plan = self._cache.get(key)
        if plan is None:
            p = self.allocator.plan(key[0], key[1])
            plan = PlanArrays(np.asarray(p.codebooks, np.int64), np.asarray(p.orders, np.int64),
                        np.asarray(p.powers, np.float64), np.asarray(p.bit_order, np.int64))
            T, L, pmin = plan.orders.size, int(plan.orders.sum()), float(plan.powers.min())
            # with erasures a plan sends fewer than L bits (the rest belong to sub-vectors not sent)
            want_L = self.n_bits if p.sent_bits is None else p.sent_bits
            if (self.n_symbols is not None and T != self.n_symbols) or (self.n_bits is not None and L != want_L) \
                    or (self.n_bits is not None and plan.bit_order.size != self.n_bits) \
                    or not pmin >= 0 or not math.isfinite(float(plan.powers.sum())):
                raise ValueError(f"allocator plan for P_tot={key[0]:g}, gamma={key[1]:g} has {T} symbols carrying {L} bits"
                                 f" (min power {pmin:g}); the link needs exactly T={self.n_symbols} symbols,"
                                 f" L={self.n_bits} bits and finite powers >= 0 (export with --variant exact)")
            self._cache[key] = plan
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return plan

    def batch(self, p_tot: float, gammas: np.ndarray):
        """Stacked plans of a batch: codebooks [b, N], orders [b, T], powers [b, T], bit_order [b, L]."""
        plans = [self(p_tot, g) for g in np.asarray(gammas, np.float64)]
        return (np.stack([p.codebooks for p in plans]), np.stack([p.orders for p in plans]),
                np.stack([p.powers for p in plans]), np.stack([p.bit_order for p in plans]))
