"""Inverse-variance pooling (meta-analysis) of site estimates and proportions.

References
----------
* DerSimonian R, Laird N. Meta-analysis in clinical trials. Control Clin Trials
  1986;7:177-188 (DL moment estimator of tau^2).
* Viechtbauer W. Bias and efficiency of meta-analytic variance estimators in the
  random-effects model. J Educ Behav Stat 2005;30:261-293 (REML fixed-point
  iteration used here).
* Paule RC, Mandel J. Consensus values and weighting factors. J Res Natl Bur Stand
  1982;87:377-385 (PM estimator: generalised Q equal to k - 1).
* Veroniki AA et al. Methods to estimate the between-study variance and its
  uncertainty in meta-analysis. Res Synth Methods 2016;7:55-79.
* Higgins JPT, Thompson SG. Quantifying heterogeneity in a meta-analysis. Stat Med
  2002;21:1539-1558 (I^2); Higgins JPT, Thompson SG, Spiegelhalter DJ. J R Stat Soc A
  2009;172:137-159 and Riley RD, Higgins JPT, Deeks JJ. BMJ 2011;342:d549 (prediction
  interval with t_{k-2}).
* Hartung J, Knapp G. Stat Med 2001;20:3875-3889 (optional HKSJ interval).
* Freeman MF, Tukey JW. Ann Math Stat 1950;21:607-611; Miller JJ. The inverse of the
  Freeman-Tukey double arcsine transformation. Am Stat 1978;32:138;
  Schwarzer G et al. Res Synth Methods 2019;10:476-483 (caution on the FT
  back-transform).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from ._common import AsDictMixin, check_confidence, z_for

__all__ = [
    "PooledEstimate",
    "PooledProportion",
    "freeman_tukey",
    "freeman_tukey_inverse",
    "pool_estimates",
    "pool_proportions",
    "tau2_estimate",
]

_TAU2_METHODS = ("DL", "REML", "PM")
_TRANSFORMS = ("logit", "arcsine", "freeman_tukey", "raw")


@dataclass(frozen=True)
class PooledEstimate(AsDictMixin):
    """Result of :func:`pool_estimates` (all on the scale of the inputs).

    ``weights`` are the normalised weights (sum to 1) used for ``estimate``.
    ``pi_low``/``pi_high`` are ``None`` for the fixed-effect model, when
    ``prediction=False`` or when k < 3. ``i2`` is in percent. ``tau2_dl`` is the
    DerSimonian-Laird tau^2, always reported for comparability.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pi_low: float | None
    pi_high: float | None
    tau2: float
    tau2_dl: float
    i2: float
    q: float
    q_df: int
    q_p: float
    k: int
    weights: tuple[float, ...]
    model: str
    tau2_method: str | None
    confidence: float
    ci_method: str


@dataclass(frozen=True)
class PooledProportion(AsDictMixin):
    """Result of :func:`pool_proportions`.

    ``estimate``, ``ci_*`` and ``pi_*`` are back-transformed to the proportion
    scale; ``se``, ``tau2`` and ``transformed`` (the full :class:`PooledEstimate`)
    are on the transformed scale named by ``transform``. ``continuity_corrected``
    lists the (0-based) indices of sites that received the continuity correction.
    """

    estimate: float
    ci_low: float
    ci_high: float
    pi_low: float | None
    pi_high: float | None
    tau2: float
    tau2_dl: float
    i2: float
    q: float
    q_df: int
    q_p: float
    k: int
    se: float
    weights: tuple[float, ...]
    transform: str
    model: str
    tau2_method: str | None
    continuity: float
    continuity_corrected: tuple[int, ...]
    total_events: float
    total_n: float
    back_transform_n: float | None
    transformed: PooledEstimate


def _as_arrays(estimates: Sequence[float], variances: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(estimates, dtype=float).ravel()
    v = np.asarray(variances, dtype=float).ravel()
    if y.shape != v.shape:
        raise ValueError(f"estimates and variances differ in length ({y.size} vs {v.size})")
    if y.size == 0:
        raise ValueError("need at least one estimate")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError("estimates and variances must be finite")
    if np.any(v <= 0):
        raise ValueError("variances must be > 0")
    return y, v


def _fixed(y: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    w = 1.0 / v
    mu = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - mu) ** 2))
    return mu, q, float(np.sum(w))


def _tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    k = y.size
    if k < 2:
        return 0.0
    w = 1.0 / v
    _, q, sw = _fixed(y, v)
    c = sw - np.sum(w**2) / sw
    return float(max(0.0, (q - (k - 1)) / c)) if c > 0 else 0.0


def _generalised_q(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    w = 1.0 / (v + tau2)
    mu = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mu) ** 2))


def _tau2_pm(y: np.ndarray, v: np.ndarray) -> float:
    k = y.size
    if k < 2 or _generalised_q(0.0, y, v) <= k - 1:
        return 0.0
    hi = max(1e-8, float(np.var(y, ddof=1)))
    while _generalised_q(hi, y, v) > k - 1:
        hi *= 2.0
    return float(
        optimize.brentq(lambda t: _generalised_q(t, y, v) - (k - 1), 0.0, hi, xtol=1e-12, rtol=1e-12)
    )


def _reml_nll(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    w = 1.0 / (v + tau2)
    mu = np.sum(w * y) / np.sum(w)
    return float(0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2)))


def _tau2_reml(y: np.ndarray, v: np.ndarray, tol: float = 1e-12, max_iter: int = 1000) -> float:
    k = y.size
    if k < 2:
        return 0.0
    tau2 = _tau2_dl(y, v)
    for _ in range(max_iter):
        w = 1.0 / (v + tau2)
        mu = np.sum(w * y) / np.sum(w)
        new = float(np.sum(w**2 * ((y - mu) ** 2 - v)) / np.sum(w**2) + 1.0 / np.sum(w))
        new = max(0.0, new)
        if abs(new - tau2) < tol * max(1.0, tau2):
            return new
        tau2 = new
    # fixed-point did not settle: minimise the restricted likelihood directly
    upper = max(1.0, 10.0 * float(np.var(y, ddof=1)) + 10.0 * float(np.max(v)))
    res = optimize.minimize_scalar(
        _reml_nll, bounds=(0.0, upper), args=(y, v), method="bounded", options={"xatol": 1e-12}
    )
    return float(res.x)


def tau2_estimate(estimates: Sequence[float], variances: Sequence[float], method: str = "REML") -> float:
    """Between-site variance tau^2 by ``"DL"``, ``"REML"`` or ``"PM"``.

    DL: ``max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))`` (DerSimonian & Laird
    1986). REML: fixed-point iteration
    ``tau2 = sum w^2((y - mu)^2 - v) / sum w^2 + 1/sum w`` truncated at 0 (Viechtbauer
    2005), falling back to bounded minimisation of the restricted likelihood.
    PM: root of ``sum w_i(tau2) (y_i - mu(tau2))^2 = k - 1`` (Paule & Mandel 1982),
    solved with Brent's method; 0 when the equation has no positive root.
    """
    y, v = _as_arrays(estimates, variances)
    m = method.upper()
    if m == "DL":
        return _tau2_dl(y, v)
    if m == "REML":
        return _tau2_reml(y, v)
    if m == "PM":
        return _tau2_pm(y, v)
    raise ValueError(f"unknown tau2 method {method!r}; expected one of {_TAU2_METHODS}")


def pool_estimates(
    estimates: Sequence[float],
    variances: Sequence[float],
    model: str = "random",
    tau2: str = "REML",
    confidence: float = 0.95,
    prediction: bool = True,
    hartung_knapp: bool = False,
) -> PooledEstimate:
    """Generic inverse-variance pooling of estimates ``y_i`` with variances ``v_i``.

    * ``model="fixed"``: ``w_i = 1/v_i``; ``model="random"``: ``w_i = 1/(v_i + tau^2)``
      with tau^2 from ``tau2`` (``"REML"`` default per spec section 8.3, ``"DL"``,
      ``"PM"``; see :func:`tau2_estimate`). The DL tau^2 is always reported as
      ``tau2_dl``.
    * CI: ``estimate +/- z * se``; with ``hartung_knapp=True`` the HKSJ interval
      ``estimate +/- t_{k-1} * sqrt(q_hk / sum w)`` with
      ``q_hk = sum w (y - estimate)^2 / (k-1)`` (Hartung & Knapp 2001).
    * Cochran's Q uses fixed-effect weights; ``q_p`` is its chi-square(k-1) p-value.
    * I^2 (percent) = ``tau^2 / (tau^2 + s^2)`` with the "typical" within-site
      variance ``s^2 = (k-1) sum w / ((sum w)^2 - sum w^2)`` (Higgins & Thompson 2002,
      as computed by metafor); for DL this equals ``(Q - (k-1))/Q``. For the fixed
      model I^2 is ``max(0, (Q - (k-1))/Q)``.
    * Prediction interval (random model, k >= 3):
      ``estimate +/- t_{k-2} sqrt(tau^2 + se^2)`` (Higgins et al. 2009; Riley et al. 2011);
      ``None`` otherwise.
    """
    conf = check_confidence(confidence)
    y, v = _as_arrays(estimates, variances)
    k = int(y.size)
    if model not in ("random", "fixed"):
        raise ValueError(f"model must be 'random' or 'fixed', got {model!r}")
    tau2_method = tau2.upper()
    if tau2_method not in _TAU2_METHODS:
        raise ValueError(f"unknown tau2 method {tau2!r}; expected one of {_TAU2_METHODS}")
    _, q, sw_fixed = _fixed(y, v)
    q_df = k - 1
    q_p = float(stats.chi2.sf(q, q_df)) if q_df > 0 else math.nan
    tau2_dl = _tau2_dl(y, v)
    w_fixed = 1.0 / v
    if model == "random":
        t2 = tau2_estimate(y, v, tau2_method)
        if k > 1:
            s2 = (k - 1) * sw_fixed / (sw_fixed**2 - np.sum(w_fixed**2))
            i2 = float(100.0 * t2 / (t2 + s2)) if (t2 + s2) > 0 else 0.0
        else:
            i2 = 0.0
    else:
        t2 = 0.0
        i2 = float(max(0.0, 100.0 * (q - q_df) / q)) if q > 0 and q_df > 0 else 0.0
    w = 1.0 / (v + t2)
    sw = float(np.sum(w))
    mu = float(np.sum(w * y) / sw)
    se = math.sqrt(1.0 / sw)
    alpha = 1.0 - conf
    if hartung_knapp and k > 1:
        q_hk = float(np.sum(w * (y - mu) ** 2) / (k - 1))
        se_ci = math.sqrt(q_hk / sw)
        crit = float(stats.t.ppf(1.0 - alpha / 2.0, k - 1))
        ci_method = "hartung_knapp"
    else:
        se_ci = se
        crit = z_for(conf)
        ci_method = "z"
    pi_low = pi_high = None
    if prediction and model == "random" and k >= 3:
        half = float(stats.t.ppf(1.0 - alpha / 2.0, k - 2)) * math.sqrt(t2 + se**2)
        pi_low, pi_high = mu - half, mu + half
    return PooledEstimate(
        estimate=mu,
        se=se,
        ci_low=mu - crit * se_ci,
        ci_high=mu + crit * se_ci,
        pi_low=pi_low,
        pi_high=pi_high,
        tau2=float(t2),
        tau2_dl=tau2_dl,
        i2=i2,
        q=q,
        q_df=q_df,
        q_p=q_p,
        k=k,
        weights=tuple(float(x) for x in w / sw),
        model=model,
        tau2_method=tau2_method if model == "random" else None,
        confidence=conf,
        ci_method=ci_method,
    )


# --------------------------------------------------------------------------- proportions


def freeman_tukey(events: float | np.ndarray, totals: float | np.ndarray) -> np.ndarray:
    """Freeman-Tukey double arcsine, metafor ``"PFT"`` scaling (half the sum).

    ``t = 1/2 [asin(sqrt(x/(n+1))) + asin(sqrt((x+1)/(n+1)))]``, variance
    ``1/(4n + 2)``. Range ``[0, pi/2]``.
    """
    x = np.asarray(events, dtype=float)
    n = np.asarray(totals, dtype=float)
    return 0.5 * (np.arcsin(np.sqrt(x / (n + 1.0))) + np.arcsin(np.sqrt((x + 1.0) / (n + 1.0))))


def freeman_tukey_inverse(t: float | np.ndarray, n: float) -> np.ndarray:
    """Miller (1978) inverse of the (PFT-scaled) Freeman-Tukey transform.

    With ``T = 2t`` (the unscaled double arcsine)::

        p = 1/2 [1 - sgn(cos T) sqrt(1 - (sin T + (sin T - 1/sin T)/n)^2)]

    ``n`` is the harmonic mean of the site sizes when back-transforming a pooled
    value (metafor ``transf.ipft.hm``). Values below ``freeman_tukey(0, n)`` map to 0
    and values above ``freeman_tukey(n, n)`` map to 1.

    Reference: Miller JJ (1978) Am Stat 32:138.
    """
    t_arr = np.asarray(t, dtype=float)
    big_t = 2.0 * t_arr
    s = np.sin(big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = 1.0 - (s + (s - 1.0 / s) / n) ** 2
        p = 0.5 * (1.0 - np.sign(np.cos(big_t)) * np.sqrt(np.clip(inner, 0.0, None)))
    lo = freeman_tukey(0.0, n)
    hi = freeman_tukey(n, n)
    p = np.where(t_arr <= lo, 0.0, np.where(t_arr >= hi, 1.0, p))
    return np.clip(p, 0.0, 1.0)


def pool_proportions(
    events: Sequence[float],
    totals: Sequence[float],
    model: str = "random",
    transform: str = "logit",
    tau2: str = "REML",
    confidence: float = 0.95,
    continuity: float = 0.5,
    prediction: bool = True,
    hartung_knapp: bool = False,
) -> PooledProportion:
    """Pool site proportions ``x_i / n_i`` on a transformed scale and back-transform.

    Transforms (``y_i``, ``v_i``):

    * ``"logit"`` (default, spec 8.3): ``ln(x/(n-x))``, ``1/x + 1/(n-x)``. Sites with
      ``x = 0`` or ``x = n`` get ``continuity`` (0.5) added to both x and n - x
      (only those sites). Back-transform: expit.
    * ``"arcsine"``: ``asin(sqrt(x/n))``, ``1/(4n)``; no correction. Back: ``sin^2``
      (clipped to [0, pi/2]).
    * ``"freeman_tukey"``: metafor "PFT" scaling (half the double-arcsine sum),
      ``v = 1/(4n + 2)``; no correction. Back-transform with Miller (1978) using the
      harmonic mean of the n_i (reported as ``back_transform_n``). Note Schwarzer et
      al. (2019): this back-transform can mislead; prefer logit.
    * ``"raw"``: ``x/n``, ``p(1-p)/n``; for sites with x = 0 or n the *variance only*
      uses ``p = (x + c)/(n + 2c)``. Back-transform: identity, clipped to [0, 1].

    Other arguments as in :func:`pool_estimates`. Sites with ``n = 0`` are rejected.
    """
    x = np.asarray(events, dtype=float).ravel()
    n = np.asarray(totals, dtype=float).ravel()
    if x.shape != n.shape:
        raise ValueError(f"events and totals differ in length ({x.size} vs {n.size})")
    if x.size == 0:
        raise ValueError("need at least one site")
    if np.any(n <= 0):
        raise ValueError("every site needs totals > 0")
    if np.any(x < 0) or np.any(x > n):
        raise ValueError("events must satisfy 0 <= events <= totals")
    if transform not in _TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {_TRANSFORMS}")
    if continuity < 0:
        raise ValueError("continuity must be >= 0")
    edge = (x == 0) | (x == n)
    corrected: tuple[int, ...] = ()
    back_n: float | None = None
    if transform == "logit":
        if np.any(edge) and continuity == 0:
            raise ValueError("logit transform with 0 or n events needs continuity > 0")
        xc = np.where(edge, x + continuity, x)
        nc = np.where(edge, n + 2 * continuity, n)
        y = np.log(xc / (nc - xc))
        v = 1.0 / xc + 1.0 / (nc - xc)
        corrected = tuple(int(i) for i in np.flatnonzero(edge))

        def back(t):
            return 1.0 / (1.0 + math.exp(-t))

    elif transform == "arcsine":
        y = np.arcsin(np.sqrt(x / n))
        v = 1.0 / (4.0 * n)

        def back(t):
            return math.sin(min(max(t, 0.0), math.pi / 2)) ** 2

    elif transform == "freeman_tukey":
        y = freeman_tukey(x, n)
        v = 1.0 / (4.0 * n + 2.0)
        back_n = float(n.size / np.sum(1.0 / n))

        def back(t):
            return float(freeman_tukey_inverse(t, back_n))

    else:  # raw
        p = x / n
        pv = np.where(edge, (x + continuity) / (n + 2 * continuity), p)
        if np.any(pv * (1 - pv) == 0):
            raise ValueError("raw proportions with 0 or n events need continuity > 0")
        y = p
        v = pv * (1 - pv) / n
        corrected = tuple(int(i) for i in np.flatnonzero(edge))

        def back(t):
            return min(1.0, max(0.0, t))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pool_estimates(
            y,
            v,
            model=model,
            tau2=tau2,
            confidence=confidence,
            prediction=prediction,
            hartung_knapp=hartung_knapp,
        )
    return PooledProportion(
        estimate=back(res.estimate),
        ci_low=back(res.ci_low),
        ci_high=back(res.ci_high),
        pi_low=None if res.pi_low is None else back(res.pi_low),
        pi_high=None if res.pi_high is None else back(res.pi_high),
        tau2=res.tau2,
        tau2_dl=res.tau2_dl,
        i2=res.i2,
        q=res.q,
        q_df=res.q_df,
        q_p=res.q_p,
        k=res.k,
        se=res.se,
        weights=res.weights,
        transform=transform,
        model=model,
        tau2_method=res.tau2_method,
        continuity=float(continuity),
        continuity_corrected=corrected,
        total_events=float(np.sum(x)),
        total_n=float(np.sum(n)),
        back_transform_n=back_n,
        transformed=res,
    )
