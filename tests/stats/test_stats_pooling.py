"""Pooling against published meta-analysis results.

BCG vaccine trials (Colditz et al. JAMA 1994;271:698-702; metafor ``dat.bcg``),
log risk ratios computed here from the 2x2 counts as metafor ``escalc(measure="RR")``:
``yi = ln(a/(a+b)) - ln(c/(c+d))``, ``vi = 1/a - 1/(a+b) + 1/c - 1/(c+d)``.

Published values:
* metafor test file tests/testthat/test_misc_metan_vs_rma.uni_with_dat.bcg.r
  (compared with Stata ``metan``): fixed effect -0.4303 (CI -0.5097, -0.3509),
  Q = 152.2330; DL: -0.7141 (CI -1.0644, -0.3638), tau2 = 0.3088, I2 = 92.1173%.
* metafor ``rma()`` default (REML) output for the same data, as quoted in the
  metafor documentation/workshops: tau2 = 0.3132, estimate -0.7145, SE 0.1798,
  CI -1.0669 to -0.3622, I2 = 92.22%.
* PM: no published value found; cross-checked against statsmodels
  ``combine_effects(method_re="iterated")`` (Paule-Mandel).
"""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from poem_registry.stats import (
    freeman_tukey,
    freeman_tukey_inverse,
    pool_estimates,
    pool_proportions,
    tau2_estimate,
)

# tpos, tneg, cpos, cneg (metafor dat.bcg, trials 1-13)
BCG = [
    (4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619),
    (33, 5036, 47, 5761), (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892),
    (29, 7470, 45, 7232), (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338),
    (27, 16886, 29, 17825),
]  # fmt: skip


@pytest.fixture(scope="module")
def bcg():
    a, b, c, d = (np.array(col, dtype=float) for col in zip(*BCG, strict=True))
    yi = np.log(a / (a + b)) - np.log(c / (c + d))
    vi = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
    return yi, vi


def test_bcg_fixed_effect(bcg):
    r = pool_estimates(*bcg, model="fixed")
    assert r.estimate == pytest.approx(-0.4303, abs=5e-5)
    assert r.ci_low == pytest.approx(-0.5097, abs=5e-5)
    assert r.ci_high == pytest.approx(-0.3509, abs=5e-5)
    assert r.q == pytest.approx(152.2330, abs=5e-4)
    assert r.q_df == 12 and r.k == 13
    assert r.pi_low is None and r.tau2 == 0


def test_bcg_dersimonian_laird(bcg):
    r = pool_estimates(*bcg, model="random", tau2="DL")
    assert r.estimate == pytest.approx(-0.7141, abs=5e-5)
    assert r.ci_low == pytest.approx(-1.0644, abs=5e-5)
    assert r.ci_high == pytest.approx(-0.3638, abs=5e-5)
    assert r.tau2 == pytest.approx(0.3088, abs=5e-5)
    assert r.i2 == pytest.approx(92.1173, abs=5e-4)
    assert r.q == pytest.approx(152.23, abs=5e-3)
    assert r.tau2_dl == r.tau2


def test_bcg_reml(bcg):
    r = pool_estimates(*bcg, model="random", tau2="REML")
    assert r.tau2 == pytest.approx(0.3132, abs=5e-5)
    assert r.estimate == pytest.approx(-0.7145, abs=5e-5)
    assert r.se == pytest.approx(0.1798, abs=5e-5)
    assert r.ci_low == pytest.approx(-1.0669, abs=5e-5)
    assert r.ci_high == pytest.approx(-0.3622, abs=5e-5)
    assert r.i2 == pytest.approx(92.22, abs=5e-3)
    assert r.tau2_dl == pytest.approx(0.3088, abs=5e-5)  # DL always reported
    # Riley/Higgins prediction interval: t with k - 2 = 11 df (hand formula)
    half = stats.t.ppf(0.975, 11) * math.sqrt(r.tau2 + r.se**2)
    assert r.pi_low == pytest.approx(r.estimate - half, rel=1e-12)
    assert r.pi_high == pytest.approx(r.estimate + half, rel=1e-12)


def test_bcg_paule_mandel_matches_statsmodels(bcg):
    r = pool_estimates(*bcg, tau2="PM")
    ce = combine_effects(*bcg, method_re="iterated")
    assert r.tau2 == pytest.approx(ce.tau2, rel=1e-5)
    assert r.estimate == pytest.approx(ce.mean_effect_re, rel=1e-5)
    # defining equation: generalised Q equals k - 1
    w = 1 / (bcg[1] + r.tau2)
    mu = np.sum(w * bcg[0]) / np.sum(w)
    assert np.sum(w * (bcg[0] - mu) ** 2) == pytest.approx(12, rel=1e-8)


def test_hartung_knapp_and_weights(bcg):
    r = pool_estimates(*bcg, tau2="REML", hartung_knapp=True)
    assert r.ci_method == "hartung_knapp"
    w = 1 / (bcg[1] + r.tau2)
    q = np.sum(w * (bcg[0] - r.estimate) ** 2) / 12
    half = stats.t.ppf(0.975, 12) * math.sqrt(q / np.sum(w))
    assert r.ci_high - r.estimate == pytest.approx(half, rel=1e-10)
    assert sum(r.weights) == pytest.approx(1.0)


def test_homogeneous_inputs_give_zero_tau2():
    y = [0.1, 0.1, 0.1]
    v = [0.01, 0.02, 0.03]
    for m in ("DL", "REML", "PM"):
        assert tau2_estimate(y, v, m) == 0.0
    r = pool_estimates(y, v)
    assert r.i2 == 0.0 and r.estimate == pytest.approx(0.1)


def test_single_study_and_errors():
    r = pool_estimates([0.5], [0.04])
    assert r.estimate == 0.5 and r.pi_low is None and r.tau2 == 0.0
    with pytest.raises(ValueError):
        pool_estimates([0.1, 0.2], [0.1])
    with pytest.raises(ValueError):
        pool_estimates([0.1, 0.2], [0.1, 0.0])
    with pytest.raises(ValueError):
        pool_estimates([0.1, 0.2], [0.1, 0.1], tau2="SJ")


def test_pool_proportions_logit_matches_hand_computation():
    events, totals = [12, 0, 30, 25], [40, 25, 60, 25]
    r = pool_proportions(events, totals, transform="logit", tau2="DL")
    assert r.continuity_corrected == (1, 3)
    x = np.array([12, 0.5, 30, 25.5])
    n = np.array([40, 26, 60, 26])
    y = np.log(x / (n - x))
    v = 1 / x + 1 / (n - x)
    ref = pool_estimates(y, v, tau2="DL")
    assert r.estimate == pytest.approx(1 / (1 + math.exp(-ref.estimate)))
    assert r.ci_low == pytest.approx(1 / (1 + math.exp(-ref.ci_low)))
    assert r.tau2 == pytest.approx(ref.tau2)
    assert r.transform == "logit" and r.total_events == 67 and r.total_n == 150


def test_pool_proportions_arcsine_and_raw_no_correction_needed():
    events, totals = [3, 0, 10], [20, 15, 30]
    a = pool_proportions(events, totals, transform="arcsine", model="fixed")
    y = np.arcsin(np.sqrt(np.array(events) / np.array(totals)))
    w = 4 * np.array(totals, dtype=float)
    assert a.estimate == pytest.approx(math.sin(np.sum(w * y) / np.sum(w)) ** 2)
    assert a.continuity_corrected == ()
    raw = pool_proportions(events, totals, transform="raw", model="fixed")
    assert raw.continuity_corrected == (1,)
    assert 0 <= raw.ci_low <= raw.estimate <= raw.ci_high <= 1


def test_freeman_tukey_pft_scaling_and_miller_inverse():
    # metafor "PFT": half of the double-arcsine sum, v = 1/(4n + 2)
    x, n = 3, 47
    t = freeman_tukey(x, n)
    assert t == pytest.approx(0.5 * (math.asin(math.sqrt(3 / 48)) + math.asin(math.sqrt(4 / 48))))
    for xi in (0, 1, 5, 46, 47):
        assert float(freeman_tukey_inverse(freeman_tukey(xi, n), n)) == pytest.approx(xi / n, abs=1e-12)
    r = pool_proportions([3, 8, 0], [47, 60, 20], transform="freeman_tukey", tau2="DL")
    assert r.back_transform_n == pytest.approx(3 / (1 / 47 + 1 / 60 + 1 / 20))
    assert r.continuity_corrected == ()
    assert r.estimate == pytest.approx(
        float(freeman_tukey_inverse(r.transformed.estimate, r.back_transform_n))
    )


def test_pool_proportions_validation():
    with pytest.raises(ValueError):
        pool_proportions([5], [0])
    with pytest.raises(ValueError):
        pool_proportions([6], [5])
    with pytest.raises(ValueError):
        pool_proportions([1], [5], transform="probit")
