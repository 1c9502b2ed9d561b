"""The soft-decision receiver: exact / max-log LLRs, label posteriors, MMSE / MAP codewords,
the label prior, plans with erasures, and ``--decoding`` on the command line.

Receiver-level tests run the shipped default bundle with hand-made plans (a fake plan cache
whose ``batch()`` returns fixed arrays), so they do not depend on the allocator.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from typer.testing import CliRunner

from escmvq.core import channels, pvq, qam
from escmvq.runtime import modem, receiver as receiver_mod, soft
from escmvq.runtime.bundle import load_bundle
from escmvq.runtime.receiver import DECODINGS, DEFAULT_DECODING, Receiver


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def bundle():
    """The shipped default bundle as it is (with or without the training-set statistics)."""
    return load_bundle(None)


@pytest.fixture(scope="module")
def plain(bundle):
    """The default bundle without label prior and latent mean and without a recommended
    decoding (as bundles exported before them)."""
    manifest = {k: v for k, v in bundle.manifest.items() if k != "receiver"}
    return dataclasses.replace(bundle, manifest=manifest, label_prior=None, latent_mean=None, erasure_distortion=None)


class FakePlans:
    """A plan cache whose every row gets the same hand-made plan."""

    def __init__(self, cbs, orders, powers, bit_order):
        self.plan = [np.asarray(a) for a in (cbs, orders, powers, bit_order)]

    def batch(self, p_tot, gammas):
        b = len(np.atleast_1d(gammas))
        return tuple(np.repeat(a[None], b, 0) for a in self.plan)


def full_plan(bundle, rng, order: int = 4):
    """Every sub-vector sent on a random codebook, all symbols of one order, unit power,
    a random bit permutation."""
    V = bundle.codebooks.shape[0]
    N, L, T = int(bundle.model["N"]), bundle.n_bits, bundle.n_symbols
    assert L == order * T
    return (rng.integers(0, V, N), np.full(T, order), np.ones(T), rng.permutation(L))


def erasure_plan(bundle, rng, gone=np.arange(8)):
    """Sub-vectors ``gone`` not sent (codebook V); the sent bits ride 16-QAM symbols (and one
    QPSK symbol for a remainder; an odd count also carries one bit of a not-sent sub-vector)
    first in the bit order, the rest of the T channel uses are unused (order 0, power 0)."""
    V, _, _ = bundle.codebooks.shape
    N, B, T = int(bundle.model["N"]), int(bundle.model["B"]), bundle.n_symbols
    cbs = rng.integers(0, V, N)
    cbs[gone] = V
    sent = np.setdiff1d(np.arange(N), gone)
    sent_bits = (sent[:, None] * B + np.arange(B)).ravel()
    gone_bits = (np.asarray(gone)[:, None] * B + np.arange(B)).ravel()
    carried = len(sent_bits) + len(sent_bits) % 2
    orders = np.zeros(T, np.int64)
    orders[:carried // 4] = 4
    if carried % 4:
        orders[carried // 4] = 2
    powers = (orders > 0).astype(np.float64)
    return cbs, orders, powers, np.concatenate([rng.permutation(sent_bits), gone_bits])


def transmit(bundle, plan, labels, h, noise_var, rng):
    """Labels ``[b, N]`` through the plan's QAM, power and the channel -> ``y [b, T]``."""
    cbs, orders, powers, bit_order = plan
    b = len(labels)
    bits = pvq.index_to_bits(labels, int(bundle.model["B"])).reshape(b, -1)
    s = modem.modulate(bits, np.repeat(orders[None], b, 0), np.repeat(bit_order[None], b, 0))
    return channels.apply(s, h, powers, rng, noise_var=noise_var)


def make_rx(bundle, plan, **kw):
    """A receiver with a fixed plan whose decoder input is recorded in ``rx.z``."""
    rx = Receiver(bundle, threads=1, **kw)
    rx.plans = FakePlans(*plan)
    rx.z = []
    decode = rx.decode
    rx.decode = lambda z, *a: (rx.z.append(pvq.to_subvectors(z)), decode(z, *a))[1]
    return rx


def sent_codewords(bundle, plan, labels):
    """``[b, N, D]`` codewords of the sent labels (not-sent positions: codebook V-1's, unused)."""
    cbs = np.minimum(np.broadcast_to(plan[0], labels.shape), len(bundle.codebooks) - 1)
    return bundle.codebooks[cbs, labels]


def brute_llr(y, m, nv):
    """LLRs from every constellation point (equiprobable), log-sum-exp, float64."""
    pts = qam.constellation(m).astype(np.complex128)
    bits = pvq.index_to_bits(np.arange(2 ** m), m)
    a = -np.abs(y[:, None].astype(np.complex128) - pts[None]) ** 2 / nv[:, None]
    return np.stack([logsumexp(np.where(bits[:, j] == 0, a, -np.inf), 1)
                     - logsumexp(np.where(bits[:, j] == 1, a, -np.inf), 1) for j in range(m)], 1)


# ------------------------------------------------------------------------------------ LLRs
@pytest.mark.parametrize("m", qam.ORDERS)
def test_exact_llr_equals_brute_force(m):
    rng = np.random.default_rng(m)
    n = 400
    y = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * 0.8
    nv = np.exp(rng.uniform(np.log(1e-3), np.log(3.0), n))
    got = qam.demap_llr(y, m, nv, mode="exact")
    ref = brute_llr(y, m, nv)
    assert got.shape == (n, m) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    # max-log differs from exact beyond m = 2 (it keeps only the nearest point of each value)
    if m > 2:
        assert np.abs(qam.demap_llr(y, m, nv, mode="maxlog") - ref).max() > 0.1
    # a symbol sent with zero power (noise variance inf) carries nothing
    assert not qam.demap_llr(np.array([0.3 - 0.2j]), m, np.inf, mode="exact").any()


def test_maxlog_mode_is_the_existing_demapper_and_modem_gathers_like_core():
    rng = np.random.default_rng(1)
    b, T = 5, 60
    orders = rng.choice(qam.ORDERS, T)
    L = int(orders.sum())
    bit_order = rng.permutation(L)
    y = (rng.standard_normal((b, T)) + 1j * rng.standard_normal((b, T))).astype(np.complex64)
    nv = rng.uniform(0.01, 1.0, (b, T))
    ob, bo = np.repeat(orders[None], b, 0), np.repeat(bit_order[None], b, 0)
    got = modem.demodulate_llr(y, ob, bo, nv, mode="maxlog")
    np.testing.assert_array_equal(got, qam.demap_frame_llr(y, orders, bit_order, nv))  # the existing max-log
    np.testing.assert_array_equal(qam.demap_llr(y, 6, nv, mode="maxlog"), qam.demap_llr(y, 6, nv))
    exact = modem.demodulate_llr(y, ob, bo, nv)  # default: exact
    np.testing.assert_allclose(exact, qam.demap_frame_llr(y, orders, bit_order, nv, mode="exact"), rtol=1e-6, atol=1e-5)
    # signs of the LLRs are the hard decisions (away from the decision boundaries)
    hard = modem.demodulate(y, ob, bo)
    strong = np.abs(got) > 1e-3
    np.testing.assert_array_equal((got < 0)[strong], hard.astype(bool)[strong])
    assert (hard.dtype, got.dtype, exact.dtype) == (np.uint8, np.float32, np.float32)
    with pytest.raises(ValueError, match=rf"^noise_var_per_symbol: expected shape \({b}, {T}\), got \({T},\)$"):
        modem.demodulate_llr(y, ob, bo, nv[0])


def test_demodulate_llr_is_zero_where_nothing_is_carried(bundle):
    rng = np.random.default_rng(2)
    plan = erasure_plan(bundle, rng)
    cbs, orders, powers, bit_order = plan
    b = 3
    y = (rng.standard_normal((b, len(orders))) + 1j * rng.standard_normal((b, len(orders)))).astype(np.complex64)
    h = np.ones(b, np.complex64)
    nv = channels.effective_noise_var(h, np.repeat(powers[None], b, 0), 0.1)
    llr = modem.demodulate_llr(channels.equalize(y, h, powers), np.repeat(orders[None], b, 0),
                               np.repeat(bit_order[None], b, 0), nv)
    carried = bit_order[: int(orders.sum())]
    rest = np.setdiff1d(np.arange(bundle.n_bits), carried)
    assert rest.size == 8 * 9 and (orders == 0).any()
    assert not llr[:, rest].any()
    assert np.all(llr[:, carried] != 0)


# ------------------------------------------------------------------------------------ posteriors
def test_label_log_posterior_matches_the_bitwise_probabilities():
    rng = np.random.default_rng(3)
    B = 5
    llr = (rng.standard_normal((7, B)) * 3).astype(np.float32)
    lp = soft.label_log_posterior(llr).astype(np.float64)
    bits = pvq.bit_table(B)
    # log P(b_j = x) = -log(1 + exp(-+l)): positive LLR = bit 0
    ref = np.stack([sum(-np.logaddexp(0, -llr[:, j] if bits[k, j] == 0 else llr[:, j]) for j in range(B))
                    for k in range(2 ** B)], 1)
    np.testing.assert_allclose(lp - lp[:, :1], ref - ref[:, :1], rtol=1e-5, atol=1e-4)


def _check_decode_soft(codebooks, N, B, b, with_prior, llr_scale, rng):
    """decode_soft against the posterior mean and MAP computed here in float64."""
    V, K, D = codebooks.shape
    prior = rng.dirichlet(np.full(K, 0.3), (V, N)).astype(np.float32) if with_prior else None
    tables = soft.SoftTables(codebooks, prior, None, N)
    llr = (rng.standard_normal((b, N, B)) * llr_scale).astype(np.float32)
    cbs = rng.integers(0, V, (b, N))
    lik = soft.label_log_posterior(llr.reshape(-1, B)).astype(np.float64)
    lp = lik + (np.log(prior[cbs.ravel(), np.tile(np.arange(N), b)]) if with_prior else 0.0)
    post = softmax(lp, 1)
    ref = np.einsum("nk,nkd->nd", post, codebooks[cbs.ravel()].astype(np.float64)).reshape(b, N, D)
    z, labels = soft.decode_soft(llr, cbs, tables, "mmse")
    assert z.shape == (b, N, D) and z.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_allclose(z, ref, atol=2e-5)
    np.testing.assert_array_equal(labels.ravel(), lik.argmax(1))  # mmse reports the bitwise decisions
    zm, lm = soft.decode_soft(llr, cbs, tables, "map")
    np.testing.assert_array_equal(lm.ravel(), post.argmax(1))
    np.testing.assert_array_equal(zm, codebooks[cbs, lm])


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("b", [2, 16])  # 2 x 64 rows: per-row prior path; 16 x 64: batched over positions
def test_decode_soft_is_the_posterior_mean_and_map(bundle, with_prior, b):
    rng = np.random.default_rng(4)
    N, B = int(bundle.model["N"]), int(bundle.model["B"])
    _check_decode_soft(bundle.codebooks, N, B, b, with_prior, rng.uniform(0, 12, (b, N, 1)), rng)


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("b", [2, 200])  # 2 x 3 rows: per-row path; 200 x 3: batched over positions
def test_decode_soft_with_an_even_bit_count_and_mixed_llr_scales(with_prior, b):
    """B = 4 splits into equal halves (the shipped B = 9 does not), and rows whose LLRs differ
    by far more than the clamp (100 vs 0.05 per bit) are each weighed on their own scale."""
    rng = np.random.default_rng(5)
    codebooks = rng.standard_normal((2, 16, 3)).astype(np.float32)
    _check_decode_soft(codebooks, 3, 4, b, with_prior, rng.choice([0.05, 100.0], (b, 3, 1)), rng)


def test_no_evidence_gives_the_prior_mean_codeword(bundle):
    rng = np.random.default_rng(5)
    V, K, D = bundle.codebooks.shape
    N, B = int(bundle.model["N"]), int(bundle.model["B"])
    cbs = rng.integers(0, V, (2, N))
    zero = np.zeros((2, N, B), np.float32)
    z, _ = soft.decode_soft(zero, cbs, soft.SoftTables(bundle.codebooks, None, None, N))
    np.testing.assert_allclose(z, bundle.codebooks.mean(1)[cbs], atol=1e-6)
    prior = rng.dirichlet(np.full(K, 0.2), (V, N)).astype(np.float32)
    z, _ = soft.decode_soft(zero, cbs, soft.SoftTables(bundle.codebooks, prior, None, N))
    want = np.einsum("vnk,vkd->vnd", prior.astype(np.float64), bundle.codebooks.astype(np.float64))
    np.testing.assert_allclose(z, want[cbs, np.arange(N)[None]], atol=1e-5)


def test_the_prior_moves_the_estimate_when_the_evidence_is_weak(bundle):
    rng = np.random.default_rng(6)
    V, K, D = bundle.codebooks.shape
    N, B = int(bundle.model["N"]), int(bundle.model["B"])
    fav = rng.integers(0, K, (V, N))  # each position's favourite label
    prior = np.full((V, N, K), 0.1 / (K - 1), np.float32)
    np.put_along_axis(prior, fav[..., None], 0.9, axis=2)
    with_p = soft.SoftTables(bundle.codebooks, prior, None, N)
    without = soft.SoftTables(bundle.codebooks, None, None, N)
    cbs = rng.integers(0, V, (4, N))
    sent = rng.integers(0, K, (4, N))
    sign = 1.0 - 2.0 * pvq.index_to_bits(sent, B)  # LLRs pointing at the sent labels
    weak, strong = (0.2 * sign).astype(np.float32), (40.0 * sign).astype(np.float32)
    fav_cw = bundle.codebooks[cbs, fav[cbs, np.arange(N)[None]]]
    zp, _ = soft.decode_soft(weak, cbs, with_p)
    zu, _ = soft.decode_soft(weak, cbs, without)
    assert np.abs(zp - zu).max() > 0.1
    assert np.mean(np.sum((zp - fav_cw) ** 2, -1)) < 0.5 * np.mean(np.sum((zu - fav_cw) ** 2, -1))
    _, lp = soft.decode_soft(weak, cbs, with_p, "map")
    assert np.mean(lp == fav[cbs, np.arange(N)[None]]) > 0.9  # weak evidence: the prior's label wins
    # strong evidence overrides the prior
    zp, lp = soft.decode_soft(strong, cbs, with_p)
    np.testing.assert_array_equal(lp, sent)
    np.testing.assert_array_equal(soft.decode_soft(strong, cbs, with_p, "map")[1], sent)
    np.testing.assert_allclose(zp, bundle.codebooks[cbs, sent], atol=1e-5)


# ------------------------------------------------------------------------------------ receiver
def test_llrs_are_scaled_by_the_noise_after_equalisation(plain):
    """At a moderate SNR the soft receiver's posterior is calibrated and its MMSE latent error
    is below the hard receiver's; LLRs computed with the wrong noise variance (e.g. 1 instead of
    sigma^2 / (|h|^2 p_t)) fail both. Uniform labels and no prior: the uniform prior is the true one."""
    bundle = plain
    rng = np.random.default_rng(7)
    plan = full_plan(bundle, rng)
    K = bundle.codebooks.shape[1]
    N, B = int(bundle.model["N"]), int(bundle.model["B"])
    b, nv = 48, 0.1
    labels = rng.integers(0, K, (b, N))
    h = channels.rayleigh(rng, b)
    h = (h / np.abs(h) * np.sqrt(np.clip(np.abs(h) ** 2, 0.5, 3.0))).astype(np.complex64)  # no deep fades
    y = transmit(bundle, plan, labels, h, nv, rng)
    soft_rx = make_rx(bundle, plan, decoding="soft")
    hard_rx = make_rx(bundle, plan, decoding="hard")
    llr, cbs = soft_rx.bit_llrs(y, h, 1.0, nv)
    post = softmax(soft.label_log_posterior(llr.reshape(-1, B)).astype(np.float64), 1)
    true = labels.ravel()
    p_true = post[np.arange(len(true)), true]
    accuracy = np.mean(post.argmax(1) == true)
    assert 0.4 < accuracy < 0.95  # a regime with label errors to be uncertain about
    # calibrated: E[p(true)] = E[sum_k p_k^2] and E[max_k p_k] = P(MAP label right)
    assert abs(p_true.mean() - (post ** 2).sum(1).mean()) < 0.02
    assert abs(post.max(1).mean() - accuracy) < 0.02
    soft_rx.receive(y, h, 1.0, nv)
    hard_rx.receive(y, h, 1.0, nv)
    c = sent_codewords(bundle, plan, labels)
    err_soft = np.mean(np.sum((soft_rx.z[-1] - c) ** 2, -1))
    err_hard = np.mean(np.sum((hard_rx.z[-1] - c) ** 2, -1))
    assert err_soft < 0.8 * err_hard


def test_high_snr_soft_equals_hard(plain):
    bundle = plain
    rng = np.random.default_rng(8)
    plan = full_plan(bundle, rng, order=4)
    K = bundle.codebooks.shape[1]
    N = int(bundle.model["N"])
    b, nv = 8, 1e-4
    labels = rng.integers(0, K, (b, N))
    h = np.ones(b, np.complex64)
    y = transmit(bundle, plan, labels, h, nv, rng)
    rxs = {k: make_rx(bundle, plan, **kw) for k, kw in
           {"hard": {"decoding": "hard"}, "mmse": {"decoding": "soft"}, "map": {"decoding": "soft", "soft_estimate": "map"},
            "maxlog": {"decoding": "soft", "llr": "maxlog"}}.items()}
    out = {k: rx.receive(y, h, 1.0, nv) for k, rx in rxs.items()}
    np.testing.assert_array_equal(out["hard"].labels, labels)
    for k in ("mmse", "map", "maxlog"):
        np.testing.assert_array_equal(out[k].labels, out["hard"].labels)
    np.testing.assert_array_equal(rxs["map"].z[-1], rxs["hard"].z[-1])
    np.testing.assert_allclose(rxs["mmse"].z[-1], rxs["hard"].z[-1], atol=1e-5)
    np.testing.assert_allclose(out["mmse"].tiles, out["hard"].tiles, atol=1e-3)


@pytest.mark.parametrize("decoding", ["hard", "soft"])
def test_not_sent_sub_vectors_get_the_latent_mean(plain, decoding):
    bundle = plain
    rng = np.random.default_rng(9)
    V, K, D = bundle.codebooks.shape
    N = int(bundle.model["N"])
    gone = np.array([0, 5, 17, 40, 63])
    plan = erasure_plan(bundle, rng, gone)
    b, nv = 4, 1e-4
    labels = rng.integers(0, K, (b, N))
    h = np.ones(b, np.complex64)
    y = transmit(bundle, plan, labels, h, nv, rng)
    mean = rng.standard_normal((N, D)).astype(np.float32)
    sent = np.setdiff1d(np.arange(N), gone)
    # with the bundle's latent mean
    rx = make_rx(dataclasses.replace(bundle, latent_mean=mean), plan, decoding=decoding)
    r = rx.receive(y, h, 1.0, nv)
    z = rx.z[-1]
    np.testing.assert_array_equal(z[:, gone], np.broadcast_to(mean[gone], (b, len(gone), D)))
    np.testing.assert_array_equal(r.labels[:, gone], -1)
    np.testing.assert_array_equal(r.labels[:, sent], labels[:, sent])
    np.testing.assert_allclose(z[:, sent], sent_codewords(bundle, plan, labels)[:, sent], atol=1e-5)
    # without: the prior-mean codeword of the last codebook (uniform prior: its mean)
    rx = make_rx(bundle, plan, decoding=decoding)
    rx.receive(y, h, 1.0, nv)
    np.testing.assert_allclose(rx.z[-1][:, gone], np.broadcast_to(bundle.codebooks[-1].mean(0), (b, len(gone), D)),
                               atol=1e-6)
    prior = rng.dirichlet(np.full(K, 0.2), (V, N)).astype(np.float32)
    rx = make_rx(dataclasses.replace(bundle, label_prior=prior), plan, decoding=decoding)
    rx.receive(y, h, 1.0, nv)
    np.testing.assert_allclose(rx.z[-1][:, gone], (prior[-1] @ bundle.codebooks[-1])[gone][None].repeat(b, 0),
                               atol=1e-5)


def test_the_bundle_prior_helps_at_low_snr_and_can_be_switched_off(plain):
    bundle = plain
    rng = np.random.default_rng(10)
    V, K, D = bundle.codebooks.shape
    N = int(bundle.model["N"])
    prior = rng.dirichlet(np.full(K, 0.05), (V, N)).astype(np.float32)  # peaked usage
    plan = full_plan(bundle, rng)
    b, nv = 32, 0.6
    cbs = plan[0]
    cum = prior[cbs, np.arange(N)].cumsum(-1)
    labels = np.minimum((rng.random((b, N, 1)) > cum[None]).sum(-1), K - 1)  # drawn from the prior
    h = np.ones(b, np.complex64)
    y = transmit(bundle, plan, labels, h, nv, rng)
    withp = dataclasses.replace(bundle, label_prior=prior)
    on, off = make_rx(withp, plan, decoding="soft"), make_rx(withp, plan, decoding="soft", prior=False)
    on.receive(y, h, 1.0, nv)
    off.receive(y, h, 1.0, nv)
    assert on.settings["prior"] == "bundle" and off.settings["prior"] == "off"
    c = sent_codewords(bundle, plan, labels)
    assert np.mean(np.sum((on.z[-1] - c) ** 2, -1)) < 0.9 * np.mean(np.sum((off.z[-1] - c) ** 2, -1))


def test_a_bundle_without_prior_warns_once_and_works(plain, capsys):
    bundle = plain
    receiver_mod._PRIOR_WARNED.clear()
    Receiver(bundle, threads=1)  # hard decoding uses no prior: nothing to say
    assert capsys.readouterr().err == ""
    rxs = [Receiver(bundle, threads=1, decoding="soft") for _ in range(2)]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label_prior" in err[0] and "uniform" in err[0]
    assert rxs[0].settings == {"decoding": "soft", "estimate": "mmse", "llr": "exact",
                               "prior": "uniform (bundle has none)"}
    rng = np.random.default_rng(11)
    b = 2
    T = bundle.n_symbols
    y = (rng.standard_normal((b, T)) + 1j * rng.standard_normal((b, T))).astype(np.complex64)
    r = rxs[0].receive(y, channels.rayleigh(rng, b), 200.0)
    assert r.tiles.shape == (b, 3, *bundle.tile_size) and np.isfinite(r.tiles).all()


def test_bad_settings_are_one_line_errors(bundle):
    for kw, word in (({"decoding": "bogus"}, "decoding"), ({"soft_estimate": "mean"}, "soft_estimate"),
                     ({"llr": "approx"}, "llr")):
        with pytest.raises(ValueError, match=word) as e:
            Receiver(bundle, **kw)
        assert len(str(e.value).splitlines()) == 1
    assert DEFAULT_DECODING in DECODINGS


# ------------------------------------------------------------------------------------ CLI / eval
@pytest.mark.parametrize("args", [
    ["rx", "frame.tx"], ["link", "--snr", "10", "img.png"], ["stream", "--snr", "10", "img.png"],
    ["stream-rx", "--socket", "x.sock"], ["eval"], ["bench"],
])
def test_decoding_bogus_is_a_one_line_error_with_exit_2(args):
    from escmvq.cli.main import app

    r = CliRunner().invoke(app, [*args, "--decoding", "bogus"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --decoding") and "auto, hard, soft" in lines[0], r.stderr
    assert "Traceback" not in r.output
    help_text = CliRunner().invoke(app, [args[0], "--help"]).output
    assert "--decoding" in help_text and "auto|hard|soft" in help_text


def test_cli_values_and_default_are_the_receivers():
    from escmvq.cli.txrx import Decoding, decoding_value

    assert tuple(d.value for d in Decoding) == DECODINGS
    assert decoding_value(None) == DEFAULT_DECODING == "auto"
    assert decoding_value(Decoding.soft) == "soft"


def test_sweep_records_the_receiver_setting(bundle):
    from escmvq.eval.sweep import EscLink, sweep_esc

    rng = np.random.default_rng(12)
    imgs = rng.integers(0, 256, (4, *bundle.tile_size, 3), dtype=np.uint8)
    res = sweep_esc(bundle, imgs, [5.0], ["jcamp"], receiver={"decoding": "soft"}, threads=1)
    assert res["jcamp"].summary()["receiver"]["decoding"] == "soft"
    auto = sweep_esc(bundle, imgs, [5.0], ["jcamp"], threads=1)
    # the default "auto": the shipped bundle recommends soft decoding
    assert auto["jcamp"].summary()["receiver"] == {"decoding": "soft", "estimate": "mmse", "llr": "exact",
                                                   "prior": "bundle", "auto": True}
    with pytest.raises(ValueError, match="reused receiver"):
        sweep_esc(bundle, imgs, [5.0], ["jcamp"], receiver={"decoding": "soft"},
                  links={"jcamp": EscLink(bundle, "jcamp", threads=1)})
    with pytest.raises(ValueError, match="unknown setting"):
        EscLink(bundle, "jcamp", receiver={"decode": "soft"})


def test_eval_merge_refuses_different_receivers(tmp_path):
    from escmvq.cli.main import app

    def sweep(name, **over):
        doc = {"format": "escmvq-eval", "version": 1, "dataset": "cifar10", "channel": "rayleigh",
               "snr_db": [0.0], "n_images": 10, "realizations": 1, "seed": 0, "batch": 256,
               "methods": {name: {"psnr_mean": [20.0], "psnr_ci95": [0.1], "kind": "esc-mvq", "pairs": 1,
                                  "transmissions_per_s": 1.0, "seconds": 1.0}}}
        doc.update(over)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        return str(path)

    soft_rx = {"decoding": "soft", "estimate": "mmse", "llr": "exact", "prior": True}
    a, b, c = sweep("jcamp", receiver=soft_rx), sweep("jcap"), sweep("jcap2", receiver=soft_rx)
    out = tmp_path / "m.json"
    r = CliRunner().invoke(app, ["eval-merge", a, b, "--json", str(out)])  # b: written before, hard decisions
    assert r.exit_code != 0 and "receiver" in r.stderr and "differs" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    r = CliRunner().invoke(app, ["eval-merge", a, c, "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["receiver"] == soft_rx


def test_compare_receivers_times_both_on_the_same_transmissions(bundle):
    from escmvq.runtime.bench import compare_receivers
    from escmvq.runtime.transmitter import Transmitter

    rng = np.random.default_rng(13)
    tiles = rng.random((3, 3, *bundle.tile_size), dtype=np.float32)
    rxs = {d: Receiver(bundle, threads=1, decoding=d) for d in ("hard", "soft")}
    r = compare_receivers(Transmitter(bundle, threads=1), rxs, tiles, 2, 10.0, rng, iters=3, warmup=1)
    assert r["batch"] == 2 and set(r["receivers"]) == {"hard", "soft"}
    assert r["receivers"]["soft"]["settings"]["decoding"] == "soft"
    for rr in r["receivers"].values():
        assert rr["stages"]["end_to_end"]["n"] == 3 and 0 < rr["radio_share_of_throughput"] < 1
    # the transmit side is shared: the same encode times for both receivers
    assert r["receivers"]["hard"]["stages"]["encode"] == r["receivers"]["soft"]["stages"]["encode"]
    assert set(r["vs_hard"]["soft"]) == {"e2e_median_ms_added", "e2e_median_ratio", "throughput_ratio",
                                         "paired_added_ms_median"}


def test_prior_table_normalises_rows_and_checks_its_input():
    lp = soft.log_prior_table(np.array([[[2.0, 6.0], [1.0, 0.0]]]))  # [V=1, N=2, K=2], unnormalised
    assert lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp), [[[0.25, 0.75], [1.0, 1e-30]]], rtol=1e-6)
    with pytest.raises(ValueError, match="^label_prior: a row sums to 0$"):
        soft.log_prior_table(np.array([[[0.5, 0.5], [0.0, 0.0]]]))
    with pytest.raises(ValueError, match="^codebooks: K = 6 is not a power of 2$"):
        soft.SoftTables(np.zeros((1, 6, 2)), None, None, 2)
    tables = soft.SoftTables(np.zeros((1, 4, 2)), None, None, 2)
    with pytest.raises(ValueError, match="^estimate: expected one of mmse, map, got 'mean'$"):
        soft.decode_soft(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2), np.int64), tables, "mean")
