"""Funnel-plot control limits for proportions and over-dispersion.

References
----------
* Spiegelhalter DJ. Funnel plots for comparing institutional performance. Stat Med
  2005;24:1185-1202 (exact binomial limits with interpolation, Appendix A.1.1;
  multiplicative and additive over-dispersion, section 5).
* Spiegelhalter DJ et al. Statistical methods for healthcare regulation: rating,
  screening and surveillance. J R Stat Soc A 2012;175:1-47 (Winsorised z-scores).
* FunnelPlotR (NHS-R community), R/od_adjustment.R: arcsine z-scores
  ``(asin(sqrt(y)) - asin(sqrt(p0))) * 2 sqrt(n)``, Winsorisation at the
  ``trim``/``1 - trim`` quantiles, ``phi = mean(z_w^2)``, DL-style additive tau^2.
* PHEindicatormethods (UKHSA) ``calculate_funnel_limits`` for proportions: normal
  limits ``p0 +/- z sqrt(p0(1-p0)/n)`` truncated to [0, 1] (the "inverted Wilson"
  limits), which the ``"normal"`` method reproduces (see tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._common import AsDictMixin, check_confidence, z_for

__all__ = [
    "FunnelLimits",
    "Overdispersion",
    "classify_against_limits",
    "estimate_overdispersion",
    "exact_binomial_limit",
    "funnel_limits",
    "level_label",
]


def level_label(level: float) -> str:
    """``0.95 -> "95"``, ``0.998 -> "99_8"`` (used in labels and dict keys)."""
    text = f"{100 * level:.6f}".rstrip("0").rstrip(".")
    return text.replace(".", "_")


@dataclass(frozen=True)
class Overdispersion(AsDictMixin):
    """Over-dispersion estimates from :func:`estimate_overdispersion`.

    ``z`` are the raw arcsine z-scores, ``z_winsorised`` after Winsorisation;
    ``phi`` = mean of squared Winsorised z-scores; ``phi_p`` = P(chi2_{I-1} > I phi)
    (test of phi > 1); ``tau2`` the additive between-site variance on the arcsine
    scale (0 when ``I phi < I - 1``).
    """

    phi: float
    phi_p: float
    tau2: float
    n_sites: int
    trim: float
    target: float
    z: tuple[float, ...]
    z_winsorised: tuple[float, ...]


@dataclass(frozen=True)
class FunnelLimits(AsDictMixin):
    """Control limits: ``lower[j, i]``/``upper[j, i]`` for ``levels[j]`` and ``trials[i]``."""

    target: float
    trials: np.ndarray
    levels: tuple[float, ...]
    lower: np.ndarray
    upper: np.ndarray
    method: str
    overdispersion: str | None
    phi: float | None
    tau2: float | None

    def lower_for(self, level: float) -> np.ndarray:
        return self.lower[self._index(level)]

    def upper_for(self, level: float) -> np.ndarray:
        return self.upper[self._index(level)]

    def _index(self, level: float) -> int:
        for j, lv in enumerate(self.levels):
            if math.isclose(lv, level, rel_tol=0, abs_tol=1e-12):
                return j
        raise KeyError(f"level {level} not in {self.levels}")

    def as_dict(self) -> dict:
        out: dict = {
            "target": self.target,
            "trials": self.trials.tolist(),
            "levels": list(self.levels),
            "method": self.method,
            "overdispersion": self.overdispersion,
            "phi": self.phi,
            "tau2": self.tau2,
        }
        for j, lv in enumerate(self.levels):
            out[f"lower_{level_label(lv)}"] = self.lower[j].tolist()
            out[f"upper_{level_label(lv)}"] = self.upper[j].tolist()
        return out


def _check_target(target: float) -> float:
    p0 = float(target)
    if not (0.0 < p0 < 1.0):
        raise ValueError(f"target must be strictly between 0 and 1, got {target!r}")
    return p0


def _check_trials(trials: float | Sequence[float] | np.ndarray) -> np.ndarray:
    n = np.atleast_1d(np.asarray(trials, dtype=float))
    if n.ndim != 1 or np.any(~np.isfinite(n)) or np.any(n <= 0):
        raise ValueError("trials must be a finite positive number or 1-D sequence of them")
    return n


def exact_binomial_limit(p: float, trials: float | Sequence[int] | np.ndarray, target: float) -> np.ndarray:
    """Spiegelhalter (2005, Appendix A.1.1) exact binomial limit with interpolation.

    For each n: ``r_p`` = smallest r with ``F(r) = P(R <= r | n, p0) >= p``;
    ``alpha = (F(r_p) - p) / (F(r_p) - F(r_p - 1))``; limit ``= (r_p - alpha) / n``,
    truncated to [0, 1]. ``p`` is the cumulative probability (e.g. 0.025 and 0.975 for
    95% limits, 0.001 and 0.999 for 99.8%). Trials must be integers; vectorised.

    Note: this interpolation treats the binomial mass at r as spread over (r - 1, r],
    so it is not exactly symmetric under p0 -> 1 - p0: ``limit_{1-p}(1 - p0, n)`` equals
    ``(n - 1)/n - limit_p(p0, n)`` (not ``1 - limit_p``); see the tests.
    """
    p0 = _check_target(target)
    if not (0.0 < p < 1.0):
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    n = _check_trials(trials)
    if np.any(n != np.round(n)):
        raise ValueError("exact binomial limits need integer trials")
    r = stats.binom.ppf(p, n, p0)
    f_r = stats.binom.cdf(r, n, p0)
    # guard against floating-point ppf returning one step too far/too early
    too_far = (r > 0) & (stats.binom.cdf(r - 1, n, p0) >= p)
    r = np.where(too_far, r - 1, r)
    f_r = np.where(too_far, stats.binom.cdf(r, n, p0), f_r)
    f_rm1 = stats.binom.cdf(r - 1, n, p0)
    alpha = (f_r - p) / (f_r - f_rm1)
    return np.clip((r - alpha) / n, 0.0, 1.0)


def estimate_overdispersion(
    events: Sequence[float], totals: Sequence[float], target: float | None = None, trim: float = 0.1
) -> Overdispersion:
    """Over-dispersion of site proportions around ``target`` (FunnelPlotR method).

    ``z_i = (asin(sqrt(x_i/n_i)) - asin(sqrt(p0))) / s_i`` with ``s_i = 1/(2 sqrt(n_i))``;
    z-scores are Winsorised at their ``trim`` and ``1 - trim`` quantiles (linear
    interpolation, R type 7); ``phi = (1/I) sum z_w^2``; additive
    ``tau2 = max(0, (I phi - (I - 1)) / (sum w - sum w^2 / sum w))`` with ``w = 1/s^2``
    (0 if ``I phi < I - 1``). ``target`` defaults to the pooled ``sum x / sum n``.

    References: Spiegelhalter 2005 (Stat Med 24:1185) and 2012 (JRSS A 175:1);
    FunnelPlotR ``R/od_adjustment.R``.
    """
    x = np.asarray(events, dtype=float).ravel()
    n = np.asarray(totals, dtype=float).ravel()
    if x.shape != n.shape or x.size < 2:
        raise ValueError("events and totals must have the same length >= 2")
    if np.any(n <= 0) or np.any(x < 0) or np.any(x > n):
        raise ValueError("need totals > 0 and 0 <= events <= totals")
    if not (0.0 <= trim < 0.5):
        raise ValueError("trim must be in [0, 0.5)")
    p0 = float(np.sum(x) / np.sum(n)) if target is None else _check_target(target)
    s = 1.0 / (2.0 * np.sqrt(n))
    z = (np.arcsin(np.sqrt(x / n)) - math.asin(math.sqrt(p0))) / s
    lo, hi = np.quantile(z, [trim, 1.0 - trim])
    zw = np.clip(z, lo, hi)
    k = int(z.size)
    phi = float(np.mean(zw**2))
    phi_p = float(stats.chi2.sf(k * phi, k - 1))
    w = 1.0 / s**2
    if k * phi < k - 1:
        tau2 = 0.0
    else:
        tau2 = float(max(0.0, (k * phi - (k - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w))))
    return Overdispersion(phi, phi_p, tau2, k, float(trim), p0, tuple(z.tolist()), tuple(zw.tolist()))


def funnel_limits(
    target: float,
    trials: float | Sequence[float] | np.ndarray,
    levels: Sequence[float] = (0.95, 0.998),
    method: str = "exact",
    overdispersion: str | None = None,
    dispersion: Overdispersion | None = None,
) -> FunnelLimits:
    """Two-sided funnel-plot limits around ``target`` for each number of cases.

    ``method``:

    * ``"exact"`` (default, spec 8.1): :func:`exact_binomial_limit` at
      ``(1 - level)/2`` and ``(1 + level)/2``; trials must be integers.
    * ``"normal"``: ``p0 +/- z sqrt(p0 (1 - p0) / n)`` truncated to [0, 1]
      (PHEindicatormethods; equal to inverting the Wilson score test).
    * ``"wilson"``: same limits as ``"normal"`` (the inverted Wilson score interval
      is exactly the normal limit with the target variance); kept as an alias.

    ``overdispersion`` (needs ``dispersion`` from :func:`estimate_overdispersion`):

    * ``None``: no adjustment.
    * ``"multiplicative"``: ``p0 + sqrt(phi) (limit - p0)`` with phi floored at 1
      (Spiegelhalter 2005 section 5.1); for the normal method this is
      ``p0 +/- z sqrt(phi p0 (1-p0)/n)``.
    * ``"additive"``: on the arcsine scale ``asin(sqrt(p0)) +/- z sqrt(1/(4n) + tau2)``,
      back-transformed with ``sin^2`` (angle clipped to [0, pi/2]); ``method`` is then
      ignored (FunnelPlotR; Spiegelhalter 2005 section 5.2).

    Registry default (spec 8.1): exact without adjustment for fewer than 10 sites;
    additive when there are at least 10 sites and phi > 1.
    """
    p0 = _check_target(target)
    n = _check_trials(trials)
    lv = tuple(check_confidence(level) for level in levels)
    if method not in ("exact", "normal", "wilson"):
        raise ValueError(f"unknown method {method!r}; expected 'exact', 'normal' or 'wilson'")
    if overdispersion not in (None, "multiplicative", "additive"):
        raise ValueError(
            f"overdispersion must be None, 'multiplicative' or 'additive', got {overdispersion!r}"
        )
    if overdispersion is not None and dispersion is None:
        raise ValueError(
            "overdispersion adjustment needs dispersion=estimate_overdispersion(events, totals, target)"
        )
    lower = np.empty((len(lv), n.size))
    upper = np.empty((len(lv), n.size))
    for j, level in enumerate(lv):
        z = z_for(level)
        if overdispersion == "additive":
            assert dispersion is not None
            centre = math.asin(math.sqrt(p0))
            half = z * np.sqrt(1.0 / (4.0 * n) + dispersion.tau2)
            lower[j] = np.sin(np.clip(centre - half, 0.0, math.pi / 2)) ** 2
            upper[j] = np.sin(np.clip(centre + half, 0.0, math.pi / 2)) ** 2
            continue
        if method == "exact":
            lo = exact_binomial_limit((1.0 - level) / 2.0, n, p0)
            hi = exact_binomial_limit((1.0 + level) / 2.0, n, p0)
        else:
            half = z * np.sqrt(p0 * (1.0 - p0) / n)
            lo, hi = p0 - half, p0 + half
        if overdispersion == "multiplicative":
            assert dispersion is not None
            inflate = math.sqrt(max(1.0, dispersion.phi))
            lo = p0 + inflate * (lo - p0)
            hi = p0 + inflate * (hi - p0)
        lower[j] = np.clip(lo, 0.0, 1.0)
        upper[j] = np.clip(hi, 0.0, 1.0)
    return FunnelLimits(
        target=p0,
        trials=n,
        levels=lv,
        lower=lower,
        upper=upper,
        method=method,
        overdispersion=overdispersion,
        phi=None if dispersion is None else dispersion.phi,
        tau2=None if dispersion is None else dispersion.tau2,
    )


def classify_against_limits(
    events: Sequence[float],
    totals: Sequence[float],
    target: float,
    levels: Sequence[float] = (0.95, 0.998),
    method: str = "exact",
    overdispersion: str | None = None,
    dispersion: Overdispersion | None = None,
) -> list[str]:
    """Classify each site's proportion against the limits at its own denominator.

    Returns per site ``"within"``, ``"above_95"``, ``"below_95"``, ``"above_99_8"``
    or ``"below_99_8"`` (labels from :func:`level_label`); the widest level crossed
    wins. A point exactly on a limit counts as within (as PHEindicatormethods does).
    """
    x = np.asarray(events, dtype=float).ravel()
    n = np.asarray(totals, dtype=float).ravel()
    if x.shape != n.shape:
        raise ValueError("events and totals differ in length")
    lim = funnel_limits(target, n, levels, method, overdispersion, dispersion)
    y = x / n
    order = np.argsort(lim.levels)[::-1]  # widest first
    # The interpolated exact limits are continuous, so at small n a site at 0% or 100% can sit just past a
    # limit although its count is not unusual (12/12 at p0=0.93 happens 40% of the time). With the exact
    # method a site is only flagged when its binomial tail probability is also beyond the level.
    upper_tail = stats.binom.sf(x - 1, n, target) if method == "exact" and not overdispersion else None
    lower_tail = stats.binom.cdf(x, n, target) if upper_tail is not None else None
    out: list[str] = []
    for i in range(n.size):
        label = "within"
        for j in order:
            tail = (1 - lim.levels[j]) / 2
            if y[i] > lim.upper[j, i] and (upper_tail is None or upper_tail[i] < tail):
                label = f"above_{level_label(lim.levels[j])}"
                break
            if y[i] < lim.lower[j, i] and (lower_tail is None or lower_tail[i] < tail):
                label = f"below_{level_label(lim.levels[j])}"
                break
        out.append(label)
    return out
