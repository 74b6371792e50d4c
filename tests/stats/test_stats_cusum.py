"""CUSUM charts: formula values checked by hand.

* Bernoulli CUSUM boundaries (spec 7.2(c); Wald 1947 SPRT boundaries): for p0 = 0.10,
  p1 = 0.20, alpha = beta = 0.10: P = ln 2, Q = ln(0.9/0.8), s = Q/(P+Q) = 0.14524,
  h1 = ln 9/(P+Q) = 2.70951 = -h0.
* Steiner SH, Cook RJ, Farewell VT, Treasure T. Biostatistics 2000;1:441-452:
  ``W = y ln(RA/R0) - ln((1 - p + RA p)/(1 - p + R0 p))``; for R0 = 1, y = 1, p = 0.1,
  RA = 2: ``W = ln 2 - ln 1.1``; for y = 0: ``W = -ln 1.1``. With p = 0 a success scores 0.
* Limits: the dynamic-programming limit is checked against brute-force enumeration
  of all 2^12 sequences, and against simulation.
"""

import itertools
import math

import numpy as np
import pytest

from poem_registry.stats import (
    bernoulli_cusum,
    bernoulli_cusum_limit,
    cusum_observed_minus_mean,
    oe_cusum,
    risk_adjusted_cusum,
    risk_adjusted_cusum_limit,
    steiner_weights,
)


def test_observed_minus_mean():
    x = [120, 100, 90, 80, 110]
    c = cusum_observed_minus_mean(x)
    np.testing.assert_allclose(c, np.cumsum(np.array(x) - 100.0))
    assert c[-1] == pytest.approx(0.0)
    assert cusum_observed_minus_mean([]).size == 0
    with pytest.raises(ValueError):
        cusum_observed_minus_mean([1.0, float("nan")])


def test_oe_cusum():
    np.testing.assert_allclose(oe_cusum([0, 1, 0, 0], 0.1), [-0.1, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(oe_cusum([1, 0], [0.5, 0.2]), [0.5, 0.3])
    with pytest.raises(ValueError):
        oe_cusum([0, 2], 0.1)


def test_bernoulli_boundaries_by_hand():
    b = bernoulli_cusum([0, 0, 1, 0, 1, 1], p0=0.10, p1=0.20)
    big_p, big_q = math.log(2), math.log(0.9 / 0.8)
    assert b.s == pytest.approx(big_q / (big_p + big_q))
    assert b.s == pytest.approx(0.145244, abs=1e-6)
    assert b.h1 == pytest.approx(math.log(9) / (big_p + big_q))
    assert b.h1 == pytest.approx(2.709511, abs=1e-6)
    assert b.h0 == pytest.approx(-b.h1)
    np.testing.assert_allclose(b.cusum, np.cumsum(np.array([0, 0, 1, 0, 1, 1]) - b.s))
    # resetting form in nats: max(0, C + W), failures add ln 2, successes subtract ln(9/8)
    np.testing.assert_allclose(b.resetting[:3], [0, 0, big_p])
    assert b.resetting[3] == pytest.approx(big_p - big_q)
    assert b.limit == pytest.approx(math.log(9))


def test_bernoulli_signals_and_odds_multiplier():
    b = bernoulli_cusum([1] * 6 + [0] * 30, p0=0.1, odds_multiplier=2.0)
    assert b.p1 == pytest.approx(0.2 / 1.1)
    assert b.signals_h1 and b.signals_h1[0] == 3  # C = 4 (1 - s) first exceeds h1
    assert b.resetting_signals[0] == 3
    good = bernoulli_cusum([0] * 40, p0=0.1, p1=0.2)
    assert good.signals_h0 == (math.ceil(-good.h0 / good.s) - 1,)
    restarted = bernoulli_cusum([1] * 10, 0.1, 0.2, resetting=True)
    assert restarted.resetting_signals == (3, 7)
    with pytest.raises(ValueError):
        bernoulli_cusum([0, 1], 0.1, p1=0.2, odds_multiplier=2)


def _brute_force_signal_probability(p0, p1, n, h):
    big_p, big_q = math.log(p1 / p0), math.log((1 - p0) / (1 - p1))
    total = 0.0
    for seq in itertools.product((0, 1), repeat=n):
        c = 0.0
        hit = False
        for y in seq:
            c = max(0.0, c + (big_p if y else -big_q))
            hit = hit or c > h
        if hit:
            k = sum(seq)
            total += p0**k * (1 - p0) ** (n - k)
    return total


def test_bernoulli_limit_dynamic_programming_vs_enumeration():
    lim = bernoulli_cusum_limit(0.1, 0.2, 12, 0.05, method="exact")
    assert lim.false_signal_probability <= 0.05
    assert _brute_force_signal_probability(0.1, 0.2, 12, lim.h) == pytest.approx(
        lim.false_signal_probability, abs=1e-9
    )
    # a slightly smaller limit would give too many false signals
    assert _brute_force_signal_probability(0.1, 0.2, 12, lim.h - 0.05) > 0.05


def test_bernoulli_limit_simulation_agrees_with_exact():
    exact = bernoulli_cusum_limit(0.1, 0.2, 100, 0.05, method="exact")
    sim = bernoulli_cusum_limit(0.1, 0.2, 100, 0.05, method="simulation", seed=11, n_simulations=4000)
    assert sim.h == pytest.approx(exact.h, abs=0.25)
    again = bernoulli_cusum_limit(0.1, 0.2, 100, 0.05, method="simulation", seed=11, n_simulations=4000)
    assert again.h == sim.h  # reproducible with a seed


def test_steiner_weights_by_hand():
    w = steiner_weights([1, 0], [0.1, 0.1], odds_multiplier=2.0)
    assert w[0] == pytest.approx(math.log(2) - math.log(1.1))
    assert w[1] == pytest.approx(-math.log(1.1))
    # general R0: log-likelihood ratio of odds RA*odds(p) vs R0*odds(p)
    p, ra, r0 = 0.3, 2.0, 0.5
    p_a, p_0 = ra * p / (1 - p + ra * p), r0 * p / (1 - p + r0 * p)
    w = steiner_weights([1, 0], [p, p], odds_multiplier=ra, r0=r0)
    assert w[0] == pytest.approx(math.log(p_a / p_0))
    assert w[1] == pytest.approx(math.log((1 - p_a) / (1 - p_0)))
    # p = 0: a success carries no information
    assert steiner_weights([0], [0.0])[0] == 0.0


def test_risk_adjusted_cusum_series_and_signals():
    y = [0, 1, 1, 1, 0, 1]
    p = [0.05, 0.1, 0.2, 0.05, 0.3, 0.1]
    r = risk_adjusted_cusum(y, p, odds_multiplier=2.0, limit=1.5)
    x = 0.0
    series = []
    for yi, pi in zip(y, p, strict=True):
        x = max(0.0, x + yi * math.log(2) - math.log(1 + pi))
        series.append(x)
    np.testing.assert_allclose(r.cusum, series)
    assert r.signals == tuple(i for i, v in enumerate(series) if v > 1.5)
    assert risk_adjusted_cusum(y, p).signals == ()


def test_ra_cusum_limit_equals_bernoulli_limit_for_constant_risk():
    # with every p_i = p0 and RA = 2 the RA-CUSUM is the Bernoulli CUSUM with p1 = 2p0/(1+p0)
    p0 = 0.1
    exact = bernoulli_cusum_limit(p0, 2 * p0 / (1 + p0), 150, 0.05)
    sim = risk_adjusted_cusum_limit(np.full(150, p0), 2.0, 0.05, n_simulations=4000, seed=5)
    assert sim.h == pytest.approx(exact.h, abs=0.25)
    assert sim.n_cases == 150 and sim.seed == 5
