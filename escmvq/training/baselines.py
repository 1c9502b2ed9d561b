"""The trained baselines of Sec. V as presets derived from a base preset (plain data).

Every baseline is one encoder-decoder pair (``V = 1``) per operating point ("level");
covering an SNR range takes ``K`` pairs. ``baseline_preset(base, method, level)`` returns
the preset of one pair; everything else (architecture, batch, learning rates, tau
schedule, stage-1 epochs) comes from ``base``, so a baseline pair trains like stage 1 of
ESC-MVQ under the same preset.

======== ============================================ ====================================
method   quantizer / channel model in training        levels (one pair each)
======== ============================================ ====================================
esc-svq  learned VQ (D, B of base), trainable mu,     v = 1..V of base: mu_min^(v),
         regulariser (22)                             lambda^(v)
bsc-vq   learned VQ, fixed mu (no regulariser)        mu in {0.001, 0.0045, 0.02, 0.05, 0.1}
bsc-sq   3-bit uniform SQ on a tanh latent of 3       mu in {0.001, 0.0045, 0.02, 0.05, 0.1}
         channels (same L = N*B as base), fixed mu
blindsc  3-bit uniform SQ, trainable mu, BlindSC's    lambda, mu_min of base codebooks
         regulariser (mean(mu) - 0.5)^2               1, 3, 5
======== ============================================ ====================================

The SQ latent keeps the compression ratio: ``L = (H/4)(W/4) * 3 channels * 3 bits``
equals ESC-MVQ's ``(H/4)(W/4) * B`` with ``B = 9``.
"""
from __future__ import annotations

from escmvq.training.presets import Preset

__all__ = ["BASELINES", "FIXED_MU", "baseline_preset", "baseline_levels", "preset_from_spec"]

BASELINES = ("esc-svq", "bsc-vq", "bsc-sq", "blindsc")
FIXED_MU = (0.001, 0.0045, 0.02, 0.05, 0.1)  # the paper's BSC+VQ values
BLINDSC_CODEBOOKS = (1, 3, 5)  # BlindSC pair k borrows lambda, mu_min of these codebooks
SQ_BITS = 3


def baseline_levels(method: str, base: Preset) -> tuple[str, ...]:
    """The level names of ``method`` (``"1".."V"``, or the fixed mu values as text)."""
    if method == "esc-svq":
        return tuple(str(v) for v in range(1, base.V + 1))
    if method in ("bsc-vq", "bsc-sq"):
        return tuple(f"{m:g}" for m in FIXED_MU)
    if method == "blindsc":
        return tuple(str(v) for v in BLINDSC_CODEBOOKS)
    raise ValueError(f"unknown baseline {method!r}; choose one of {', '.join(BASELINES)}")


def _sq_fields(base: Preset) -> dict:
    # a latent position carries B bits in the base (one D-dim sub-vector): B / 3 scalars
    if base.B % SQ_BITS:
        raise ValueError(f"base preset {base.name}: B = {base.B} is not a multiple of {SQ_BITS} SQ bits")
    return dict(quantizer="sq", D=1, B=SQ_BITS, sq_channels=base.B // SQ_BITS,
                data_init=False, dead_restart_every=0)


def baseline_preset(base: Preset, method: str, level: str | int | float) -> Preset:
    """Preset of one pair of ``method`` at ``level`` (one of :func:`baseline_levels`)."""
    levels = baseline_levels(method, base)
    key = f"{float(level):g}" if method in ("bsc-vq", "bsc-sq") else str(int(float(level)))
    if key not in levels:
        raise ValueError(f"{method}: level {level!r} is not one of {', '.join(levels)}")
    name = f"{base.name}-{method}-{key}"
    one = dict(V=1, epochs_per_stage=(base.epochs_per_stage[0],))
    if method in ("esc-svq", "blindsc"):
        v = int(key) - 1
        one.update(mu_min=(base.mu_min[v],), lambdas=(base.lambdas[v],))
    else:
        mu = float(key)
        one.update(mu_min=(min(base.mu_min[0], mu / 2),), lambdas=(0.0,), mu_fixed=mu)
    if method in ("bsc-sq", "blindsc"):
        one.update(_sq_fields(base))
    if method == "blindsc":
        one.update(regulariser="mse-half")
    return base.replace(name=name, **one)


def preset_from_spec(base: Preset, spec: str) -> Preset:
    """``"METHOD:LEVEL"`` (e.g. ``"bsc-vq:0.02"``) -> :func:`baseline_preset` of ``base``."""
    method, _, level = spec.partition(":")
    if not level:
        raise ValueError(f"baseline: expected METHOD:LEVEL, got {spec!r}")
    return baseline_preset(base, method, level)
