"""Kaplan-Meier estimation with Greenwood variance (clinical spec section 6.3).

References
----------
* Kaplan EL, Meier P. Nonparametric estimation from incomplete observations.
  J Am Stat Assoc 1958;53:457-481.
* Greenwood M. The natural duration of cancer. Reports on Public Health and Medical
  Subjects 33. HMSO, 1926 (variance).
* Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time Data, 2nd ed.
  Wiley 2002 (log-log interval); Therneau TM, R package ``survival`` ``survfit``
  (``conf.type = "log"`` default, "log-log", "plain").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._common import AsDictMixin, check_confidence, z_for

__all__ = ["KaplanMeier", "SurvivalPoint", "kaplan_meier", "survival_at"]

_CI_TYPES = ("log", "log-log", "plain")


@dataclass(frozen=True)
class KaplanMeier(AsDictMixin):
    """Kaplan-Meier table: one row per distinct observed time (events or censorings).

    ``survival[i]`` is S(t) just after ``time[i]``; ``greenwood_se`` is the standard
    error of S(t) (``S sqrt(sum d/(n(n-d)))``, as printed by R ``summary(survfit)``);
    ``ci_low``/``ci_high`` use ``ci`` and are NaN where undefined (S = 0, or before any
    event for log-log). ``last_time`` is the largest observed duration.
    """

    time: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    survival: np.ndarray
    greenwood_se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    confidence: float
    ci: str
    n: int
    last_time: float

    def rows(self) -> list[dict]:
        """The table as a list of row dicts."""
        keys = ("time", "at_risk", "events", "censored", "survival", "greenwood_se", "ci_low", "ci_high")
        return [{k: getattr(self, k)[i].item() for k in keys} for i in range(self.time.size)]


@dataclass(frozen=True)
class SurvivalPoint(AsDictMixin):
    """S(t) at a requested time; all values ``None`` past the last observation.

    ``at_risk`` is the number still under observation just after ``time``.
    """

    time: float
    survival: float | None
    ci_low: float | None
    ci_high: float | None
    greenwood_se: float | None
    at_risk: int | None


def _interval(s: np.ndarray, var_log: np.ndarray, z: float, ci: str) -> tuple[np.ndarray, np.ndarray]:
    """CI for S given Var(log S) = sum d/(n(n-d)) (Greenwood)."""
    lo = np.full(s.shape, np.nan)
    hi = np.full(s.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = s > 0
        se_log = np.sqrt(var_log)
        if ci == "log":
            lo[ok] = s[ok] * np.exp(-z * se_log[ok])
            hi[ok] = np.minimum(1.0, s[ok] * np.exp(z * se_log[ok]))
        elif ci == "plain":
            se = s * se_log
            lo[ok] = np.maximum(0.0, s[ok] - z * se[ok])
            hi[ok] = np.minimum(1.0, s[ok] + z * se[ok])
        else:  # log-log: S^exp(+/- z se(log S)/log S)
            ok = ok & (s < 1)
            log_s = np.log(s[ok])
            a = z * se_log[ok] / np.abs(log_s)
            lo[ok] = s[ok] ** np.exp(a)
            hi[ok] = s[ok] ** np.exp(-a)
    # before the first event S = 1 with zero variance: interval collapses to 1
    one = (s == 1) & (var_log == 0)
    lo[one] = 1.0
    hi[one] = 1.0
    return lo, hi


def kaplan_meier(
    durations: Sequence[float] | np.ndarray,
    events: Sequence[int] | np.ndarray,
    confidence: float = 0.95,
    ci: str = "log",
) -> KaplanMeier:
    """Kaplan-Meier estimator ``S(t) = prod_{t_i <= t} (1 - d_i/n_i)`` with Greenwood CI.

    ``events`` is 1 for an event (failure) and 0 for censoring; at tied times events
    are taken to precede censorings (censored subjects are at risk at their own time).
    Greenwood: ``Var(log S) = sum d_i/(n_i(n_i - d_i))``, ``SE(S) = S sqrt(.)``.
    ``ci``: ``"log"`` (R ``survfit`` default) ``S exp(+/- z SE(log S))`` truncated at 1;
    ``"log-log"`` ``S^exp(+/- z SE(log S)/|log S|)``; ``"plain"`` ``S +/- z SE(S)``
    truncated to [0, 1].
    """
    conf = check_confidence(confidence)
    if ci not in _CI_TYPES:
        raise ValueError(f"ci must be one of {_CI_TYPES}, got {ci!r}")
    t = np.asarray(durations, dtype=float).ravel()
    e = np.asarray(events, dtype=float).ravel()
    if t.shape != e.shape:
        raise ValueError("durations and events differ in length")
    if t.size == 0:
        raise ValueError("need at least one observation")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("durations must be finite and >= 0")
    if not np.all((e == 0) | (e == 1)):
        raise ValueError("events must be 0 (censored) or 1 (event)")
    times, which = np.unique(t, return_inverse=True)
    d = np.bincount(which, weights=e, minlength=times.size).astype(int)
    c = np.bincount(which, minlength=times.size) - d
    n_risk = t.size - np.r_[0, np.cumsum(d + c)[:-1]]  # still under observation at each time
    factor = 1.0 - d / n_risk
    s = np.cumprod(factor)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(d > 0, d / (n_risk * (n_risk - d)), 0.0)
    var_log = np.cumsum(term)  # inf once S reaches 0
    with np.errstate(invalid="ignore"):
        se = np.where(s > 0, s * np.sqrt(var_log), np.nan)
    lo, hi = _interval(s, var_log, z_for(conf), ci)
    return KaplanMeier(
        time=times,
        at_risk=n_risk,
        events=d,
        censored=c,
        survival=s,
        greenwood_se=se,
        ci_low=lo,
        ci_high=hi,
        confidence=conf,
        ci=ci,
        n=int(t.size),
        last_time=float(times[-1]),
    )


def survival_at(km: KaplanMeier, times: float | Sequence[float]) -> list[SurvivalPoint]:
    """Evaluate the KM step function (right-continuous) at ``times``.

    Carries the last value forward up to and including ``km.last_time``; beyond the
    last observation every field is ``None``. Before the first observed time S = 1
    with interval (1, 1). Typical use: 1, 2, 3 and 5 years (365.25, 730.5, ... days).
    """
    req = np.atleast_1d(np.asarray(times, dtype=float))
    out: list[SurvivalPoint] = []
    for u in req:
        if math.isnan(u):
            raise ValueError("times must not be NaN")
        if u > km.last_time:
            out.append(SurvivalPoint(float(u), None, None, None, None, None))
            continue
        idx = int(np.searchsorted(km.time, u, side="right")) - 1
        if idx < 0:
            out.append(SurvivalPoint(float(u), 1.0, 1.0, 1.0, 0.0, int(km.n)))
            continue
        at_risk = int(km.at_risk[idx] - km.events[idx] - km.censored[idx])
        out.append(
            SurvivalPoint(
                float(u),
                float(km.survival[idx]),
                _none_if_nan(km.ci_low[idx]),
                _none_if_nan(km.ci_high[idx]),
                _none_if_nan(km.greenwood_se[idx]),
                at_risk,
            )
        )
    return out


def _none_if_nan(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v
