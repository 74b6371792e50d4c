"""Kaplan-Meier durability of clinical success (clinical spec §6.2-6.3).

Input: ``marts.mart_durability_input`` (one row per index POEM: time in days to the
first clinical failure, or to the last assessment with success when censored, and an
event flag). Per site and for ``ALL``: :func:`poem_registry.stats.kaplan_meier`
(Greenwood variance, interval on the ``km_ci`` scale) and
:func:`poem_registry.stats.survival_at` at ``km_years``. Past the last observation
S(t) is NULL (not estimable), with ``n`` and ``events`` still filled in.
``km_curve`` starts with a row at day 0 (S = 1) so the step curve can be drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from poem_registry.stats import kaplan_meier, survival_at

from .config import StatisticsConfig
from .incremental import Incremental, UnitTable
from .marts import bool_series

DURABILITY_COLUMNS: dict[str, str] = {
    "site_id": "varchar",
    "years": "double",
    "time_days": "double",
    "n": "integer",
    "events": "integer",
    "at_risk": "integer",
    "survival": "double",
    "se": "double",
    "ci_low": "double",
    "ci_high": "double",
    "ci_method": "varchar",
}
KM_CURVE_COLUMNS: dict[str, str] = {
    "site_id": "varchar",
    "time_days": "double",
    "at_risk": "integer",
    "events": "integer",
    "censored": "integer",
    "survival": "double",
    "se": "double",
    "ci_low": "double",
    "ci_high": "double",
}


UNIT_KIND = "durability"
ALL_SITES = "ALL"
INPUT_COLUMNS = ["site_id", "procedure_sk", "time_days", "event"]


def durability_inputs(data: pd.DataFrame) -> pd.DataFrame:
    """Usable rows (time known and >= 0, event 0/1) in a fixed order, plus every row again as site ``ALL``."""
    d = data.copy()
    d["procedure_sk"] = d["procedure_sk"].astype(str)
    d["time_days"] = pd.to_numeric(d["time_days"], errors="coerce").astype(float)
    d["event"] = bool_series(d["event"], missing=False).astype(int)
    d = d.loc[d["time_days"].notna() & (d["time_days"] >= 0), INPUT_COLUMNS]
    sites = d[d["site_id"].notna()].assign(site_id=lambda x: x["site_id"].astype(str))
    d = pd.concat([sites, d.assign(site_id=ALL_SITES)], ignore_index=True) if not d.empty else sites
    return d.sort_values(INPUT_COLUMNS, kind="mergesort").reset_index(drop=True)


def durability_rows(d: pd.DataFrame, cfg: StatisticsConfig) -> dict[str, pd.DataFrame]:
    """``durability`` and ``km_curve`` rows of every unit in ``d`` (:func:`durability_inputs` rows)."""
    summary: list[pd.DataFrame] = []
    curves: list[pd.DataFrame] = []
    days = [y * cfg.km_days_per_year for y in cfg.km_years]
    for site, g in d.groupby("site_id", sort=True):
        km = kaplan_meier(
            g["time_days"].to_numpy(dtype=float), g["event"].to_numpy(dtype=int), cfg.km_confidence, cfg.km_ci
        )
        points = survival_at(km, days)
        summary.append(
            pd.DataFrame(
                {
                    "site_id": site,
                    "years": list(cfg.km_years),
                    "time_days": [pt.time for pt in points],
                    "n": km.n,
                    "events": [int(km.events[km.time <= pt.time].sum()) for pt in points],
                    "at_risk": [pt.at_risk for pt in points],
                    "survival": [pt.survival for pt in points],
                    "se": [pt.greenwood_se for pt in points],
                    "ci_low": [pt.ci_low for pt in points],
                    "ci_high": [pt.ci_high for pt in points],
                    "ci_method": f"greenwood_{km.ci}",
                }
            )
        )
        curve = pd.DataFrame(
            {
                "site_id": site,
                "time_days": km.time.astype(float),
                "at_risk": km.at_risk.astype(int),
                "events": km.events.astype(int),
                "censored": km.censored.astype(int),
                "survival": km.survival.astype(float),
                "se": _nan_to_none(km.greenwood_se),
                "ci_low": _nan_to_none(km.ci_low),
                "ci_high": _nan_to_none(km.ci_high),
            }
        )
        if km.time[0] > 0:  # start the step curve at day 0 (S = 1)
            start = {"site_id": site, "time_days": 0.0, "at_risk": km.n, "events": 0, "censored": 0}
            start.update(survival=1.0, se=0.0, ci_low=1.0, ci_high=1.0)
            curve = pd.concat([pd.DataFrame([start]), curve], ignore_index=True)
        curves.append(curve)
    return {
        "durability": _frame(summary, DURABILITY_COLUMNS),
        "km_curve": _frame(curves, KM_CURVE_COLUMNS),
    }


def compute_durability(
    data: pd.DataFrame, cfg: StatisticsConfig, incremental: Incremental | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(analytics.durability, analytics.km_curve)`` rows (without ``as_of``/``computed_at``).

    With ``incremental``, sites (and ``ALL``) whose input rows and configuration are
    unchanged since the last run keep their stored rows.
    """
    d = durability_inputs(data)
    if incremental is None:
        out = durability_rows(d, cfg)
    else:
        tables = [
            UnitTable("durability", DURABILITY_COLUMNS, "site_id"),
            UnitTable("km_curve", KM_CURVE_COLUMNS, "site_id"),
        ]
        fingerprints = incremental.fingerprints(UNIT_KIND, d, "site_id", INPUT_COLUMNS)
        out = incremental.assemble(
            UNIT_KIND, fingerprints, tables, lambda sites: durability_rows(d[d["site_id"].isin(sites)], cfg)
        )
    return out["durability"], out["km_curve"]


def _frame(parts: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
    return df.reindex(columns=list(columns))


def _nan_to_none(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=float).astype(object)
    out[np.isnan(np.asarray(values, dtype=float))] = None
    return out
