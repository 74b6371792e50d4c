"""Binomial intervals against published values.

Newcombe RG. Two-sided confidence intervals for the single proportion: comparison
of seven methods. Stat Med 1998;17:857-872, Table I (95% intervals, 4 decimals):
method 3 = Wilson score, 4 = Wilson score with continuity correction,
5 = Clopper-Pearson exact, 6 = exact mid-p. The 81/263 Wilson row (0.2553-0.3662)
was also seen quoted in a public test file; Wilson and Clopper-Pearson are
cross-checked against statsmodels ``proportion_confint``.
"""

import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from poem_registry.stats import (
    choose_interval_method,
    clopper_pearson_interval,
    jeffreys_interval,
    mid_p_interval,
    proportion_interval,
    wilson_interval,
)

# (x, n): {method: (lower, upper)} -- Newcombe 1998 Table I
NEWCOMBE_TABLE_I = {
    (81, 263): {
        "wilson": (0.2553, 0.3662),
        "wilson_cc": (0.2535, 0.3682),
        "clopper_pearson": (0.2527, 0.3676),
        "mid_p": (0.2544, 0.3658),
    },
    (15, 148): {
        "wilson": (0.0624, 0.1605),
        "wilson_cc": (0.0598, 0.1644),
        "clopper_pearson": (0.0578, 0.1617),
        "mid_p": (0.0601, 0.1581),
    },
    (0, 20): {
        "wilson": (0.0, 0.1611),
        "wilson_cc": (0.0, 0.2005),
        "clopper_pearson": (0.0, 0.1684),
        "mid_p": (0.0, 0.1391),
    },
    (1, 29): {
        "wilson": (0.0061, 0.1718),
        "wilson_cc": (0.0018, 0.1963),
        "clopper_pearson": (0.0009, 0.1776),
        "mid_p": (0.0017, 0.1585),
    },
}

CASES = [(xn, m, lim) for xn, methods in NEWCOMBE_TABLE_I.items() for m, lim in methods.items()]


@pytest.mark.parametrize(("xn", "method", "published"), CASES)
def test_newcombe_1998_table_i(xn, method, published):
    x, n = xn
    ci = proportion_interval(x, n, method=method)
    # published to 4 decimals: allow half a unit in the last place
    assert ci.lower == pytest.approx(published[0], abs=5.1e-5)
    assert ci.upper == pytest.approx(published[1], abs=5.1e-5)


@pytest.mark.parametrize(("x", "n"), [*NEWCOMBE_TABLE_I, (3, 3), (7, 50), (49, 50)])
@pytest.mark.parametrize("conf", [0.90, 0.95, 0.998])
def test_cross_check_statsmodels(x, n, conf):
    for ours, sm_method in (
        (wilson_interval(x, n, conf), "wilson"),
        (clopper_pearson_interval(x, n, conf), "beta"),
        (jeffreys_interval(x, n, conf), "jeffreys"),
    ):
        lo, hi = proportion_confint(x, n, alpha=1 - conf, method=sm_method)
        if x == 0:
            lo = 0.0
        if x == n:
            hi = 1.0
        assert ours.lower == pytest.approx(lo, abs=1e-9)
        assert ours.upper == pytest.approx(hi, abs=1e-9)


def test_mid_p_solves_its_defining_equations():
    from scipy import stats

    x, n = 7, 40
    ci = mid_p_interval(x, n, 0.95)
    assert stats.binom.sf(x, n, ci.lower) + 0.5 * stats.binom.pmf(x, n, ci.lower) == pytest.approx(
        0.025, abs=1e-10
    )
    assert stats.binom.cdf(x - 1, n, ci.upper) + 0.5 * stats.binom.pmf(x, n, ci.upper) == pytest.approx(
        0.025, abs=1e-10
    )


@pytest.mark.parametrize("method", ["wilson", "wilson_cc", "clopper_pearson", "mid_p", "jeffreys"])
@pytest.mark.parametrize("conf", [0.95, 0.998])
def test_edges(method, conf):
    zero = proportion_interval(0, 12, method, conf)
    full = proportion_interval(12, 12, method, conf)
    assert zero.lower == 0.0 and 0 < zero.upper < 1
    assert full.upper == 1.0 and 0 < full.lower < 1
    assert zero.estimate == 0.0 and full.estimate == 1.0


def test_clopper_pearson_closed_form_at_edges():
    # x = 0: upper = 1 - (alpha/2)^(1/n); x = n: lower = (alpha/2)^(1/n)
    n = 20
    assert clopper_pearson_interval(0, n).upper == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-12)
    assert clopper_pearson_interval(n, n).lower == pytest.approx(0.025 ** (1 / n), rel=1e-12)


def test_zero_trials_gives_nan_interval():
    for method in ("wilson", "clopper_pearson", "mid_p", "jeffreys"):
        ci = proportion_interval(0, 0, method)
        assert math.isnan(ci.lower) and math.isnan(ci.upper) and math.isnan(ci.estimate)


@pytest.mark.parametrize(("x", "n"), [(-1, 10), (11, 10), (1, -1), (float("nan"), 3)])
def test_invalid_counts(x, n):
    with pytest.raises(ValueError):
        wilson_interval(x, n)


def test_exact_methods_need_integers_and_bad_confidence_rejected():
    with pytest.raises(ValueError, match="integer"):
        clopper_pearson_interval(1.5, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=1.0)
    with pytest.raises(ValueError, match="unknown interval method"):
        proportion_interval(1, 10, method="wald")


def test_choose_interval_method_rule():
    assert choose_interval_method(5, 100) == "clopper_pearson"
    assert choose_interval_method(6, 100) == "wilson"
    assert choose_interval_method(95, 100) == "clopper_pearson"
    assert choose_interval_method(94, 100) == "wilson"
    assert choose_interval_method(3, 100, rare_event_max=2) == "wilson"
    assert proportion_interval(2, 50, "auto").method == "clopper_pearson"
    assert proportion_interval(20, 50, "auto").method == "wilson"


def test_result_is_frozen_and_serialisable():
    ci = wilson_interval(81, 263)
    lo, hi = ci
    assert (lo, hi) == (ci.lower, ci.upper)
    d = ci.as_dict()
    assert d["method"] == "wilson" and d["trials"] == 263
    with pytest.raises(AttributeError):
        ci.lower = 0  # type: ignore[misc]
