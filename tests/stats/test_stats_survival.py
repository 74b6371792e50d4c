"""Kaplan-Meier against a published example.

R ``survival`` package, data ``aml`` (Miller RG. Survival Analysis, Wiley 1997),
group x = "Maintained": times 9, 13, 13+, 18, 23, 28+, 31, 34, 45+, 48, 161+.
``summary(survfit(Surv(time, status) ~ x, data = aml))`` prints (log CI, 95%):

    time n.risk n.event survival std.err lower 95% CI upper 95% CI
       9     11       1    0.909  0.0867       0.7541        1.000
      13     10       1    0.818  0.1163       0.6192        1.000
      18      8       1    0.716  0.1397       0.4884        1.000
      23      7       1    0.614  0.1526       0.3769        0.999
      31      5       1    0.491  0.1642       0.2549        0.946
      34      4       1    0.368  0.1627       0.1549        0.875
      48      2       1    0.184  0.1535       0.0359        0.944

(found verbatim in several public R tutorials' rendered output). Greenwood is also
re-derived by hand and cross-checked against statsmodels ``SurvfuncRight``.
"""

import math

import numpy as np
import pytest
from statsmodels.duration.survfunc import SurvfuncRight

from poem_registry.stats import kaplan_meier, survival_at

TIMES = [9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161]
EVENTS = [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0]
PUBLISHED = [  # time, n.risk, survival, std.err, lower, upper
    (9, 11, 0.909, 0.0867, 0.7541, 1.000),
    (13, 10, 0.818, 0.1163, 0.6192, 1.000),
    (18, 8, 0.716, 0.1397, 0.4884, 1.000),
    (23, 7, 0.614, 0.1526, 0.3769, 0.999),
    (31, 5, 0.491, 0.1642, 0.2549, 0.946),
    (34, 4, 0.368, 0.1627, 0.1549, 0.875),
    (48, 2, 0.184, 0.1535, 0.0359, 0.944),
]


def test_aml_maintained_matches_r_survfit():
    km = kaplan_meier(TIMES, EVENTS, confidence=0.95, ci="log")
    for t, n_risk, s, se, lo, hi in PUBLISHED:
        i = int(np.flatnonzero(km.time == t)[0])
        assert km.at_risk[i] == n_risk
        assert km.survival[i] == pytest.approx(s, abs=5e-4)
        assert km.greenwood_se[i] == pytest.approx(se, abs=5e-5)
        assert km.ci_low[i] == pytest.approx(lo, abs=5e-5)
        assert km.ci_high[i] == pytest.approx(hi, abs=5e-4)


def test_greenwood_by_hand_and_statsmodels():
    km = kaplan_meier(TIMES, EVENTS)
    # at t = 18: S = (10/11)(9/10)(7/8); Var = S^2 [1/(11*10) + 1/(10*9) + 1/(8*7)]
    s = (10 / 11) * (9 / 10) * (7 / 8)
    se = s * math.sqrt(1 / 110 + 1 / 90 + 1 / 56)
    i = int(np.flatnonzero(km.time == 18)[0])
    assert km.survival[i] == pytest.approx(s, rel=1e-12)
    assert km.greenwood_se[i] == pytest.approx(se, rel=1e-12)
    sf = SurvfuncRight(np.array(TIMES, float), np.array(EVENTS, float))
    ev = km.events > 0
    np.testing.assert_allclose(km.survival[ev], sf.surv_prob, rtol=1e-12)
    np.testing.assert_allclose(km.greenwood_se[ev], sf.surv_prob_se, rtol=1e-10)


def test_other_interval_types():
    km_ll = kaplan_meier(TIMES, EVENTS, ci="log-log")
    km_pl = kaplan_meier(TIMES, EVENTS, ci="plain")
    i = int(np.flatnonzero(km_ll.time == 31)[0])
    s = km_ll.survival[i]
    se_log = km_ll.greenwood_se[i] / s
    a = 1.959963984540054 * se_log / abs(math.log(s))
    assert km_ll.ci_low[i] == pytest.approx(s ** math.exp(a))
    assert km_ll.ci_high[i] == pytest.approx(s ** math.exp(-a))
    assert km_pl.ci_low[i] == pytest.approx(s - 1.959963984540054 * km_pl.greenwood_se[i])
    assert np.all(
        (km_ll.ci_low[~np.isnan(km_ll.ci_low)] >= 0) & (km_ll.ci_high[~np.isnan(km_ll.ci_high)] <= 1)
    )


def test_survival_at_step_function():
    km = kaplan_meier(TIMES, EVENTS)
    pts = survival_at(km, [0, 8.9, 9, 12, 48, 100, 161, 161.5])
    assert pts[0].survival == 1.0 and pts[0].ci_low == 1.0
    assert pts[1].survival == 1.0
    assert pts[2].survival == pytest.approx(10 / 11)
    assert pts[3].survival == pytest.approx(10 / 11)
    assert pts[4].survival == pytest.approx(0.18409, abs=1e-5)
    assert pts[5].survival == pts[4].survival == pts[6].survival  # carried forward
    assert pts[7].survival is None and pts[7].ci_low is None  # past last observation
    assert pts[2].as_dict()["time"] == 9.0


def test_all_events_reach_zero_and_validation():
    km = kaplan_meier([1, 2, 3], [1, 1, 1])
    assert km.survival[-1] == 0.0 and math.isnan(km.ci_low[-1])
    assert km.rows()[0]["at_risk"] == 3
    with pytest.raises(ValueError):
        kaplan_meier([1, 2], [1, 2])
    with pytest.raises(ValueError):
        kaplan_meier([1, -2], [1, 0])
    with pytest.raises(ValueError):
        kaplan_meier([1, 2], [1, 0], ci="arcsine")
