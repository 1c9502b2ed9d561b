"""The result of an allocator: which codebook each sub-vector uses, how the frame's
bits become symbols, and each symbol's power."""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np

_MAGIC = b"ESCMVQ-PLAN\x01"


@dataclass(eq=False, slots=True)
class Plan:
    """A transmission plan.

    codebooks : [N] int64, 0-based codebook of each sub-vector (0 = lowest mu).
    orders : [T'] int64, bits per symbol (2, 4, 6 or 8).
    powers : [T'] float64, symbol powers ``p_t`` (``y = h sqrt(p_t) s_t + n``).
    bit_order : [N*B] int64, permutation of the flat label bits ``i*B + j``; symbol ``t``
        carries the next ``orders[t]`` of them, first one on the QAM's ``b[0]``.
    method, variant : how it was made ("jcap"/"jcamp", "exact"/"paper").
    p_tot, gamma : the budget it was made for.
    n_target : T = N*B / rate, the symbol count the rate constraint asks for.
    state_index : position on the greedy trajectory (see ``escmvq.core.alloc.allocator``);
        negative for the erasure states below the all-sent cheapest state.
    distortion : sum_i D[codebooks[i], i], the objective (35a).
    warnings : tuple of str; each way the plan leaves the budget or misses a BER target.
    sent_bits : None (every bit is sent), or the number of bits sent when the plan erases
        sub-vectors (``codebooks[i] == V``): only the first ``sent_bits`` entries of
        ``bit_order`` are carried, and ``orders`` may hold 0 (an unused channel use).

    Treat a plan as read-only (it is not frozen, to keep construction cheap).
    """

    codebooks: np.ndarray
    orders: np.ndarray
    powers: np.ndarray
    bit_order: np.ndarray
    method: str
    variant: str
    p_tot: float
    gamma: float
    n_target: int
    state_index: int
    distortion: float
    warnings: tuple = field(default=())
    sent_bits: int | None = None

    @property
    def n_symbols(self) -> int:
        """Number of symbols actually formed (T' = len(orders))."""
        return int(self.orders.size)

    @property
    def valid(self) -> bool:
        """True when the plan honours the channel: exactly T symbols, sum(orders) == the bits sent,
        powers >= 0 and sum(powers) == p_tot (to 1e-9 relative)."""
        return not self.problems()

    def problems(self) -> list[str]:
        out = []
        if self.orders.size != self.n_target:
            out.append(f"forms {self.orders.size} symbols, the rate needs T = {self.n_target}")
        want = self.bit_order.size if self.sent_bits is None else self.sent_bits
        if int(self.orders.sum()) != want:
            out.append(f"sum(orders) = {int(self.orders.sum())} != {want} bits to send")
        if self.powers.size and self.powers.min() < 0:
            out.append(f"negative power (min {self.powers.min():.4g})")
        s = float(np.sum(self.powers))
        if abs(s - self.p_tot) > 1e-9 * self.p_tot:
            out.append(f"sum(powers) = {s:.6g} != p_tot = {self.p_tot:.6g}")
        return out

    def to_bytes(self) -> bytes:
        """Canonical little-endian serialisation of what transmitter and receiver must
        agree on (codebooks, orders, bit_order, powers); equal plans give equal bytes."""
        head = struct.pack("<4q", self.codebooks.size, self.orders.size, self.bit_order.size, self.state_index)
        return b"".join(
            (
                _MAGIC,
                head,
                np.ascontiguousarray(self.codebooks, "<i2").tobytes(),
                np.ascontiguousarray(self.orders, "<i1").tobytes(),
                np.ascontiguousarray(self.bit_order, "<i4").tobytes(),
                np.ascontiguousarray(self.powers, "<f8").tobytes(),
            )
        )

    def digest(self) -> str:
        """SHA-256 hex of :meth:`to_bytes`."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def __repr__(self) -> str:  # short, arrays summarised
        return (
            f"Plan({self.method}/{self.variant}, N={self.codebooks.size}, T'={self.n_symbols}/{self.n_target}, "
            f"orders={np.bincount(self.orders, minlength=9)[2::2].tolist()}, sum_p={float(np.sum(self.powers)):.6g}, "
            f"D={self.distortion:.6g}, state={self.state_index}, warnings={len(self.warnings)})"
        )


def finish_powers(base: np.ndarray, base_sum: float, p_tot: float, gamma: float, variant: str):
    """Turn per-unit-gamma symbol powers ``base`` (``p_t * gamma`` that meets each symbol's
    BER target) into the sent powers, and say how.

    - Surplus (``base_sum <= p_tot*gamma``), both variants: eq. (47), the gap is spread
      evenly: ``p = base/gamma + (p_tot - base_sum/gamma)/T'`` (all >= 0).
    - Deficit, ``variant="paper"``: (47) as written; powers may go negative (reported).
    - Deficit, ``variant="exact"``: one common scale ``p = base * p_tot / base_sum``: every
      symbol loses the same number of dB (BER targets are missed, reported), nothing goes
      negative, the relative protection of the symbols is kept, and sum(p) = p_tot.
    Returns ``(powers [T'] float64, warnings list)``.
    """
    warnings = []
    n = base.size
    b = p_tot * gamma
    if base_sum <= b or variant == "paper":
        powers = base / gamma + (p_tot - base_sum / gamma) / n
        if base_sum > b:
            warnings.append(
                f"budget below the chosen state's need ({base_sum / gamma:.4g} > p_tot {p_tot:.4g}): "
                "eq. (47) subtracts the deficit evenly"
            )
            if powers.min() < 0:
                warnings.append(f"negative symbol power {powers.min():.4g} (eq. (47))")
    else:
        scale = p_tot / (base_sum / gamma)
        powers = base * (p_tot / base_sum)
        warnings.append(
            f"budget below the cheapest state ({base_sum / gamma:.4g} > p_tot {p_tot:.4g}): "
            f"all powers scaled by {scale:.4g} ({10 * np.log10(scale):.2f} dB), BER targets missed"
        )
    return powers, warnings
