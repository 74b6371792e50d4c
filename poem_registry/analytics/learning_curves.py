"""Operator learning curves (clinical spec §7.2-7.3).

Unit: the operator across sites (``operator_key`` is a registry-wide pseudonym),
cases ordered by ``fct_procedure.operator_case_number`` (in-scope POEMs). Per case:

* ``cusum_minutes``: observed-minus-mean CUSUM of procedure minutes over the operator's
  cases with a recorded time (NULL where the time is missing).
* ``bernoulli_cusum`` with ``bernoulli_h0``/``bernoulli_h1``: non-resetting Bernoulli
  CUSUM of the composite failure (see :mod:`.outcomes`; a missing component counts as
  not a failure), parameters ``p0, p1, alpha, beta`` from the seed.
* ``racusum``: Steiner risk-adjusted CUSUM with ``predicted_risk`` from the registry-wide
  case-mix model of the composite failure (operator experience excluded);
  ``racusum_h`` is the limit for an operator with this operator's number of cases drawn
  from the registry's case mix: one seeded simulation (``random_seed``) resampling every
  case's predicted risk gives h(n) for all operators at once
  (:func:`poem_registry.stats.risk_adjusted_cusum_limits`; ``METHODS.md``).
* ``signal``: comma-separated events at this case: ``racusum`` (X > h),
  ``bernoulli_h1`` (crosses the unacceptable boundary), ``bernoulli_h0`` (crosses the
  acceptable boundary); NULL when none.

``operator_label`` is ``Operator k``, numbered within each site by the operator's first
case date at that site (ties: first ``procedure_sk``); the key itself is never a label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from poem_registry.stats import (
    bernoulli_cusum,
    cusum_observed_minus_mean,
    risk_adjusted_cusum,
    risk_adjusted_cusum_limits,
)

from .config import StatisticsConfig
from .incremental import Incremental, UnitTable
from .marts import bool_series
from .risk_adjustment import fit_casemix

UNIT_KIND = "learning_curve"

LEARNING_CURVE_COLUMNS: dict[str, str] = {
    "operator_key": "varchar",
    "operator_label": "varchar",
    "site_id": "varchar",
    "case_number": "integer",
    "procedure_sk": "varchar",
    "procedure_date": "date",
    "procedure_minutes": "double",
    "cusum_minutes": "double",
    "technical_failure": "boolean",
    "ae_moderate_plus_30d": "boolean",
    "clinical_failure_window": "boolean",
    "composite_failure": "boolean",
    "bernoulli_cusum": "double",
    "bernoulli_h0": "double",
    "bernoulli_h1": "double",
    "racusum": "double",
    "racusum_h": "double",
    "racusum_false_signal_probability": "double",
    "predicted_risk": "double",
    "p0": "double",
    "p1": "double",
    "alpha": "double",
    "beta": "double",
    "odds_multiplier": "double",
    "signal": "varchar",
    "model_terms": "varchar",
    "note": "varchar",
}

NOTE = (
    "composite failure = technical failure OR ASGE {ae}+ AE within 30 days OR clinical failure in {w}; "
    "a missing component (no technical outcome recorded, no assessment in {w}) counts as not a failure"
)


def operator_labels(cases: pd.DataFrame) -> pd.Series:
    """``Operator k`` per (site_id, operator_key), numbered by first case date within the site."""
    first = (
        cases.groupby(["site_id", "operator_key"], sort=True)
        .agg(first_date=("procedure_date", "min"), first_sk=("procedure_sk", "min"))
        .reset_index()
        .sort_values(["site_id", "first_date", "first_sk"], kind="mergesort")
    )
    first["operator_label"] = "Operator " + (first.groupby("site_id").cumcount() + 1).astype(str)
    index = pd.MultiIndex.from_frame(first[["site_id", "operator_key"]])
    return pd.Series(first["operator_label"].to_numpy(), index=index)


#: per-case inputs of an operator's rows (with ``operator_label`` and ``racusum_h``: the unit fingerprint)
INPUT_COLUMNS = [
    "operator_key",
    "operator_label",
    "site_id",
    "operator_case_number",
    "procedure_sk",
    "procedure_date",
    "procedure_minutes",
    "technical_failure",
    "ae_composite_30d",
    "clinical_failure_window",
    "composite_failure",
    "predicted_risk",
    "racusum_h",
]


def learning_curve_inputs(p: pd.DataFrame, cfg: StatisticsConfig) -> tuple[pd.DataFrame, str]:
    """In-scope operator cases in chart order with every per-case input, and the model description.

    Registry-wide steps: the case-mix fit (``predicted_risk``), the per-site operator labels
    and the RA-CUSUM limits h(n) (one simulation over all cases' predicted risks).
    """
    cases = p[p["operator_key"].notna() & p["operator_case_number"].notna()].copy()
    if cases.empty:
        return pd.DataFrame(columns=INPUT_COLUMNS), ""
    cases["operator_key"] = cases["operator_key"].astype(str)
    cases["operator_case_number"] = cases["operator_case_number"].astype(int)
    cases["procedure_sk"] = cases["procedure_sk"].astype(str)
    cases = cases.sort_values(["operator_key", "operator_case_number", "procedure_sk"], kind="mergesort")
    cases = cases.reset_index(drop=True)
    fit = fit_casemix(cases, cases["composite_failure"].astype(float))
    cases["predicted_risk"] = fit.predicted
    labels = operator_labels(cases).rename("operator_label")
    cases = cases.join(labels, on=["site_id", "operator_key"])
    cases["technical_failure"] = bool_series(cases["technical_failure"], missing=None)
    cases["ae_composite_30d"] = cases["ae_composite_30d"].astype(bool)
    cases["clinical_failure_window"] = cases[f"clinical_failure_{cfg.composite_clinical_window}"]
    cases["composite_failure"] = cases["composite_failure"].astype(bool)
    n_cases = cases.groupby("operator_key", sort=False)["operator_key"].transform("size").to_numpy()
    limits = risk_adjusted_cusum_limits(
        cases["predicted_risk"].to_numpy(dtype=float),
        np.unique(n_cases),
        odds_multiplier=cfg.racusum_odds_multiplier,
        false_signal_probability=cfg.racusum_false_signal_probability,
        n_simulations=cfg.racusum_n_simulations,
        seed=cfg.random_seed,
        r0=cfg.racusum_r0,
    )
    cases["racusum_h"] = limits.h[np.searchsorted(limits.horizons, n_cases)]
    return cases[INPUT_COLUMNS], fit.description


def learning_curve_rows(cases: pd.DataFrame, model_terms: str, cfg: StatisticsConfig) -> pd.DataFrame:
    """``analytics.learning_curve`` rows of the operators in ``cases`` (:func:`learning_curve_inputs` rows)."""
    if cases.empty:
        return pd.DataFrame(columns=list(LEARNING_CURVE_COLUMNS))
    ops = cases["operator_key"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ops[1:] != ops[:-1]])
    ends = np.r_[starts[1:], ops.size]
    y = cases["composite_failure"].to_numpy(dtype=int)
    minutes = cases["procedure_minutes"].to_numpy(dtype=float)
    risks = cases["predicted_risk"].to_numpy(dtype=float)
    limit = cases["racusum_h"].to_numpy(dtype=float)
    cum = np.full(ops.size, np.nan)
    bern = np.empty(ops.size)
    ra = np.empty(ops.size)
    sig_ra = np.zeros(ops.size, dtype=bool)
    sig_h1 = np.zeros(ops.size, dtype=bool)
    sig_h0 = np.zeros(ops.size, dtype=bool)
    bc = None
    for a, b in zip(starts, ends, strict=True):
        part = slice(a, b)
        has = np.isfinite(minutes[part])
        if has.any():
            cum[a:b][has] = cusum_observed_minus_mean(minutes[part][has])
        bc = bernoulli_cusum(
            y[part], p0=cfg.cusum_p0, p1=cfg.cusum_p1, alpha=cfg.cusum_alpha, beta=cfg.cusum_beta
        )
        rc = risk_adjusted_cusum(
            y[part], risks[part], cfg.racusum_odds_multiplier, cfg.racusum_r0, limit=limit[a]
        )
        bern[part] = bc.cusum
        ra[part] = rc.cusum
        sig_ra[a + np.asarray(rc.signals, dtype=int)] = True
        sig_h1[a + np.asarray(bc.signals_h1, dtype=int)] = True
        sig_h0[a + np.asarray(bc.signals_h0, dtype=int)] = True
    signal = _join_flags({"racusum": sig_ra, "bernoulli_h1": sig_h1, "bernoulli_h0": sig_h0})
    out = pd.DataFrame(
        {
            "operator_key": ops,
            "operator_label": cases["operator_label"].to_numpy(),
            "site_id": cases["site_id"].to_numpy(),
            "case_number": cases["operator_case_number"].to_numpy(),
            "procedure_sk": cases["procedure_sk"].to_numpy(),
            "procedure_date": cases["procedure_date"].to_numpy(),
            "procedure_minutes": minutes,
            "cusum_minutes": cum,
            "technical_failure": cases["technical_failure"].to_numpy(),
            "ae_moderate_plus_30d": cases["ae_composite_30d"].to_numpy(),
            "clinical_failure_window": cases["clinical_failure_window"].to_numpy(),
            "composite_failure": y.astype(bool),
            "bernoulli_cusum": bern,
            "bernoulli_h0": bc.h0,
            "bernoulli_h1": bc.h1,
            "racusum": ra,
            "racusum_h": limit,
            "racusum_false_signal_probability": cfg.racusum_false_signal_probability,
            "predicted_risk": risks,
            "p0": bc.p0,
            "p1": bc.p1,
            "alpha": bc.alpha,
            "beta": bc.beta,
            "odds_multiplier": cfg.racusum_odds_multiplier,
            "signal": signal,
            "model_terms": model_terms,
            "note": NOTE.format(
                ae=_severity_name(cfg.composite_ae_min_severity_rank), w=cfg.composite_clinical_window
            ),
        }
    )
    return out.reindex(columns=list(LEARNING_CURVE_COLUMNS))


def _join_flags(flags: dict[str, np.ndarray]) -> np.ndarray:
    """Per row the comma-separated names whose flag is set (in ``flags`` order); None when none."""
    n = next(iter(flags.values())).size
    text = pd.Series("", index=range(n), dtype=object)
    for name, flag in flags.items():
        text = text.where(~flag, text + name + ",")
    return text.str.rstrip(",").replace("", None).to_numpy(dtype=object)


def compute_learning_curves(
    p: pd.DataFrame, cfg: StatisticsConfig, incremental: Incremental | None = None
) -> pd.DataFrame:
    """``analytics.learning_curve`` rows (without ``as_of``/``computed_at``).

    With ``incremental``, operators whose inputs (:data:`INPUT_COLUMNS`, model description,
    configuration) are unchanged since the last run keep their stored rows.
    """
    cases, model_terms = learning_curve_inputs(p, cfg)
    if incremental is None:
        return learning_curve_rows(cases, model_terms, cfg)
    table = UnitTable("learning_curve", LEARNING_CURVE_COLUMNS, "operator_key")
    fingerprints = incremental.fingerprints(
        UNIT_KIND, cases, "operator_key", INPUT_COLUMNS, extra=model_terms
    )

    def compute(operators: list[str]) -> dict[str, pd.DataFrame]:
        todo = cases[cases["operator_key"].isin(operators)]
        return {table.name: learning_curve_rows(todo, model_terms, cfg)}

    return incremental.assemble(UNIT_KIND, fingerprints, [table], compute)[table.name]


def _severity_name(rank: int) -> str:
    return {1: "mild", 2: "moderate", 3: "severe", 4: "fatal"}.get(int(rank), f"rank {rank}")
