"""Channels: generate/apply split, seeding, statistics, equalisation, eq. (53)."""
import numpy as np
import pytest

from escmvq.core import channels, qam


def test_rayleigh_seeded_and_unit_power():
    h1 = channels.rayleigh(np.random.default_rng(3), 20000)
    h2 = channels.rayleigh(np.random.default_rng(3), 20000)
    assert h1.dtype == np.complex64 and h1.shape == (20000,)
    np.testing.assert_array_equal(h1, h2)
    assert abs(np.mean(np.abs(h1) ** 2) - 1) < 0.05
    assert abs(np.mean(h1)) < 0.03
    # |h|^2 ~ Exp(1): P(|h|^2 < 0.1) = 1 - e^-0.1
    assert abs(np.mean(np.abs(h1) ** 2 < 0.1) - (1 - np.exp(-0.1))) < 0.01


def test_apply_noise_statistics_and_equalize():
    rng = np.random.default_rng(0)
    batch, T = 64, 400
    s = qam.map_bits(rng.integers(0, 2, (batch, T, 4), dtype=np.uint8), 4)
    h = channels.rayleigh(rng, batch)
    p = rng.uniform(0.5, 3.0, T)
    y = channels.apply(s, h, p, np.random.default_rng(1), noise_var=0.5)
    assert y.shape == (batch, T) and y.dtype == np.complex64
    n = y - h[:, None] * np.sqrt(p) * s
    assert abs(np.mean(np.abs(n) ** 2) - 0.5) < 0.02
    assert abs(np.mean(n.real**2) - np.mean(n.imag**2)) < 0.02
    # noiseless limit: equalize recovers s
    y0 = h[:, None] * np.sqrt(p) * s
    np.testing.assert_allclose(channels.equalize(y0, h, p), s, atol=1e-4)
    nv = channels.effective_noise_var(h, p, 0.5)
    np.testing.assert_allclose(nv, 0.5 / (np.abs(h.astype(complex))[:, None] ** 2 * p), rtol=1e-6)
    # same rng seed -> same noise
    np.testing.assert_array_equal(y, channels.apply(s, h, p, np.random.default_rng(1), noise_var=0.5))


def test_awgn_and_zero_power():
    s = np.ones((2, 3), np.complex64)
    h = channels.awgn_gain(2)
    assert h.dtype == np.complex64 and np.all(h == 1)
    y = channels.apply(s, h, np.array([1.0, 0.0, 4.0]), np.random.default_rng(0))
    e = channels.equalize(y, h, np.array([1.0, 0.0, 4.0]))
    assert np.all(e[:, 1] == 0)
    assert np.all(np.isinf(channels.effective_noise_var(h, np.array([1.0, 0.0, 4.0]))[:, 1]))


def test_snr_definition_eq53():
    assert channels.snr_db_to_ptot(0.0, 576) == pytest.approx(576.0)
    assert channels.snr_db_to_ptot(10.0, 576) == pytest.approx(5760.0)
    assert channels.snr_db_to_ptot(10.0, 576, noise_var=2.0) == pytest.approx(11520.0)
    # round trip through (53): SNR = P_tot E[gamma] / (N B), E[gamma] = 1 / noise_var
    p = channels.snr_db_to_ptot(np.array([-5.0, 7.0]), 100, noise_var=0.25)
    np.testing.assert_allclose(10 * np.log10(p * (1 / 0.25) / 100), [-5.0, 7.0])
    assert channels.channel_gamma(2.0 + 0j, 0.5) == pytest.approx(8.0)


def test_bad_input():
    with pytest.raises(ValueError, match="rng"):
        channels.rayleigh(np.random.RandomState(0), 3)
    s = np.ones((2, 3), np.complex64)
    with pytest.raises(ValueError, match="powers"):
        channels.apply(s, channels.awgn_gain(2), np.array([1.0, -1.0, 1.0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="powers"):
        channels.apply(s, channels.awgn_gain(2), np.ones(4), np.random.default_rng(0))
    with pytest.raises(ValueError, match="h"):
        channels.apply(s, channels.awgn_gain(3), np.ones(3), np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise_var"):
        channels.apply(s, channels.awgn_gain(2), np.ones(3), np.random.default_rng(0), noise_var=0)
    with pytest.raises(ValueError, match="n_bits"):
        channels.snr_db_to_ptot(3.0, 0)
    with pytest.raises(ValueError, match="snr_db"):
        channels.snr_db_to_ptot(float("nan"), 10)


def test_channel_gamma_is_exact_on_the_complex64_wire_value():
    h = channels.rayleigh(np.random.default_rng(7), 5000)
    g = channels.channel_gamma(h, 0.3)
    assert g.dtype == np.float64 and g.shape == (5000,)
    re, im = h.real.astype(np.float64), h.imag.astype(np.float64)
    np.testing.assert_array_equal(g, (re * re + im * im) / 0.3)  # bit for bit, not approx
    # a complex128 h is first rounded to what the frame carries (complex64)
    h128 = h.astype(np.complex128) + 1e-12
    np.testing.assert_array_equal(channels.channel_gamma(h128, 0.3), g)
    assert isinstance(channels.channel_gamma(np.complex64(3 - 4j), 2.0), float)
    assert channels.channel_gamma(np.complex64(3 - 4j), 2.0) == 12.5
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_var"):
            channels.channel_gamma(h, bad)


def test_draw_h_awgn_rayleigh_and_per_image():
    np.testing.assert_array_equal(channels.draw_h(np.random.default_rng(0), 4, "awgn"), np.ones(4, np.complex64))
    h = channels.draw_h(np.random.default_rng(5), 6, "rayleigh")
    assert h.dtype == np.complex64 and h.shape == (6,)
    np.testing.assert_array_equal(h, channels.rayleigh(np.random.default_rng(5), 6))
    one = channels.draw_h(np.random.default_rng(5), 6, "rayleigh", per_image=True)
    np.testing.assert_array_equal(one, np.repeat(h[:1], 6))
    rng = np.random.default_rng(1)
    channels.draw_h(rng, 3, "awgn")  # AWGN draws nothing: the next draw is the generator's first
    np.testing.assert_array_equal(channels.draw_h(rng, 2, "rayleigh"), channels.rayleigh(np.random.default_rng(1), 2))
    with pytest.raises(ValueError, match="channel"):
        channels.draw_h(np.random.default_rng(0), 2, "rician")


def test_apply_channel_is_apply_with_unit_powers_and_batches_alike():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((7, 12)) + 1j * rng.standard_normal((7, 12))).astype(np.complex64)
    h = channels.rayleigh(rng, 7)
    y = channels.apply_channel(x, h, np.random.default_rng(3), 0.5)
    assert y.dtype == np.complex64 and y.shape == (7, 12)
    np.testing.assert_array_equal(y, channels.apply(x, h, np.ones(12), np.random.default_rng(3), noise_var=0.5))
    r = np.random.default_rng(3)
    parts = [channels.apply_channel(x[i:i + 3], h[i:i + 3], r, 0.5) for i in range(0, 7, 3)]
    np.testing.assert_array_equal(np.concatenate(parts), y)  # row-wise draws: batching changes nothing


def test_es_eb_of_the_papers_snr():
    from escmvq.core.channels import snr_db_to_es_eb, snr_db_to_ptot

    es, eb = snr_db_to_es_eb(10.0, 576, 144)
    assert eb == 10.0 and es == pytest.approx(10.0 + 10 * np.log10(4.0))
    # Es/N0 is the received energy per channel use over N0: P_tot E[gamma] / T, noise_var = 1
    assert 10 ** (es / 10) == pytest.approx(snr_db_to_ptot(10.0, 576) / 144)
    es_a, eb_a = snr_db_to_es_eb(np.array([-5.0, 0.0]), 576, 288)
    assert np.allclose(es_a, [-5 + 10 * np.log10(2), 10 * np.log10(2)]) and np.array_equal(eb_a, [-5.0, 0.0])
    with pytest.raises(ValueError):
        snr_db_to_es_eb(0.0, 576, 0)


def test_draw_layout_pins_the_seeded_stream():
    """Gains and noise are the generator's standard normals taken in (re, im) pairs, row by row,
    scaled to CN(0, 1) / CN(0, noise_var): a seed gives the same h and n in every release."""
    z = np.random.default_rng(5).standard_normal(2 * 3 + 2 * 3 * 4)
    rng = np.random.default_rng(5)
    h = channels.rayleigh(rng, 3)
    np.testing.assert_allclose(h, (z[0:6:2] + 1j * z[1:6:2]) * np.sqrt(0.5), rtol=1e-6)
    y = channels.apply(np.ones((3, 4)), h, np.zeros(4), rng, noise_var=0.5)  # zero power: noise only
    np.testing.assert_allclose(y.ravel(), (z[6::2] + 1j * z[7::2]) * 0.5, rtol=1e-6)


def test_defaults_scalar_gain_and_two_dimensional_powers():
    rng = np.random.default_rng(8)
    y = channels.apply(np.zeros((4, 5000)), 1.0, [1.0] * 5000, rng)  # scalar h, default sigma^2 = 1
    assert y.shape == (4, 5000) and abs(np.mean(np.abs(y) ** 2) - 1.0) < 0.05
    p2 = np.array([[1.0, 4.0], [0.0, 9.0]])
    np.testing.assert_allclose(channels.equalize(np.array([[2, 4], [1, 6]]), 2.0, p2), [[1, 1], [0, 1]])
    np.testing.assert_allclose(channels.effective_noise_var(np.array([2.0, 1.0]), p2), [[0.25, 1 / 16], [np.inf, 1 / 9]])
    assert channels.channel_gamma(2.0) == 4.0 and isinstance(channels.channel_gamma(2.0), float)
    assert channels.awgn_gain(0).shape == (0,) and channels.rayleigh(rng, 0).shape == (0,)
    h = channels.draw_h(rng, 3, "awgn")
    assert h.dtype == np.complex64
    assert channels.snr_db_to_ptot(0.0, 1) == 1.0 and isinstance(channels.snr_db_to_ptot(10.0, 8), float)
    es, eb = channels.snr_db_to_es_eb(3.0, 1, 1)
    assert (es, eb) == (3.0, 3.0) and isinstance(es, float) and isinstance(eb, float)
    es, eb = channels.snr_db_to_es_eb(np.array([0, 10]), 4, 2)
    assert es.dtype == eb.dtype == np.float64


def test_messages():
    rng = np.random.default_rng(0)
    bad = [
        (lambda: channels.awgn_gain(2.5), r"^batch: expected a non-negative int, got 2.5$"),
        (lambda: channels.rayleigh(42, 3), r"^rng: expected a numpy.random.Generator, got int$"),
        (lambda: channels.apply(np.ones((1, 2)), 1.0, [1.0, -1.0], rng), r"^powers: expected values >= 0 without NaN$"),
        (lambda: channels.apply(np.ones((1, 2)), 1.0, [1.0, np.nan], rng), r"^powers: expected values >= 0 without NaN$"),
        (lambda: channels.apply(np.ones((1, 2)), 1.0, np.ones((1, 1, 2)), rng),
         r"^powers: expected \[T\] or \[batch, T\], got shape \(1, 1, 2\)$"),
        (lambda: channels.apply(np.ones(2), 1.0, [1.0, 1.0], rng), r"^s: expected \[batch, T\], got shape \(2,\)$"),
        (lambda: channels.equalize(np.ones(2), 1.0, [1.0, 1.0]), r"^y: expected \[batch, T\], got shape \(2,\)$"),
        (lambda: channels.snr_db_to_ptot(0.0, 8, noise_var=0.0), r"^noise_var: expected a finite value > 0, got 0.0$"),
        (lambda: channels.snr_db_to_ptot(np.nan, 8), r"^snr_db: contains NaN$"),
    ]
    for n_bits, n_symbols in ((2.5, 1), (0, 1), (1, 2.5)):
        bad.append((lambda n_bits=n_bits, n_symbols=n_symbols: channels.snr_db_to_es_eb(0.0, n_bits, n_symbols),
                    rf"^n_bits, n_symbols: expected positive ints, got {n_bits!r}, {n_symbols!r}$"))
    for call, msg in bad:
        with pytest.raises(ValueError, match=msg):
            call()
