"""BER model (33), its inverse (38), the exact Gray-QAM model, Monte Carlo checks."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from escmvq.core import ber, channels, qam

ORDERS = (2, 4, 6, 8)


def test_eq33_closed_forms():
    q = np.linspace(0, 30, 50)
    x = np.sqrt(3 * q / (2 * 15))
    # the shared EQ33 and a new instance, which builds its own coefficient table
    for f in (lambda q, m: ber.ber_qam(q, 1.0, m), ber.Eq33().ber):
        np.testing.assert_allclose(f(q, 2), 0.5 * special.erfc(np.sqrt(q / 2)), rtol=1e-13)
        np.testing.assert_allclose(f(q, 4), 3 / 8 * special.erfc(x) + 2 / 8 * special.erfc(3 * x), rtol=1e-13)
    np.testing.assert_allclose(ber.Eq33().at_zero(np.array(ORDERS)), [0.5, 0.625, 13 / 24, 29 / 64])
    # p and gamma enter only through their product
    np.testing.assert_allclose(ber.ber_qam(q, 2.0, 6), ber.ber_qam(2 * q, 1.0, 6), rtol=1e-13)
    np.testing.assert_allclose(ber.ber_at_zero(np.array(ORDERS)), [0.5, 0.625, 13 / 24, 29 / 64])


@pytest.mark.parametrize("model", [ber.Eq33(), ber.GrayQamExact()], ids=lambda m: m.name)
@pytest.mark.parametrize("m", ORDERS)
def test_inverse_exact_to_1e9(model, m):
    mu = np.concatenate([np.logspace(-8, np.log10(0.5), 3000), [0.5, 1e-8, 0.3, 0.45, 0.4531249]])
    q = model.power(mu, m)
    assert q.shape == mu.shape and np.all(q >= 0) and np.all(np.isfinite(q))
    f0 = model.at_zero(m)
    assert abs(model.ber(0.0, m) - f0) < 1e-15
    need = mu < f0
    assert np.all(q[~need] == 0)  # no power needed
    assert np.all(q[need] > 0)
    rel = np.abs(model.ber(q[need], m) - mu[need]) / mu[need]
    assert rel.max() < 1e-9
    # least power: slightly less power misses the target
    qq = q[need] * (1 - 1e-6)
    assert np.all(model.ber(qq, m) > mu[need])
    # monotone: smaller mu needs more power
    order = np.argsort(mu[need])
    assert np.all(np.diff(q[need][order]) <= 0)


def test_inverse_vectorised_over_orders_and_shapes():
    rng = np.random.default_rng(0)
    mu = rng.uniform(1e-6, 0.5, (3, 4, 5))
    m = rng.choice(ORDERS, (3, 4, 5))
    q = ber.power_for_ber(mu, m)
    for idx in np.ndindex(mu.shape):
        assert q[idx] == pytest.approx(float(ber.power_for_ber(mu[idx], int(m[idx]))), rel=1e-12, abs=0)
    # one element's result does not depend on the rest of the batch
    np.testing.assert_array_equal(ber.power_for_ber(mu[0], m[0]), q[0])


def test_inverse_bad_input():
    for bad in (0.0, -1e-3, 0.51, np.nan):
        with pytest.raises(ValueError, match="mu"):
            ber.power_for_ber(np.array([0.1, bad]), 4)
    with pytest.raises(ValueError, match="m"):
        ber.power_for_ber(0.1, 3)
    with pytest.raises(ValueError, match="gamma"):
        ber.ber_qam(1.0, 0.0, 2)
    with pytest.raises(ValueError, match="ber_model"):
        ber.get_model("nope")


def test_cho_yoon_matches_eq33_structure():
    # 16-QAM average: (3 erfc(x) + 2 erfc(3x) - erfc(5x)) / 8
    w, d = ber.cho_yoon_coeffs(4)
    np.testing.assert_allclose(w.mean(0), [3 / 8, 2 / 8, -1 / 8])
    E = ber.GrayQamExact()
    for m in ORDERS:
        assert E.ber(0.0, m) == pytest.approx(0.5)
        assert np.allclose(E.ber_positions(0.0, m), 0.5)
        q = np.logspace(0, 3, 20)
        np.testing.assert_allclose(E.ber_positions(q, m).mean(-1), E.ber(q, m), rtol=1e-12)
        # (33) is within 1.5% of the exact average wherever BER < 0.3
        e = E.ber(q, m)
        ok = e < 0.3
        assert np.all(np.abs(ber.EQ33.ber(q, m)[ok] / e[ok] - 1) < 0.015)


def _exact_position_ber(m: int, q: float) -> np.ndarray:
    """Exact hard-decision BER of each symbol bit of ``qam``'s constellation in AWGN at
    symbol SNR ``q``, from its own PAM table: per axis, the probability of landing in each
    level's decision interval times the label bits that differ. ``[m]``."""
    labels, levels = qam.pam_labels(m).astype(int), qam.pam_levels(m)
    sd = np.sqrt(0.5 / q)  # per-axis noise std (complex noise variance 1/q)
    edges = np.concatenate([[-np.inf], (levels[1:] + levels[:-1]) / 2, [np.inf]])
    # [sent level i, decided level j] for j != i from upper tails only (no cancellation near 1)
    up = 0.5 * special.erfc((edges[None, :] - levels[:, None]) / (sd * np.sqrt(2)))  # P(x > edge)
    down = 0.5 * special.erfc((levels[:, None] - edges[None, :]) / (sd * np.sqrt(2)))  # P(x < edge)
    i, j = np.indices((levels.size, levels.size))
    p = np.where(j > i, up[i, j] - up[i, j + 1], np.where(j < i, down[i, j + 1] - down[i, j], 0.0))
    per_axis = np.array([(p * (labels[:, None, t] != labels[None, :, t])).sum(1).mean() for t in range(m // 2)])
    return np.repeat(per_axis, 2)  # b[2t] (I) and b[2t+1] (Q) share axis position t


@pytest.mark.parametrize("m", ORDERS)
def test_position_ber_matches_the_qam_labelling(m):
    # the per-position model (Cho & Yoon), its order of positions (power_positions and the
    # allocator's bit order rely on it) and the constellation's labelling agree exactly
    E = ber.GrayQamExact()
    for q in np.logspace(-1, 3, 9):
        np.testing.assert_allclose(E.ber_positions(q, m), _exact_position_ber(m, q), rtol=1e-9, atol=1e-300)


def _simulate(m, q, n_sym, rng):
    bits = rng.integers(0, 2, (n_sym, m), dtype=np.uint8)
    s = qam.map_bits(bits, m)[None, :]
    y = channels.apply(s, channels.awgn_gain(1), np.array([q]), rng, noise_var=1.0)
    bh = qam.demap_hard(channels.equalize(y, channels.awgn_gain(1), np.array([q]))[0], m)
    return (bh != bits).mean(axis=0)


# symbol SNRs (dB) per order that give BERs between ~1e-3 and ~0.2
SNRS = {2: (0.0, 6.0), 4: (6.0, 12.0), 6: (12.0, 18.0), 8: (18.0, 24.0)}


@pytest.mark.parametrize("m", ORDERS)
def test_monte_carlo_ber(m):
    rng = np.random.default_rng(100 + m)
    n_sym = 60000
    E = ber.GrayQamExact()
    for db in SNRS[m]:
        q = 10 ** (db / 10)
        sim = _simulate(m, q, n_sym, rng)
        # per position: exact (Cho & Yoon) within 5 sigma
        ref = E.ber_positions(q, m)
        sig = np.sqrt(ref * (1 - ref) / n_sym)
        assert np.all(np.abs(sim - ref) < 5 * sig + 1e-4), (db, sim, ref)
        # average: (33) within its known accuracy (<= 1.5% here) plus 5 sigma
        avg, ref33 = sim.mean(), float(ber.ber_qam(q, 1.0, m))
        sig = np.sqrt(ref33 * (1 - ref33) / (n_sym * m))
        assert abs(avg - ref33) < 0.015 * ref33 + 5 * sig, (db, avg, ref33)
        # and the inverse sends exactly what the target needs: simulate at power_for_ber
    mu = 0.02
    q = float(ber.power_for_ber(mu, m))
    sim = _simulate(m, q, n_sym, rng).mean()
    assert abs(sim - mu) < 0.015 * mu + 5 * np.sqrt(mu * (1 - mu) / (n_sym * m))


def test_domain_edges_and_messages():
    assert ber.power_for_ber(1e-300, 2) > 0  # the floor itself is reachable
    bad = [
        (lambda: ber.power_for_ber(np.nan, 2), r"^mu: contains NaN$"),
        (lambda: ber.power_for_ber(0.0, 2), r"^mu: expected values in \(0, 0.5\]; mu <= 0 is unreachable at any power$"),
        (lambda: ber.power_for_ber(-0.1, 2), r"^mu: expected values in \(0, 0.5\]"),
        (lambda: ber.power_for_ber(1e-301, 2), r"^mu: values below 1e-300 are beyond float64 reach$"),
        (lambda: ber.power_for_ber(0.1, np.arange(9, 20)),
         r"^m: expected values in \(2, 4, 6, 8\), got \[9, 10, 11, 12, 13, 14, 15, 16\]$"),
        (lambda: ber.ber_qam(1.0, np.nan, 2), r"^gamma: expected values > 0$"),
        (lambda: ber.EQ33.ber(np.ones(3), np.array([2, 4])), r"^m: shape \(2,\) does not broadcast to \(3,\)$"),
        (lambda: ber.GrayQamExact().ber_positions(1.0, 3), r"^m: expected one of \(2, 4, 6, 8\), got 3$"),
    ]
    for q in (-1.0, np.nan):  # each alone
        bad.append((lambda q=q: ber.EQ33.ber(np.array([1.0, q]), 2), r"^q: expected values >= 0 \(p\*gamma\), got NaN or negative$"))
        bad.append((lambda q=q: ber.GrayQamExact().ber_positions(np.array([1.0, q]), 2),
                    r"^q: expected values >= 0 \(p\*gamma\), got NaN or negative$"))
    for call, msg in bad:
        with pytest.raises(ValueError, match=msg):
            call()


def test_get_model_accepts_only_objects_with_both_methods():
    class Both:
        def ber(self, q, m): ...
        def power(self, mu, m): ...

    both = Both()
    assert ber.get_model(both) is both
    for obj in (object(), type("OnlyBer", (), {"ber": Both.ber})(), type("OnlyPower", (), {"power": Both.power})()):
        with pytest.raises(ValueError, match=r"^ber_model: expected a name or an object with ber\(q, m\) and power\(mu, m\)$"):
            ber.get_model(obj)


@pytest.mark.parametrize("m", ORDERS)
def test_inverse_down_to_the_float64_floor(m):
    mu = np.logspace(-300, -8, 60)
    for model in (ber.EQ33, ber.GrayQamExact()):
        q = model.power(mu, m)
        assert np.all(np.diff(q) < 0)
        np.testing.assert_allclose(model.ber(q, m), mu, rtol=1e-9)


@pytest.mark.parametrize("m", ORDERS)
def test_position_models_are_the_exact_positions(m):
    """Each per-position model (a new one: position_power's are built once per process) is the
    BER of its axis position; positions beyond m/2 are the last one (the LSB)."""
    q = np.array([0.0, 0.5, 3.0, 20.0])
    per_bit = ber.GrayQamExact().ber_positions(q, m)
    for k in (1, 2, 3, 4):
        model = ber._GrayPosition(k)
        assert model.name == f"gray-position-{k}"
        np.testing.assert_allclose(model.ber(q, m), per_bit[:, 2 * (min(k, m // 2) - 1)], rtol=1e-13)
        mu = np.logspace(-12, np.log10(0.45), 20)
        np.testing.assert_allclose(model.ber(model.power(mu, m), m), mu, rtol=1e-9)


def test_power_positions_shapes():
    assert ber.power_positions(np.zeros((0, 4)), 4).shape == (0,)
    for mu, m in ((np.full((2, 6), 0.1), 4), (np.full((2, 3), 0.1), 3), (np.full(4, 0.1), 4)):
        with pytest.raises(ValueError, match=rf"^mu: expected \[n, {m}\] for m in \(2, 4, 6, 8\), got shape {re.escape(str(mu.shape))}$"):
            ber.power_positions(mu, m)


def test_power_positions_meets_every_position():
    g = ber.GrayQamExact()
    rng = np.random.default_rng(7)
    for m in (2, 4, 6, 8):
        mu = np.sort(rng.uniform(1e-4, 0.2, (50, m)), axis=1)
        q = ber.power_positions(mu, m)
        per = g.ber_positions(q, m)
        assert np.all(per <= mu * (1 + 1e-9))
        assert np.allclose((per / mu).max(1), 1.0, rtol=1e-9)  # the binding bit meets its target exactly
        # never cheaper than the average model (which lets the worst position miss)
        assert np.all(q >= g.power(mu.mean(1), m) * (1 - 1e-12))


GOLDEN_POWER = Path(__file__).resolve().parent / "golden" / "ber_power.json"
GOLDEN_MU = np.concatenate([np.logspace(-300, np.log10(0.5), 40), [0.4531249]])


def _golden_power() -> dict:
    import scipy

    return {"versions": {"numpy": np.__version__, "scipy": scipy.__version__},
            "mu": GOLDEN_MU.tolist(),
            "q": {f"{model.name}/{m}": model.power(GOLDEN_MU, m).tolist()
                  for model in (ber.Eq33(), ber.GrayQamExact()) for m in ORDERS}}


def test_inverse_reproduces_the_stored_powers():
    """Plans are functions of these powers; on the numpy/scipy minor versions they were stored
    with, power() must give them to the last bit (elsewhere to 1e-9: erfcx may differ in
    its last bits). Regenerate only on purpose: ``python tests/test_core_ber.py --write``."""
    gold = json.loads(GOLDEN_POWER.read_text())
    now = _golden_power()
    assert gold["mu"] == now["mu"]
    same = all(now["versions"][k].split(".")[:2] == v.split(".")[:2] for k, v in gold["versions"].items())
    for key, q in gold["q"].items():
        if same:
            assert now["q"][key] == q, key
        else:
            np.testing.assert_allclose(now["q"][key], q, rtol=1e-9, err_msg=key)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN_POWER.write_text(json.dumps(_golden_power()) + "\n")
