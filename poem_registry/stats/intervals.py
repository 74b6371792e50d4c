"""Confidence intervals for a single binomial proportion.

Methods (numbering as in Newcombe 1998):

* Wilson score interval, with or without continuity correction
  (Wilson EB. J Am Stat Assoc 1927;22:209-212; Newcombe RG. Two-sided confidence
  intervals for the single proportion: comparison of seven methods. Stat Med
  1998;17:857-872, methods 3 and 4).
* Clopper-Pearson "exact" interval (Clopper CJ, Pearson ES. Biometrika
  1934;26:404-413; Newcombe 1998 method 5), computed from beta quantiles.
* Exact mid-p interval (Lancaster 1961; Newcombe 1998 method 6), solved with
  :func:`scipy.optimize.brentq`.
* Jeffreys interval (Brown LD, Cai TT, DasGupta A. Stat Sci 2001;16:101-133):
  equal-tailed Beta(x + 1/2, n - x + 1/2) quantiles, lower = 0 at x = 0 and upper = 1
  at x = n.

Conventions shared by every function here:

* ``trials == 0`` returns an interval of ``(nan, nan)`` with ``estimate = nan``
  (no information; not an error), so that empty cells flow through a report.
* Negative counts, ``successes > trials`` and (for the exact methods) non-integer
  counts raise :class:`ValueError`.
* At ``x = 0`` the lower limit is exactly 0 and at ``x = n`` the upper limit is
  exactly 1 for every method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, stats

from ._common import AsDictMixin, check_confidence, z_for

__all__ = [
    "ProportionInterval",
    "choose_interval_method",
    "clopper_pearson_interval",
    "jeffreys_interval",
    "mid_p_interval",
    "proportion_interval",
    "wilson_interval",
]

IntervalMethod = Literal["wilson", "wilson_cc", "clopper_pearson", "mid_p", "jeffreys"]
_METHODS = ("wilson", "wilson_cc", "clopper_pearson", "mid_p", "jeffreys")


@dataclass(frozen=True)
class ProportionInterval(AsDictMixin):
    """A two-sided interval for a binomial proportion ``successes / trials``."""

    successes: float
    trials: float
    estimate: float
    lower: float
    upper: float
    confidence: float
    method: str

    def __iter__(self):  # allows ``lo, hi = interval`` unpacking of the bounds
        yield self.lower
        yield self.upper


def _validate(successes: float, trials: float, *, integer: bool) -> tuple[float, float]:
    try:
        x = float(successes)
        n = float(trials)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"successes and trials must be numbers, got {successes!r}, {trials!r}") from exc
    if math.isnan(x) or math.isnan(n) or math.isinf(x) or math.isinf(n):
        raise ValueError(f"successes and trials must be finite, got {successes!r}, {trials!r}")
    if n < 0:
        raise ValueError(f"trials must be >= 0, got {trials!r}")
    if x < 0:
        raise ValueError(f"successes must be >= 0, got {successes!r}")
    if x > n:
        raise ValueError(f"successes ({successes!r}) cannot exceed trials ({trials!r})")
    if integer and (x != round(x) or n != round(n)):
        raise ValueError(f"this method needs integer counts, got successes={successes!r}, trials={trials!r}")
    return x, n


def _empty(x: float, n: float, confidence: float, method: str) -> ProportionInterval:
    return ProportionInterval(x, n, math.nan, math.nan, math.nan, confidence, method)


def _clip(v: float) -> float:
    return min(1.0, max(0.0, v))


def wilson_interval(
    successes: float, trials: float, confidence: float = 0.95, continuity: bool = False
) -> ProportionInterval:
    """Wilson score interval (Newcombe 1998 method 3; method 4 with ``continuity=True``).

    Without correction::

        (2np + z^2 -/+ z sqrt(z^2 + 4npq)) / (2(n + z^2))

    With Yates-type continuity correction (Newcombe 1998, eq. for method 4)::

        L = (2np + z^2 - 1 - z sqrt(z^2 - 2 - 1/n + 4p(nq + 1))) / (2(n + z^2))
        U = (2np + z^2 + 1 + z sqrt(z^2 + 2 - 1/n + 4p(nq - 1))) / (2(n + z^2))

    with L = 0 when x = 0 and U = 1 when x = n. Non-integer counts are accepted
    (weighted counts). ``trials == 0`` gives ``(nan, nan)``.

    Reference: Wilson EB (1927) J Am Stat Assoc 22:209-212; Newcombe RG (1998)
    Stat Med 17:857-872.
    """
    conf = check_confidence(confidence)
    method = "wilson_cc" if continuity else "wilson"
    x, n = _validate(successes, trials, integer=False)
    if n == 0:
        return _empty(x, n, conf, method)
    z = z_for(conf)
    p = x / n
    q = 1.0 - p
    denom = 2.0 * (n + z * z)
    if not continuity:
        root = z * math.sqrt(z * z + 4.0 * n * p * q)
        lower = (2.0 * n * p + z * z - root) / denom
        upper = (2.0 * n * p + z * z + root) / denom
    else:
        if x == 0:
            lower = 0.0
        else:
            lower = (
                2 * n * p + z * z - 1 - z * math.sqrt(max(0.0, z * z - 2 - 1 / n + 4 * p * (n * q + 1)))
            ) / denom
        if x == n:
            upper = 1.0
        else:
            upper = (
                2 * n * p + z * z + 1 + z * math.sqrt(max(0.0, z * z + 2 - 1 / n + 4 * p * (n * q - 1)))
            ) / denom
    lower, upper = _clip(lower), _clip(upper)
    if x == 0:
        lower = 0.0
    if x == n:
        upper = 1.0
    return ProportionInterval(x, n, p, lower, upper, conf, method)


def clopper_pearson_interval(successes: int, trials: int, confidence: float = 0.95) -> ProportionInterval:
    """Clopper-Pearson exact interval from beta quantiles (Newcombe 1998 method 5).

    ``lower = Beta^-1(alpha/2; x, n - x + 1)`` (0 when x = 0) and
    ``upper = Beta^-1(1 - alpha/2; x + 1, n - x)`` (1 when x = n). Same numbers as
    ``statsmodels.stats.proportion.proportion_confint(method="beta")``.
    Coverage is at least the nominal level (conservative).

    Reference: Clopper CJ, Pearson ES (1934) Biometrika 26:404-413.
    """
    conf = check_confidence(confidence)
    x, n = _validate(successes, trials, integer=True)
    if n == 0:
        return _empty(x, n, conf, "clopper_pearson")
    alpha = 1.0 - conf
    lower = 0.0 if x == 0 else float(stats.beta.ppf(alpha / 2.0, x, n - x + 1))
    upper = 1.0 if x == n else float(stats.beta.ppf(1.0 - alpha / 2.0, x + 1, n - x))
    return ProportionInterval(x, n, x / n, lower, upper, conf, "clopper_pearson")


def mid_p_interval(successes: int, trials: int, confidence: float = 0.95) -> ProportionInterval:
    """Exact mid-p interval (Newcombe 1998 method 6).

    The lower limit solves ``P(X > x) + P(X = x)/2 = alpha/2`` and the upper limit
    ``P(X < x) + P(X = x)/2 = alpha/2`` for ``X ~ Bin(n, p)``; both are found with
    Brent's method (:func:`scipy.optimize.brentq`, xtol 1e-14). Lower = 0 at x = 0 and
    upper = 1 at x = n.

    Reference: Lancaster HO (1961) J Am Stat Assoc 56:223-234; Newcombe RG (1998)
    Stat Med 17:857-872.
    """
    conf = check_confidence(confidence)
    x, n = _validate(successes, trials, integer=True)
    if n == 0:
        return _empty(x, n, conf, "mid_p")
    xi, ni = int(x), int(n)
    half_alpha = (1.0 - conf) / 2.0

    def upper_tail(p: float) -> float:  # P(X > x) + 0.5 P(X = x), increasing in p
        return float(stats.binom.sf(xi, ni, p) + 0.5 * stats.binom.pmf(xi, ni, p))

    def lower_tail(p: float) -> float:  # P(X < x) + 0.5 P(X = x), decreasing in p
        return float(stats.binom.cdf(xi - 1, ni, p) + 0.5 * stats.binom.pmf(xi, ni, p))

    lower = 0.0 if xi == 0 else optimize.brentq(lambda p: upper_tail(p) - half_alpha, 0.0, 1.0, xtol=1e-14)
    upper = 1.0 if xi == ni else optimize.brentq(lambda p: lower_tail(p) - half_alpha, 0.0, 1.0, xtol=1e-14)
    return ProportionInterval(x, n, x / n, float(lower), float(upper), conf, "mid_p")


def jeffreys_interval(successes: float, trials: float, confidence: float = 0.95) -> ProportionInterval:
    """Equal-tailed Jeffreys interval: Beta(x + 1/2, n - x + 1/2) quantiles.

    Lower = 0 at x = 0 and upper = 1 at x = n (Brown, Cai & DasGupta 2001, Stat Sci
    16:101-133, section 4.1.2). Same as statsmodels ``method="jeffreys"``.
    """
    conf = check_confidence(confidence)
    x, n = _validate(successes, trials, integer=False)
    if n == 0:
        return _empty(x, n, conf, "jeffreys")
    alpha = 1.0 - conf
    lower = 0.0 if x == 0 else float(stats.beta.ppf(alpha / 2.0, x + 0.5, n - x + 0.5))
    upper = 1.0 if x == n else float(stats.beta.ppf(1.0 - alpha / 2.0, x + 0.5, n - x + 0.5))
    return ProportionInterval(x, n, x / n, lower, upper, conf, "jeffreys")


def choose_interval_method(successes: int, trials: int, rare_event_max: int = 5) -> str:
    """Registry rule of clinical spec section 8.2.

    Returns ``"clopper_pearson"`` (exact) when ``x <= rare_event_max`` or
    ``n - x <= rare_event_max`` (rare events or near-certain outcomes), otherwise
    ``"wilson"`` (the default for displayed site rates).
    """
    x, n = _validate(successes, trials, integer=False)
    if rare_event_max < 0:
        raise ValueError(f"rare_event_max must be >= 0, got {rare_event_max!r}")
    if x <= rare_event_max or n - x <= rare_event_max:
        return "clopper_pearson"
    return "wilson"


def proportion_interval(
    successes: float,
    trials: float,
    method: str = "wilson",
    confidence: float = 0.95,
    *,
    rare_event_max: int = 5,
) -> ProportionInterval:
    """Dispatch to one interval method.

    ``method`` is one of ``"wilson"``, ``"wilson_cc"`` (Wilson with continuity
    correction), ``"clopper_pearson"``, ``"mid_p"``, ``"jeffreys"`` or ``"auto"``
    (the spec section 8.2 rule, see :func:`choose_interval_method`, using
    ``rare_event_max``).
    """
    if method == "auto":
        method = choose_interval_method(successes, trials, rare_event_max)
    if method == "wilson":
        return wilson_interval(successes, trials, confidence)
    if method == "wilson_cc":
        return wilson_interval(successes, trials, confidence, continuity=True)
    if method == "clopper_pearson":
        return clopper_pearson_interval(successes, trials, confidence)
    if method == "mid_p":
        return mid_p_interval(successes, trials, confidence)
    if method == "jeffreys":
        return jeffreys_interval(successes, trials, confidence)
    raise ValueError(f"unknown interval method {method!r}; expected one of {(*_METHODS, 'auto')}")
