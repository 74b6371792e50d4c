"""Risk adjustment: logistic fit, O/E intervals, shrinkage.

* Exact Poisson limits (Garwood 1936): for O = 2 the 95% limits for the mean are
  0.2422 and 7.2247 (standard tables, e.g. Breslow & Day 1987 Table); for O = 0 the
  upper limit is -ln(0.025) = 3.6889.
* Byar's approximation (Breslow & Day 1987, vol. II p. 69) is checked against its
  formula and against the exact limits.
"""

import math

import numpy as np
import pytest
import statsmodels.api as sm

from poem_registry.stats import fit_logistic_risk_model, observed_expected, reliability_note, shrink_oe


def test_logistic_mle_matches_statsmodels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (rng.random(400) < 1 / (1 + np.exp(-(-2 + x[:, 0])))).astype(int)
    m = fit_logistic_risk_model(x, y, ["age_z", "sigmoid"])
    ref = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
    assert m.method == "mle" and m.notes == ()
    np.testing.assert_allclose(list(m.coefficients.values()), ref.params, rtol=1e-6)
    np.testing.assert_allclose(m.predict(x), ref.predict(sm.add_constant(x)), rtol=1e-6)
    assert 0.5 < m.c_statistic < 1
    assert set(m.standard_errors) == {"intercept", "age_z", "sigmoid"}


def test_logistic_separation_and_singular_fallback():
    x = np.array([[0.0], [0.0], [0.0], [1.0], [1.0], [1.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    m = fit_logistic_risk_model(x, y, ["chagas"])
    assert m.method == "ridge" and m.notes and m.standard_errors is None
    assert np.all(np.isfinite(m.params))
    p = m.predict(x)
    assert p[3] > p[0]
    rng = np.random.default_rng(1)
    a = rng.normal(size=50)
    yy = (rng.random(50) < 0.3).astype(int)
    yy[0], yy[1] = 0, 1
    m2 = fit_logistic_risk_model(np.column_stack([a, 2 * a]), yy, ["a", "a_twice"])
    assert m2.method == "ridge" and "singular" in m2.notes[0]
    with pytest.raises(ValueError):
        fit_logistic_risk_model(np.zeros((3, 1)), [0, 0, 0], ["x"])
    with pytest.raises(ValueError):
        fit_logistic_risk_model(np.zeros((3, 1)), [0, 1, 0], ["x", "y"])


def test_observed_expected_exact_poisson():
    r = observed_expected([1, 0, 0, 1, 0], [0.2] * 5)
    assert r.observed == 2 and r.expected == pytest.approx(1.0) and r.ratio == pytest.approx(2.0)
    assert r.ci_low == pytest.approx(0.2422, abs=5e-5)
    assert r.ci_high == pytest.approx(7.2247, abs=5e-5)
    z = observed_expected([0, 0, 0], [0.5, 0.5, 0.5])
    assert z.ci_low == 0.0 and z.ci_high == pytest.approx(-math.log(0.025) / 1.5)
    adj = observed_expected([1, 0], [0.25, 0.25], overall_rate=0.1)
    assert adj.rate_adjusted == pytest.approx(0.2)


def test_observed_expected_byar():
    y = [1] * 10 + [0] * 40
    r = observed_expected(y, [0.15] * 50, method="byar")
    o, e, z = 10.0, 7.5, 1.959963984540054
    assert r.ci_low == pytest.approx(o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3 / e)
    assert r.ci_high == pytest.approx((o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3 / e)
    ex = observed_expected(y, [0.15] * 50)
    assert r.ci_low == pytest.approx(ex.ci_low, rel=0.01) and r.ci_high == pytest.approx(ex.ci_high, rel=0.01)


def test_reliability_note():
    assert reliability_note(200, 12.0).reliable
    bad = reliability_note(20, 1.4)
    assert not bad.reliable and len(bad.reasons) == 2 and "shrunken" in bad.text


def test_shrink_oe():
    o = np.array([2, 10, 0, 30])
    e = np.array([4, 8, 1.5, 20])
    r = shrink_oe(o, e)
    y = np.log((o + 0.5) / (e + 0.5))
    v = 1 / (o + 0.5)
    b = r.tau2 / (r.tau2 + v)
    np.testing.assert_allclose(r.reliability, b)
    np.testing.assert_allclose(np.log(r.shrunken_ratio), r.mu + b * (y - r.mu))
    # shrunken estimates lie between the raw log ratio and the mean
    lo, hi = np.minimum(y, r.mu), np.maximum(y, r.mu)
    assert np.all((np.log(r.shrunken_ratio) >= lo - 1e-12) & (np.log(r.shrunken_ratio) <= hi + 1e-12))
    assert np.all(r.ci_low < r.shrunken_ratio) and np.all(r.shrunken_ratio < r.ci_high)
    flat = shrink_oe([5, 5, 5], [5, 5, 5])
    assert flat.tau2 == 0 and np.allclose(flat.shrunken_ratio, flat.shrunken_ratio[0])
