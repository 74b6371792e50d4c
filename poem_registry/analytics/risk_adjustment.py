"""Registry-wide case-mix model and per-site observed/expected ratios (spec §7.3, §8.4).

Predictors (spec §7.3): age (years, capped), sigmoid or advanced-sigmoid morphology,
type III achalasia or a spastic disorder, prior Heller myotomy or POEM, Chagas disease.
Operator experience is deliberately *not* a predictor (the model monitors operators).
Missing age is imputed with the registry median; a missing yes/no predictor counts as
no. A predictor without variation in the fitted population is dropped (and said so
in ``model_terms``). Fitting, O/E, reliability and shrinkage are
:mod:`poem_registry.stats` functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from poem_registry.stats import (
    fit_logistic_risk_model,
    observed_expected,
    reliability_note,
    shrink_oe,
)

from .config import StatisticsConfig
from .marts import bool_series

CASEMIX_TERMS: tuple[str, ...] = (
    "age_years",
    "sigmoid_morphology",
    "type_iii_or_spastic",
    "prior_heller_or_poem",
    "chagas",
)
SIGMOID_MORPHOLOGIES = ("sigmoid", "advanced_sigmoid")
TYPE_III_OR_SPASTIC = ("achalasia_type_3", "distal_esophageal_spasm", "hypercontractile_esophagus")


def casemix_features(p: pd.DataFrame) -> pd.DataFrame:
    """The case-mix design columns (:data:`CASEMIX_TERMS`) for procedure rows ``p``."""
    age = pd.to_numeric(p["age"], errors="coerce").astype(float)
    median = float(age.median()) if age.notna().any() else 0.0
    sigmoid = bool_series(p["sigmoid_esophagus"], missing=None)
    from_morph = p["esophageal_morphology"].isin(SIGMOID_MORPHOLOGIES)
    sigmoid = sigmoid.where(sigmoid.notna(), from_morph).astype(bool)
    spastic = p["diagnosis"].isin(TYPE_III_OR_SPASTIC) | (p["diagnosis_group"] == "spastic_disorder")
    prior = bool_series(p["prior_heller"]) | bool_series(p["prior_poem"])
    return pd.DataFrame(
        {
            "age_years": age.fillna(median).to_numpy(),
            "sigmoid_morphology": sigmoid.astype(float).to_numpy(),
            "type_iii_or_spastic": spastic.astype(float).to_numpy(),
            "prior_heller_or_poem": prior.astype(float).to_numpy(),
            "chagas": bool_series(p["chagas"]).astype(float).to_numpy(),
        },
        index=p.index,
    )


@dataclass(frozen=True)
class CasemixFit:
    """Predicted risks for the fitted rows and a one-line description of the model."""

    predicted: np.ndarray
    description: str


def fit_casemix(p: pd.DataFrame, outcome: pd.Series) -> CasemixFit:
    """Fit the logistic case-mix model of ``outcome`` (0/1) on ``p`` and predict for the same rows.

    Adapter around :func:`poem_registry.stats.fit_logistic_risk_model`: drops
    predictors without variation; with an outcome that never (or always) occurs no
    model can be fitted, and every case gets the observed rate (``method=constant``).
    """
    y = outcome.astype(float).to_numpy()
    x = casemix_features(p)
    kept = [c for c in CASEMIX_TERMS if x[c].nunique() > 1]
    dropped = [c for c in CASEMIX_TERMS if c not in kept]
    notes = [f"dropped (no variation): {', '.join(dropped)}"] if dropped else []
    if y.size == 0:
        return CasemixFit(np.empty(0), "no cases")
    if y.sum() in (0, y.size) or not kept:
        rate = float(y.mean())
        notes.insert(0, "outcome without variation or no usable predictor: constant risk = observed rate")
        return CasemixFit(np.full(y.size, rate), _describe("constant", {"intercept": rate}, y, None, notes))
    model = fit_logistic_risk_model(x[kept].to_numpy(), y, kept)
    notes.extend(model.notes)
    predicted = model.predict(x[kept].to_numpy())
    return CasemixFit(predicted, _describe(model.method, model.coefficients, y, model.c_statistic, notes))


def _describe(
    method: str, coefficients: dict[str, float], y: np.ndarray, c: float | None, notes: list[str]
) -> str:
    terms = "; ".join(f"{k}={v:.4f}" for k, v in coefficients.items())
    c_text = "n/a" if c is None or math.isnan(c) else f"{c:.3f}"
    text = (
        f"logistic ({method}) on {y.size} procedures, {int(y.sum())} events, c={c_text}: {terms}"
        " [operator experience excluded]"
    )
    return text + (" | " + " | ".join(notes) if notes else "")


@dataclass(frozen=True)
class OEOutcome:
    """An O/E outcome: a failure flag over a population of procedures."""

    measure_id: str  # the catalog measure whose complement (failure) this is
    outcome: str
    column: str  # procedure-frame column with the 0/1 failure
    population: str  # procedure-frame boolean column selecting the denominator


def oe_outcomes(cfg: StatisticsConfig) -> tuple[OEOutcome, ...]:
    """The key outcome measures compared by O/E (brief: technical failure, 30-day AE, clinical failure)."""
    w = cfg.oe_clinical_window
    return (
        OEOutcome("P1", "technical_failure", "technical_failure", "oe_pop_technical"),
        OEOutcome("P5", "ae_30d", "ae_oe_30d", "is_index_poem"),
        OEOutcome("P3", f"clinical_failure_{w}", f"clinical_failure_{w}", f"oe_pop_clinical_{w}"),
    )


def site_oe(p: pd.DataFrame, cfg: StatisticsConfig) -> pd.DataFrame:
    """``analytics.site_oe`` rows (without ``as_of``/``computed_at``)."""
    p = p.copy()
    p["oe_pop_technical"] = p["is_index_poem"] & p["technical_failure"].notna()
    w = cfg.oe_clinical_window
    p[f"oe_pop_clinical_{w}"] = p["is_index_poem"] & p[f"composite_known_{w}"]
    rows: list[dict] = []
    for spec in oe_outcomes(cfg):
        pop = p[p[spec.population].astype(bool)].reset_index(drop=True)
        if pop.empty:
            continue
        y = pop[spec.column].astype(bool).astype(float)
        fit = fit_casemix(pop, y)
        pop = pop.assign(y=y.to_numpy(), p_hat=fit.predicted)
        overall = float(y.mean())
        per_site = []
        for site, s in pop.groupby("site_id", sort=True):
            n, e = len(s), float(s["p_hat"].sum())
            rel = reliability_note(n, e, cfg.oe_min_expected_events, cfg.oe_min_procedures)
            row = {
                "measure_id": spec.measure_id,
                "outcome": spec.outcome,
                "site_id": site,
                "n": n,
                "observed": float(s["y"].sum()),
                "expected": e,
                "oe": None,
                "ci_low": None,
                "ci_high": None,
                "shrunk_oe": None,
                "shrunk_ci_low": None,
                "shrunk_ci_high": None,
                "shrinkage_reliability": None,
                "risk_adjusted_rate": None,
                "reliable": bool(rel.reliable),
                "reliability_note": None
                if rel.reliable
                else f"too few cases to say anything: {n} procedures, {e:.1f} expected events",
                "model_terms": fit.description,
            }
            if e > 0:
                oe = observed_expected(
                    s["y"].to_numpy(), s["p_hat"].to_numpy(), cfg.oe_confidence, overall_rate=overall
                )
                row.update(
                    oe=oe.ratio, ci_low=oe.ci_low, ci_high=oe.ci_high, risk_adjusted_rate=oe.rate_adjusted
                )
            per_site.append(row)
        shrinkable = [r for r in per_site if r["expected"] > 0]
        if len(shrinkable) >= 2:
            sh = shrink_oe(
                [r["observed"] for r in shrinkable],
                [r["expected"] for r in shrinkable],
                cfg.oe_confidence,
                tau2=cfg.oe_shrinkage_tau2_method,
            )
            for i, r in enumerate(shrinkable):
                r.update(
                    shrunk_oe=float(sh.shrunken_ratio[i]),
                    shrunk_ci_low=float(sh.ci_low[i]),
                    shrunk_ci_high=float(sh.ci_high[i]),
                    shrinkage_reliability=float(sh.reliability[i]),
                )
        rows.extend(per_site)
    return pd.DataFrame(rows, columns=list(SITE_OE_COLUMNS))


SITE_OE_COLUMNS: dict[str, str] = {
    "measure_id": "varchar",
    "outcome": "varchar",
    "site_id": "varchar",
    "n": "integer",
    "observed": "double",
    "expected": "double",
    "oe": "double",
    "ci_low": "double",
    "ci_high": "double",
    "shrunk_oe": "double",
    "shrunk_ci_low": "double",
    "shrunk_ci_high": "double",
    "shrinkage_reliability": "double",
    "risk_adjusted_rate": "double",
    "reliable": "boolean",
    "reliability_note": "varchar",
    "model_terms": "varchar",
}
