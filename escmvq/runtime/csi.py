"""Channel state at the receiver: the paper's perfect CSI, or pilots plus a plan header.

``csi="perfect"`` (the default, the paper's assumption): the receiver is handed the true
``h`` and derives the plan from ``(P_tot, gamma)`` itself, nothing but the data is sent.

``csi="pilots"``: every tile's ``T`` data symbols are preceded by a *preamble* of
``pilots`` known unit-energy pilot symbols (:func:`escmvq.core.pilots.pilot_symbols`) and the
plan header (:mod:`escmvq.core.plan_header`: state index, power scale, CRC-8) sent as QPSK
``repetitions`` times. The transmitter, which knows ``h`` as in the paper (it adapts to the
channel), plans with the header's quantised ``gamma_q`` instead of ``gamma``; the receiver
estimates ``h`` from the pilots (LS, or LMMSE for Rayleigh with ``E|h|^2 = 1`` and known
``sigma^2``), reads the header with that estimate, rebuilds the same plan from ``gamma_q``,
equalises the data with ``h_hat`` and feeds the LLRs the estimation error as extra noise.
A tile whose header fails (CRC, or fields that name no plan) is decoded with every sub-vector
"not sent" (the bundle's latent mean), never with another plan, and counted.

Preamble power: each pilot and header symbol is sent at ``pilot_power``, by default the tile's
average data symbol power ``P_tot / T`` (the data budget ``P_tot`` is unchanged, so PSNR is
compared at equal data energy; the preamble's extra energy is reported beside its channel
uses). Noise draws: the data noise first (the same draws as with perfect CSI, so the two
modes see common random numbers), then the preamble's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from escmvq.core import pilots as _pilots
from escmvq.core import plan_header as _ph
from escmvq.core.channels import apply_channel
from escmvq.core.vocab import CSI_MODES

__all__ = ["CSI_MODES", "DEFAULT_CSI", "CsiConfig", "CsiRead", "PreambleTx", "PreambleRx", "check_csi",
           "apply_channel_csi"]

DEFAULT_CSI = CSI_MODES[0]
DEFAULT_PILOTS = 8
DEFAULT_REPETITIONS = 3


@dataclass(frozen=True)
class CsiConfig:
    """How the receiver learns the channel.

    mode : "perfect" | "pilots"; pilots : pilot symbols per tile (>= 1); pilot_power : power of
    each pilot and header symbol (None: ``P_tot / T``, the tile's average data symbol power);
    estimator : "ls" | "lmmse"; repetitions : copies of the QPSK header (soft-combined);
    scale_bits : the header's power-scale bits (:mod:`escmvq.core.plan_header`).
    """
    mode: str = DEFAULT_CSI
    pilots: int = DEFAULT_PILOTS
    pilot_power: float | None = None
    estimator: str = "ls"
    repetitions: int = DEFAULT_REPETITIONS
    scale_bits: int = _ph.DEFAULT_SCALE_BITS

    def __post_init__(self):
        if self.mode not in CSI_MODES:
            raise ValueError(f"csi: expected one of {', '.join(CSI_MODES)}, got {self.mode!r}")
        for name, lo in (("pilots", 1), ("repetitions", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or v > 4096:
                raise ValueError(f"{name}: expected an int in {lo}..4096, got {v!r}")
        if self.pilot_power is not None and not (np.isfinite(self.pilot_power) and self.pilot_power > 0):
            raise ValueError(f"pilot_power: expected a finite value > 0, got {self.pilot_power!r}")
        if self.estimator not in _pilots.ESTIMATORS:
            raise ValueError(f"estimator: expected one of {', '.join(_pilots.ESTIMATORS)}, got {self.estimator!r}")
        if isinstance(self.scale_bits, bool) or int(self.scale_bits) != self.scale_bits or not 0 <= self.scale_bits <= 16:
            raise ValueError(f"scale_bits: expected an int in 0..16, got {self.scale_bits!r}")

    @property
    def estimated(self) -> bool:
        return self.mode == "pilots"

    def power(self, p_tot: float, n_symbols: int) -> float:
        """The preamble's symbol power at budget ``p_tot`` over ``n_symbols`` data symbols."""
        return float(self.pilot_power) if self.pilot_power is not None else float(p_tot) / int(n_symbols)

    def describe(self, allocator, n_symbols: int) -> dict:
        """JSON-able settings and overhead per tile in channel uses (pilots, header, data T) and in
        energy (preamble symbols x their power, as a fraction of ``P_tot`` at the default power)."""
        if not self.estimated:
            return {"mode": "perfect", "overhead_channel_uses": 0, "channel_uses_per_tile": int(n_symbols)}
        lay = _ph.layout_for(allocator, self.scale_bits)
        hdr = lay.n_symbols * self.repetitions
        pre = self.pilots + hdr
        return {"mode": "pilots", "pilots": int(self.pilots), "estimator": self.estimator,
                "pilot_power": "P_tot/T" if self.pilot_power is None else float(self.pilot_power),
                "header_bits": lay.n_bits, "header_fields": {"state": lay.state_bits, "scale": lay.scale_bits,
                                                             "crc8": _ph.CRC_BITS, "pad": lay.n_bits - lay.payload_bits - _ph.CRC_BITS},
                "header_repetitions": int(self.repetitions), "header_channel_uses": hdr,
                "pilot_channel_uses": int(self.pilots), "overhead_channel_uses": pre,
                "data_channel_uses": int(n_symbols), "channel_uses_per_tile": int(n_symbols) + pre,
                "overhead_fraction": pre / int(n_symbols),
                **({"overhead_energy_fraction": pre / int(n_symbols)} if self.pilot_power is None else {})}


def check_csi(csi) -> CsiConfig:
    """``None`` | a mode name | a :class:`CsiConfig` -> a :class:`CsiConfig`."""
    if csi is None:
        return CsiConfig()
    if isinstance(csi, CsiConfig):
        return csi
    if isinstance(csi, str):
        return CsiConfig(mode=csi)
    raise ValueError(f"csi: expected one of {', '.join(CSI_MODES)} or a CsiConfig, got {csi!r}")


def apply_channel_csi(samples: np.ndarray, preamble: np.ndarray | None, h: np.ndarray, rng: np.random.Generator,
                      noise_var: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The channel of a batch of tiles, data first, then the preamble (if any), so that the data
    see the same noise draws as with perfect CSI: ``samples [b, T]``, ``preamble [b, P]`` or None,
    ``h [b]`` -> (``y [b, T]``, ``y_pre [b, P]`` or None), complex64."""
    y = apply_channel(samples, h, rng, noise_var)
    return y, (None if preamble is None else apply_channel(preamble, h, rng, noise_var))


class _Preamble:
    """What both ends know of the preamble: the allocator (hence the header layout), the
    settings, the data symbols per tile and the pilots."""

    def __init__(self, allocator, cfg: CsiConfig, n_symbols: int):
        self.allocator, self.cfg, self.T = allocator, cfg, int(n_symbols)
        self.layout = _ph.layout_for(allocator, cfg.scale_bits)
        self.pilots = _pilots.pilot_symbols(cfg.pilots)

    @property
    def n_preamble(self) -> int:
        """Channel uses of the preamble per tile: the pilots, then every copy of the header."""
        return self.cfg.pilots + self.layout.n_symbols * self.cfg.repetitions


class PreambleTx(_Preamble):
    """The transmitter's side: header fields from the true ``gamma``, the preamble samples."""

    def make(self, p_tot: float, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``gamma [b]`` -> (preamble ``[b, n_preamble]`` complex64 ``sqrt(p_pilot) s``, ``gamma_q [b]``
        float64, the value the data's plan is made from)."""
        bits, gq = _ph.encode_headers(self.allocator, p_tot, gamma, self.layout)
        sym = np.concatenate([np.broadcast_to(self.pilots, (len(gq), self.cfg.pilots)),
                              _pilots.qpsk_map(bits, self.cfg.repetitions)], axis=1)
        return (sym * np.sqrt(self.cfg.power(p_tot, self.T))).astype(np.complex64), gq


@dataclass
class CsiRead:
    """What the receiver learnt from a batch of preambles."""
    h_hat: np.ndarray  # [b] complex64 channel estimate
    gamma_q: np.ndarray  # [b] float64 header's gamma (NaN where the header failed)
    ok: np.ndarray  # [b] bool header accepted
    error_var: float  # E|h - h_hat|^2 of the estimator
    failures: list = field(default_factory=list)  # (row, one-line reason) per failed header


class PreambleRx(_Preamble):
    """The receiver's side: estimate ``h``, read and check the header."""

    def read(self, y_pre: np.ndarray, p_tot: float, noise_var: float) -> CsiRead:
        """Received preambles ``[b, n_preamble]`` -> :class:`CsiRead`."""
        y_pre = np.asarray(y_pre)
        if y_pre.ndim != 2 or y_pre.shape[1] != self.n_preamble:
            raise ValueError(f"preamble: expected [b, {self.n_preamble}] samples, got shape {y_pre.shape}")
        c, pp = self.cfg, self.cfg.power(p_tot, self.T)
        h_hat = _pilots.estimate_h(y_pre[:, :c.pilots], self.pilots, pp, c.estimator, noise_var)
        bits, _ = _pilots.qpsk_soft_combine(y_pre[:, c.pilots:], h_hat, self.layout.n_bits, c.repetitions)
        gq, ok, why = _ph.decode_headers(self.allocator, p_tot, bits, self.layout)
        return CsiRead(h_hat=h_hat, gamma_q=gq, ok=ok,
                       error_var=_pilots.estimate_error_var(c.pilots, pp, noise_var, c.estimator), failures=why)
