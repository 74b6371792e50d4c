"""Statistics for POEM Registry: pure functions on numbers and numpy arrays.

Submodules: :mod:`.intervals` (binomial intervals), :mod:`.pooling` (meta-analytic
pooling), :mod:`.funnel` (funnel-plot limits, over-dispersion), :mod:`.cusum`
(learning-curve and monitoring CUSUMs), :mod:`.survival` (Kaplan-Meier) and
:mod:`.riskadjust` (case-mix model, O/E, shrinkage). Methods and conventions are
summarised in ``METHODS.md`` next to this file.
"""

from .cusum import (
    BernoulliCusum,
    CusumLimit,
    CusumLimitCurve,
    RiskAdjustedCusum,
    bernoulli_cusum,
    bernoulli_cusum_limit,
    cusum_observed_minus_mean,
    oe_cusum,
    risk_adjusted_cusum,
    risk_adjusted_cusum_limit,
    risk_adjusted_cusum_limits,
    steiner_weights,
)
from .funnel import (
    FunnelLimits,
    Overdispersion,
    classify_against_limits,
    estimate_overdispersion,
    exact_binomial_limit,
    funnel_limits,
    level_label,
)
from .intervals import (
    ProportionInterval,
    choose_interval_method,
    clopper_pearson_interval,
    jeffreys_interval,
    mid_p_interval,
    proportion_interval,
    wilson_interval,
)
from .pooling import (
    PooledEstimate,
    PooledProportion,
    freeman_tukey,
    freeman_tukey_inverse,
    pool_estimates,
    pool_proportions,
    tau2_estimate,
)
from .riskadjust import (
    ObservedExpected,
    ReliabilityNote,
    RiskModel,
    ShrunkenOE,
    fit_logistic_risk_model,
    observed_expected,
    reliability_note,
    shrink_oe,
)
from .survival import KaplanMeier, SurvivalPoint, kaplan_meier, survival_at

__all__ = [
    "BernoulliCusum",
    "CusumLimit",
    "CusumLimitCurve",
    "FunnelLimits",
    "KaplanMeier",
    "ObservedExpected",
    "Overdispersion",
    "PooledEstimate",
    "PooledProportion",
    "ProportionInterval",
    "ReliabilityNote",
    "RiskAdjustedCusum",
    "RiskModel",
    "ShrunkenOE",
    "SurvivalPoint",
    "bernoulli_cusum",
    "bernoulli_cusum_limit",
    "choose_interval_method",
    "classify_against_limits",
    "clopper_pearson_interval",
    "cusum_observed_minus_mean",
    "estimate_overdispersion",
    "exact_binomial_limit",
    "fit_logistic_risk_model",
    "freeman_tukey",
    "freeman_tukey_inverse",
    "funnel_limits",
    "jeffreys_interval",
    "kaplan_meier",
    "level_label",
    "mid_p_interval",
    "observed_expected",
    "oe_cusum",
    "pool_estimates",
    "pool_proportions",
    "proportion_interval",
    "reliability_note",
    "risk_adjusted_cusum",
    "risk_adjusted_cusum_limit",
    "risk_adjusted_cusum_limits",
    "shrink_oe",
    "steiner_weights",
    "survival_at",
    "tau2_estimate",
    "wilson_interval",
]
