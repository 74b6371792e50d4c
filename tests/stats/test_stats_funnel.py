"""Funnel limits against published reference data.

/work/shared/reference-data/phe-funnel-limits-proportions/: limits and outlier flags
published in the test data of the UKHSA/PHE ``PHEindicatormethods`` R package
(``calculate_funnel_limits`` / ``assign_funnel_significance``; repository
ukhsa-collaboration/PHEindicatormethods at commit 093fd288, files
tests/testthat/testdata_funnel_prop_inputs.csv and ..._outputs.csv), 303 areas.
Those limits are the normal approximation around the pooled target, i.e. our
``method="normal"``; printed to 6 decimals in percent.

Exact binomial limits (Spiegelhalter 2005, Appendix) have no published numeric
example that we could find; they are checked against a hand computation of the
spec section 8.1 formula and against their defining properties.
"""

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from poem_registry.stats import (
    classify_against_limits,
    estimate_overdispersion,
    exact_binomial_limit,
    funnel_limits,
    level_label,
)

REF = Path("/work/shared/reference-data/phe-funnel-limits-proportions")
needs_ref = pytest.mark.skipif(not REF.exists(), reason="shared reference data not mounted")

PHE_LABELS = {
    "High (0.001)": "above_99_8",
    "Low (0.001)": "below_99_8",
    "High (0.025)": "above_95",
    "Low (0.025)": "below_95",
    "Not significant": "within",
}


def _areas():
    rows = list(csv.DictReader((REF / "input_areas.csv").open()))
    x = np.array([float(r["numerator"]) for r in rows])
    n = np.array([float(r["denominator"]) for r in rows])
    return rows, x, n


@needs_ref
def test_phe_baseline_and_limits():
    expected = json.loads((REF / "expected.json").read_text())
    published_baseline = expected["checks"][0]["published"]["baseline_pct"]
    _, x, n = _areas()
    target = x.sum() / n.sum()
    assert 100 * target == pytest.approx(published_baseline, abs=5e-7)
    rows = list(csv.DictReader((REF / "expected_limits.csv").open()))
    pop = np.array([float(r["population"]) for r in rows])
    lim = funnel_limits(target, pop, levels=(0.95, 0.998), method="normal")
    for key, got in (
        ("lower_95_pct", lim.lower_for(0.95)),
        ("upper_95_pct", lim.upper_for(0.95)),
        ("lower_99_8_pct", lim.lower_for(0.998)),
        ("upper_99_8_pct", lim.upper_for(0.998)),
    ):
        published = np.array([float(r[key]) for r in rows])
        # published values are rounded to 6 decimals (percent)
        np.testing.assert_allclose(100 * got, published, atol=5.01e-7, rtol=0, err_msg=key)
    # "wilson" is the same (inverted Wilson score) limit
    np.testing.assert_allclose(funnel_limits(target, pop, method="wilson").lower, lim.lower)


@needs_ref
def test_phe_area_classification():
    rows, x, n = _areas()
    labels = classify_against_limits(x, n, x.sum() / n.sum(), method="normal")
    assert labels == [PHE_LABELS[r["significance"]] for r in rows]
    assert Counter(labels) == {
        "above_99_8": 168,
        "below_99_8": 92,
        "within": 32,
        "above_95": 10,
        "below_95": 1,
    }


def test_exact_limit_hand_computation():
    # n = 20, p0 = 0.1, p = 0.975: F(4) = 0.95683 < p <= F(5) = 0.98875 -> r_p = 5
    f4, f5 = stats.binom.cdf([4, 5], 20, 0.1)
    alpha = (f5 - 0.975) / (f5 - f4)
    assert exact_binomial_limit(0.975, 20, 0.1)[0] == pytest.approx((5 - alpha) / 20, rel=1e-12)
    assert exact_binomial_limit(0.975, 20, 0.1)[0] == pytest.approx(0.228468, abs=1e-6)


def test_exact_limits_are_vectorised_and_converge_to_normal():
    n = np.array([10, 100, 1000, 100000])
    lim = funnel_limits(0.2, n, method="exact")
    assert lim.lower.shape == (2, 4)
    normal = funnel_limits(0.2, n, method="normal")
    # difference is O(1/n)
    assert abs(lim.upper[0, -1] - normal.upper[0, -1]) < 2e-5
    assert np.all(lim.lower <= 0.2) and np.all(lim.upper >= 0.2)
    assert np.all(lim.lower[1] <= lim.lower[0]) and np.all(lim.upper[1] >= lim.upper[0])


def test_exact_limits_reflection_identity():
    """Spiegelhalter's interpolation spreads the mass at r over (r-1, r], so the
    exact limits reflect with a shift of 1/n: L_{1-p}(1-p0) = (n-1)/n - L_p(p0)
    wherever neither limit is truncated (not 1 - L_p(p0))."""
    n = np.arange(1, 200)
    for p in (0.001, 0.025):
        lo = exact_binomial_limit(p, n, 0.13)
        hi = exact_binomial_limit(1 - p, n, 0.87)
        ok = lo > 0
        np.testing.assert_allclose(hi[ok], (n[ok] - 1) / n[ok] - lo[ok], atol=1e-12)


def test_exact_limits_need_integer_trials():
    with pytest.raises(ValueError, match="integer"):
        funnel_limits(0.1, [10.5], method="exact")
    with pytest.raises(ValueError):
        funnel_limits(1.2, [10])


def test_overdispersion_matches_funnelplotr_formulas():
    rng = np.random.default_rng(7)
    n = rng.integers(20, 200, size=15).astype(float)
    p = np.clip(rng.normal(0.15, 0.05, size=15), 0.01, 0.6)
    x = np.round(p * n)
    od = estimate_overdispersion(x, n, trim=0.1)
    target = x.sum() / n.sum()
    z = (np.arcsin(np.sqrt(x / n)) - math.asin(math.sqrt(target))) * 2 * np.sqrt(n)
    lo, hi = np.quantile(z, [0.1, 0.9])  # R quantile type 7
    zw = np.clip(z, lo, hi)
    phi = np.mean(zw**2)
    w = 4 * n
    tau2 = max(0.0, (15 * phi - 14) / (w.sum() - (w**2).sum() / w.sum())) if 15 * phi >= 14 else 0.0
    assert (
        od.phi == pytest.approx(phi) and od.tau2 == pytest.approx(tau2) and od.target == pytest.approx(target)
    )
    assert od.phi_p == pytest.approx(stats.chi2.sf(15 * phi, 14))


def test_overdispersion_adjusted_limits():
    x = np.array([5, 30, 8, 60, 12, 2, 40, 25, 9, 70, 15, 33], dtype=float)
    n = np.array([50, 120, 60, 200, 80, 40, 150, 90, 70, 210, 100, 110], dtype=float)
    target = x.sum() / n.sum()
    od = estimate_overdispersion(x, n, target)
    assert od.phi > 1 and od.tau2 > 0
    grid = np.array([20, 50, 100, 500])
    base = funnel_limits(target, grid, method="normal")
    mult = funnel_limits(target, grid, method="normal", overdispersion="multiplicative", dispersion=od)
    np.testing.assert_allclose(
        mult.upper[0],
        np.minimum(1, target + stats.norm.ppf(0.975) * np.sqrt(od.phi * target * (1 - target) / grid)),
        rtol=1e-12,
    )
    add = funnel_limits(target, grid, overdispersion="additive", dispersion=od)
    centre = math.asin(math.sqrt(target))
    np.testing.assert_allclose(
        add.lower[1],
        np.sin(centre - stats.norm.ppf(0.999) * np.sqrt(1 / (4 * grid) + od.tau2)) ** 2,
        rtol=1e-12,
    )
    assert np.all(add.upper >= base.upper - 1e-12)
    # additive limits do not shrink to the target as n grows
    assert add.upper[0, -1] - add.lower[0, -1] > 2 * 1.95 * math.sqrt(od.tau2) * math.cos(centre) * math.sin(
        centre
    )
    with pytest.raises(ValueError, match="dispersion"):
        funnel_limits(target, grid, overdispersion="additive")


def test_labels_and_as_dict():
    assert level_label(0.95) == "95" and level_label(0.998) == "99_8" and level_label(0.999) == "99_9"
    d = funnel_limits(0.1, [10, 20]).as_dict()
    assert set(d) >= {"lower_95", "upper_95", "lower_99_8", "upper_99_8", "trials"}
    labels = classify_against_limits([0, 9, 1], [10, 10, 10], 0.1)
    assert labels[1] == "above_99_8" and labels[2] == "within"


def test_exact_classification_does_not_flag_a_common_full_score_at_small_n():
    """12/12 at p0 = 0.926 has P(R = 12) = 0.40: within the limits, although 1.0 > the interpolated limit."""
    from scipy import stats as sps

    from poem_registry.stats import classify_against_limits, funnel_limits

    assert sps.binom.pmf(12, 12, 0.926) > 0.39
    assert funnel_limits(0.926, [12], method="exact").upper.max() < 1.0
    assert classify_against_limits([12], [12], 0.926, method="exact") == ["within"]
    # a genuinely extreme site still is flagged: 0/40 when 93% is expected
    assert classify_against_limits([0], [40], 0.93, method="exact") == ["below_99_8"]
