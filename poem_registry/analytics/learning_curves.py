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
  ``racusum_h`` is simulated per operator over the operator's own risk sequence
  (seeded from ``random_seed`` and a hash of the operator key: deterministic).
* ``signal``: comma-separated events at this case: ``racusum`` (X > h),
  ``bernoulli_h1`` (crosses the unacceptable boundary), ``bernoulli_h0`` (crosses the
  acceptable boundary); NULL when none.

``operator_label`` is ``Operator k``, numbered within each site by the operator's first
case date at that site (ties: first ``procedure_sk``); the key itself is never a label.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from poem_registry.stats import (
    bernoulli_cusum,
    cusum_observed_minus_mean,
    risk_adjusted_cusum,
    risk_adjusted_cusum_limit,
)

from .config import StatisticsConfig
from .risk_adjustment import fit_casemix

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


def operator_seed(base_seed: int, operator_key: str) -> int:
    """Deterministic per-operator seed (independent of Python's hash randomisation)."""
    digest = hashlib.sha256(f"{base_seed}:{operator_key}".encode()).hexdigest()
    return int(digest[:15], 16)


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


def compute_learning_curves(p: pd.DataFrame, cfg: StatisticsConfig) -> pd.DataFrame:
    """``analytics.learning_curve`` rows (without ``as_of``/``computed_at``)."""
    cases = p[p["operator_key"].notna() & p["operator_case_number"].notna()].copy()
    if cases.empty:
        return pd.DataFrame(columns=list(LEARNING_CURVE_COLUMNS))
    cases["operator_case_number"] = cases["operator_case_number"].astype(int)
    cases = cases.sort_values(["operator_key", "operator_case_number", "procedure_sk"], kind="mergesort")
    cases = cases.reset_index(drop=True)
    fit = fit_casemix(cases, cases["composite_failure"].astype(float))
    cases["predicted_risk"] = fit.predicted
    labels = operator_labels(cases)
    window = cfg.composite_clinical_window
    out: list[pd.DataFrame] = []
    for op, g in cases.groupby("operator_key", sort=True):
        y = g["composite_failure"].astype(int).to_numpy()
        minutes = g["procedure_minutes"].to_numpy(dtype=float)
        has = np.isfinite(minutes)
        cum = np.full(minutes.size, np.nan)
        if has.any():
            cum[has] = cusum_observed_minus_mean(minutes[has])
        bc = bernoulli_cusum(y, p0=cfg.cusum_p0, p1=cfg.cusum_p1, alpha=cfg.cusum_alpha, beta=cfg.cusum_beta)
        risks = g["predicted_risk"].to_numpy(dtype=float)
        lim = risk_adjusted_cusum_limit(
            risks,
            odds_multiplier=cfg.racusum_odds_multiplier,
            false_signal_probability=cfg.racusum_false_signal_probability,
            n_simulations=cfg.racusum_n_simulations,
            seed=operator_seed(cfg.random_seed, str(op)),
            r0=cfg.racusum_r0,
        )
        ra = risk_adjusted_cusum(y, risks, cfg.racusum_odds_multiplier, cfg.racusum_r0, limit=lim.h)
        signals: list[list[str]] = [[] for _ in range(y.size)]
        for i in ra.signals:
            signals[i].append("racusum")
        for i in bc.signals_h1:
            signals[i].append("bernoulli_h1")
        for i in bc.signals_h0:
            signals[i].append("bernoulli_h0")
        frame = pd.DataFrame(
            {
                "operator_key": op,
                "operator_label": [labels[(s, op)] for s in g["site_id"]],
                "site_id": g["site_id"].to_numpy(),
                "case_number": g["operator_case_number"].to_numpy(),
                "procedure_sk": g["procedure_sk"].astype(str).to_numpy(),
                "procedure_date": g["procedure_date"].to_numpy(),
                "procedure_minutes": minutes,
                "cusum_minutes": cum,
                "technical_failure": g["technical_failure"]
                .map(lambda v: None if pd.isna(v) else bool(v))
                .to_numpy(),
                "ae_moderate_plus_30d": g["ae_composite_30d"].astype(bool).to_numpy(),
                "clinical_failure_window": g[f"clinical_failure_{window}"].to_numpy(),
                "composite_failure": y.astype(bool),
                "bernoulli_cusum": bc.cusum,
                "bernoulli_h0": bc.h0,
                "bernoulli_h1": bc.h1,
                "racusum": ra.cusum,
                "racusum_h": lim.h,
                "racusum_false_signal_probability": cfg.racusum_false_signal_probability,
                "predicted_risk": risks,
                "p0": bc.p0,
                "p1": bc.p1,
                "alpha": bc.alpha,
                "beta": bc.beta,
                "odds_multiplier": cfg.racusum_odds_multiplier,
                "signal": [",".join(s) if s else None for s in signals],
                "model_terms": fit.description,
                "note": NOTE.format(ae=_severity_name(cfg.composite_ae_min_severity_rank), w=window),
            }
        )
        out.append(frame)
    df = pd.concat(out, ignore_index=True)
    return df.reindex(columns=list(LEARNING_CURVE_COLUMNS))


def _severity_name(rank: int) -> str:
    return {1: "mild", 2: "moderate", 3: "severe", 4: "fatal"}.get(int(rank), f"rank {rank}")
