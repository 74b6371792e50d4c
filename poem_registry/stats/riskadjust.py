"""Risk adjustment: logistic case-mix model, observed/expected ratios, shrinkage.

References
----------
* Logistic regression via statsmodels ``Logit`` (maximum likelihood); ridge fallback
  via ``GLM(..., family=Binomial()).fit_regularized(L1_wt=0)`` (Le Cessie S, van
  Houwelingen JC. Ridge estimators in logistic regression. Appl Stat 1992;41:191-201).
* Exact Poisson interval for O/E with E treated as fixed: Garwood F. Fiducial limits
  for the Poisson distribution. Biometrika 1936;28:437-442; Ulm K. Am J Epidemiol
  1990;131:373-375 (SMR). Byar's approximation: Breslow NE, Day NE. Statistical
  Methods in Cancer Research vol. II, IARC 1987, p. 69.
* Empirical-Bayes shrinkage: Morris CN. Parametric empirical Bayes inference.
  J Am Stat Assoc 1983;78:47-55; reliability as in ACS NSQIP profiling
  (signal / (signal + noise)); DerSimonian-Laird tau^2.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._common import AsDictMixin, check_confidence, z_for
from .pooling import pool_estimates

__all__ = [
    "ObservedExpected",
    "ReliabilityNote",
    "RiskModel",
    "ShrunkenOE",
    "fit_logistic_risk_model",
    "observed_expected",
    "reliability_note",
    "shrink_oe",
]


@dataclass(frozen=True)
class RiskModel(AsDictMixin):
    """A fitted logistic case-mix model.

    ``coefficients`` includes ``"intercept"``; ``method`` is ``"mle"`` or
    ``"ridge"`` (fallback); ``notes`` says why a fallback was used. Standard errors
    are ``None`` for the ridge fit (no valid sampling variance).
    """

    feature_names: tuple[str, ...]
    coefficients: dict[str, float]
    standard_errors: dict[str, float] | None
    method: str
    notes: tuple[str, ...]
    n: int
    events: int
    c_statistic: float
    params: np.ndarray = field(repr=False)

    def predict(self, X: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Predicted failure probabilities for rows of ``X`` (same column order)."""
        x = np.asarray(X, dtype=float)
        if x.ndim == 1:
            x = x.reshape(-1, len(self.feature_names))
        if x.shape[1] != len(self.feature_names):
            raise ValueError(f"X needs {len(self.feature_names)} columns, got {x.shape[1]}")
        eta = self.params[0] + x @ self.params[1:]
        return 1.0 / (1.0 + np.exp(-eta))


def _c_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties count 1/2)."""
    pos, neg = p[y == 1], p[y == 0]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def fit_logistic_risk_model(
    X: Sequence[Sequence[float]] | np.ndarray,
    y: Sequence[int] | np.ndarray,
    feature_names: Sequence[str],
    ridge_alpha: float = 0.01,
    max_abs_coefficient: float = 15.0,
) -> RiskModel:
    """Fit ``logit P(y=1) = b0 + X b`` by maximum likelihood (statsmodels ``Logit``).

    Fallback to an L2-penalised (ridge) fit, with a note, when the MLE does not exist
    or is unusable: perfect or quasi-complete separation, a singular design matrix
    (collinear columns), failure to converge, or any ``|coefficient| >
    max_abs_coefficient`` (a symptom of separation). The ridge fit uses
    ``GLM(Binomial).fit_regularized(alpha=ridge_alpha, L1_wt=0)`` with the intercept
    unpenalised. Do not include operator experience when the model is used to
    monitor that operator (spec 7.3).
    """
    x = np.asarray(X, dtype=float)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    yy = np.asarray(y, dtype=float).ravel()
    names = tuple(str(n) for n in feature_names)
    if x.shape[0] != yy.size:
        raise ValueError(f"X has {x.shape[0]} rows but y has {yy.size} values")
    if x.shape[1] != len(names):
        raise ValueError(f"X has {x.shape[1]} columns but {len(names)} feature names were given")
    if not np.all((yy == 0) | (yy == 1)):
        raise ValueError("y must be 0/1")
    if not np.all(np.isfinite(x)):
        raise ValueError("X must be finite (impute or drop missing values first)")
    if yy.sum() == 0 or yy.sum() == yy.size:
        raise ValueError("y has no variation (all 0 or all 1): no model can be fitted")
    import statsmodels.api as sm

    design = np.column_stack([np.ones(yy.size), x])
    notes: list[str] = []
    params = None
    bse = None
    if np.linalg.matrix_rank(design) < design.shape[1]:
        notes.append("design matrix is singular (collinear or constant columns); used ridge fit")
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                res = sm.Logit(yy, design).fit(disp=0, maxiter=200)
            if not res.mle_retvals.get("converged", True):
                notes.append("maximum likelihood did not converge; used ridge fit")
            elif np.any(np.abs(res.params) > max_abs_coefficient) or not np.all(np.isfinite(res.bse)):
                notes.append("coefficients diverge (perfect or quasi-complete separation); used ridge fit")
            else:
                params, bse = np.asarray(res.params), np.asarray(res.bse)
        except Exception as exc:  # PerfectSeparationError/Warning, LinAlgError, ConvergenceWarning, ...
            notes.append(f"maximum likelihood failed ({type(exc).__name__}: {exc}); used ridge fit")
    method = "mle"
    if params is None:
        method = "ridge"
        penalty = np.full(design.shape[1], float(ridge_alpha))
        penalty[0] = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.GLM(yy, design, family=sm.families.Binomial()).fit_regularized(alpha=penalty, L1_wt=0.0)
        params = np.asarray(fit.params)
    all_names = ("intercept", *names)
    coef = {k: float(v) for k, v in zip(all_names, params, strict=True)}
    ses = None if bse is None else {k: float(v) for k, v in zip(all_names, bse, strict=True)}
    p_hat = 1.0 / (1.0 + np.exp(-(design @ params)))
    return RiskModel(
        feature_names=names,
        coefficients=coef,
        standard_errors=ses,
        method=method,
        notes=tuple(notes),
        n=int(yy.size),
        events=int(yy.sum()),
        c_statistic=_c_statistic(yy, p_hat),
        params=params,
    )


@dataclass(frozen=True)
class ObservedExpected(AsDictMixin):
    """O, E, O/E and its interval; ``rate_adjusted = O/E x overall_rate`` if given."""

    observed: float
    expected: float
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    method: str
    n: int
    rate_adjusted: float | None


def observed_expected(
    observed: Sequence[int] | np.ndarray,
    expected_probs: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: str = "exact",
    overall_rate: float | None = None,
) -> ObservedExpected:
    """Observed/expected ratio for one site (spec 8.4).

    ``observed`` are per-patient 0/1 outcomes and ``expected_probs`` their model
    probabilities; ``O = sum y``, ``E = sum p``. The interval treats E as fixed and O
    as Poisson:

    * ``"exact"`` (default; Garwood 1936): ``[chi2_{a/2}(2O)/2, chi2_{1-a/2}(2O+2)/2] / E``,
      lower 0 when O = 0.
    * ``"byar"`` (Breslow & Day 1987): ``O_L = O (1 - 1/(9O) - z/(3 sqrt O))^3``,
      ``O_U = (O+1)(1 - 1/(9(O+1)) + z/(3 sqrt(O+1)))^3``, each divided by E.

    Ignoring the uncertainty in E makes the interval slightly too narrow.
    """
    conf = check_confidence(confidence)
    y = np.asarray(observed, dtype=float).ravel()
    p = np.asarray(expected_probs, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError("observed and expected_probs differ in length")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("observed must be 0/1 per patient")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("expected_probs must be in [0, 1]")
    o, e = float(y.sum()), float(p.sum())
    if e <= 0:
        raise ValueError("expected count E must be > 0")
    alpha = 1.0 - conf
    if method == "exact":
        lo = 0.0 if o == 0 else float(stats.chi2.ppf(alpha / 2, 2 * o) / 2)
        hi = float(stats.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2)
    elif method == "byar":
        z = z_for(conf)
        lo = 0.0 if o == 0 else o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
        hi = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3
    else:
        raise ValueError(f"method must be 'exact' or 'byar', got {method!r}")
    ratio = o / e
    return ObservedExpected(
        observed=o,
        expected=e,
        ratio=ratio,
        ci_low=lo / e,
        ci_high=hi / e,
        confidence=conf,
        method=method,
        n=int(y.size),
        rate_adjusted=None if overall_rate is None else ratio * float(overall_rate),
    )


@dataclass(frozen=True)
class ReliabilityNote(AsDictMixin):
    """Whether a site-level O/E is reliable enough to show unshrunken, and why not."""

    reliable: bool
    reasons: tuple[str, ...]
    text: str


def reliability_note(
    n: int, expected_events: float, min_expected: float = 5.0, min_n: int = 30
) -> ReliabilityNote:
    """Flag site-level O/E estimates that rest on too little information.

    Unreliable when ``expected_events < min_expected`` (the O/E interval then spans
    several-fold) or ``n < min_n``. These cut-offs are registry conventions
    (spec 8.4 asks for shrunken estimates because most POEM sites are small), not
    published thresholds.
    """
    reasons: list[str] = []
    if expected_events < min_expected:
        reasons.append(f"expected events {expected_events:.1f} < {min_expected:g}")
    if n < min_n:
        reasons.append(f"n = {n} < {min_n}")
    if reasons:
        text = "Unreliable O/E (" + "; ".join(reasons) + "): show the shrunken estimate and pool more years."
    else:
        text = ""
    return ReliabilityNote(not reasons, tuple(reasons), text)


@dataclass(frozen=True)
class ShrunkenOE(AsDictMixin):
    """Per-site raw and empirical-Bayes shrunken O/E (log scale inputs in ``log_*``)."""

    raw_ratio: np.ndarray
    shrunken_ratio: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    reliability: np.ndarray
    log_estimate: np.ndarray
    log_variance: np.ndarray
    mu: float
    tau2: float
    confidence: float


def shrink_oe(
    observed: Sequence[float], expected: Sequence[float], confidence: float = 0.95, tau2: str = "DL"
) -> ShrunkenOE:
    """Empirical-Bayes shrinkage of site log(O/E) towards the registry mean.

    Per site: ``y_i = ln((O_i + 0.5)/(E_i + 0.5))`` with ``v_i = 1/(O_i + 0.5)`` (Poisson
    delta method; 0.5 keeps O = 0 finite). The between-site variance tau^2 and mean mu
    come from a random-effects pool (:func:`pool_estimates`, DL by default). With
    reliability ``B_i = tau^2/(tau^2 + v_i)`` the shrunken estimate is
    ``mu + B_i (y_i - mu)`` with variance ``B_i v_i + (1 - B_i)^2 se(mu)^2`` (Morris 1983),
    reported as ``exp`` of estimate and normal interval. With tau^2 = 0 all sites shrink
    fully to the mean.
    """
    conf = check_confidence(confidence)
    o = np.asarray(observed, dtype=float).ravel()
    e = np.asarray(expected, dtype=float).ravel()
    if o.shape != e.shape or o.size < 2:
        raise ValueError("observed and expected need the same length >= 2")
    if np.any(o < 0) or np.any(e <= 0):
        raise ValueError("need observed >= 0 and expected > 0")
    y = np.log((o + 0.5) / (e + 0.5))
    v = 1.0 / (o + 0.5)
    pooled = pool_estimates(y, v, model="random", tau2=tau2, confidence=conf, prediction=False)
    b = pooled.tau2 / (pooled.tau2 + v)
    est = pooled.estimate + b * (y - pooled.estimate)
    var = b * v + (1 - b) ** 2 * pooled.se**2
    z = z_for(conf)
    return ShrunkenOE(
        raw_ratio=o / e,
        shrunken_ratio=np.exp(est),
        ci_low=np.exp(est - z * np.sqrt(var)),
        ci_high=np.exp(est + z * np.sqrt(var)),
        reliability=b,
        log_estimate=y,
        log_variance=v,
        mu=pooled.estimate,
        tau2=pooled.tau2,
        confidence=conf,
    )
