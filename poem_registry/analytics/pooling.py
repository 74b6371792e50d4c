"""Registry-wide random-effects pooled estimates of key measures (clinical spec §8.3).

Sites are the studies. Per key measure and stratum, :func:`poem_registry.stats.pool_proportions`
with the seed's model (random), transform (logit) and one row per tau2 method in
``pooling_tau2_methods`` (REML = registry default, ``is_default``; DL for comparability
with S4/Barbieri). The interval is Hartung-Knapp when fewer than
``pooling_hartung_knapp_below_k`` sites are pooled (``ci_method``).

* Stratum ``ALL``: the all-time site rows of ``marts.mart_measures`` (same denominator
  type as the funnel), so the pooled counts agree with the measures mart.
* Diagnosis strata (diagnosis codes): ``marts.mart_measure_members`` (one row per measure x
  denominator variant x index POEM with ``in_numerator``; ``source = 'mart_measure_members'``),
  grouped by diagnosis and site. Without that mart, per-procedure outcomes from the other
  marts (:data:`STRATUM_MEASURES`, ``source = 'procedures'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from poem_registry.stats import pool_proportions

from .config import StatisticsConfig
from .marts import bool_series

POOLED_COLUMNS: dict[str, str] = {
    "measure_id": "varchar",
    "denominator_type": "varchar",
    "stratum": "varchar",
    "period_type": "varchar",
    "source": "varchar",
    "k": "integer",
    "n_total": "bigint",
    "events": "bigint",
    "estimate": "double",
    "ci_low": "double",
    "ci_high": "double",
    "ci_method": "varchar",
    "pi_low": "double",
    "pi_high": "double",
    "tau2": "double",
    "tau2_dl": "double",
    "i2": "double",
    "q": "double",
    "q_df": "integer",
    "q_p": "double",
    "model": "varchar",
    "transform": "varchar",
    "tau2_method": "varchar",
    "is_default": "boolean",
    "n_continuity_corrected": "integer",
}


@dataclass(frozen=True)
class StratumMeasure:
    """How to count one measure per procedure (index POEMs only).

    ``kind``: ``flag`` (numerator = ``column`` is True, denominator = all index POEMs with a
    non-missing ``column``), ``window_success`` (success column ``column`` in ``window``;
    PP = assessed, ITT = eligible with success counted only when assessed) or
    ``followup`` (assessed among eligible in ``window``).
    """

    kind: str
    column: str | None = None
    window: str | None = None


#: Per-procedure definitions mirroring ``seeds/measure_catalog.csv`` for the key measures.
STRATUM_MEASURES: dict[str, StratumMeasure] = {
    "P1": StratumMeasure("flag", "technical_success_flag"),
    "P2": StratumMeasure("window_success", "success_eckardt", "w_3_6m"),
    "P3": StratumMeasure("window_success", "success_composite", "w_12m"),
    "P5": StratumMeasure("flag", "ae_mild_plus_30d"),
    "P6M": StratumMeasure("flag", "ae_moderate_plus_30d"),
    "P9": StratumMeasure("followup", None, "w_12m"),
}


def _counts(p: pd.DataFrame, spec: StratumMeasure, denominator_type: str) -> pd.DataFrame:
    """Per procedure ``in_denominator`` and ``in_numerator`` for one measure."""
    p = p[p["is_index_poem"]]
    if spec.kind == "flag":
        col = p[spec.column]
        den = col.notna()
        num = bool_series(col)
    elif spec.kind == "window_success":
        w = spec.window
        success = bool_series(p[f"{spec.column}_{w}"])
        pp = p[f"composite_known_{w}"] if spec.column == "success_composite" else p[f"assessed_{w}"]
        den = p[f"eligible_{w}"] if denominator_type == "ITT" else pp
        num = success
    else:  # followup completeness
        w = spec.window
        den = p[f"eligible_{w}"]
        num = p[f"assessed_{w}"] & den
    return pd.DataFrame(
        {
            "site_id": p["site_id"],
            "stratum": p["diagnosis"].fillna("unknown").astype(str),
            "den": den.astype(bool),
            "num": (num.astype(bool) & den.astype(bool)),
        }
    )


def _pool_rows(events: np.ndarray, totals: np.ndarray, cfg: StatisticsConfig, base: dict) -> list[dict]:
    ok = totals > 0
    events, totals = events[ok], totals[ok]
    if totals.size == 0:
        return []
    rows = []
    k = int(totals.size)
    hk = k < cfg.pooling_hartung_knapp_below_k and k > 1
    for i, method in enumerate(cfg.pooling_tau2_methods):
        res = pool_proportions(
            events,
            totals,
            model=cfg.pooling_model,
            transform=cfg.pooling_transform,
            tau2=method,
            confidence=cfg.pooling_confidence,
            continuity=cfg.pooling_continuity,
            hartung_knapp=hk,
        )
        rows.append(
            {
                **base,
                "k": k,
                "n_total": int(totals.sum()),
                "events": int(events.sum()),
                "estimate": res.estimate,
                "ci_low": res.ci_low,
                "ci_high": res.ci_high,
                "ci_method": res.transformed.ci_method,
                "pi_low": res.pi_low,
                "pi_high": res.pi_high,
                "tau2": res.tau2,
                "tau2_dl": res.tau2_dl,
                "i2": res.i2,
                "q": res.q,
                "q_df": res.q_df,
                "q_p": None if np.isnan(res.q_p) else res.q_p,
                "model": res.model,
                "transform": res.transform,
                "tau2_method": res.tau2_method or method,
                "is_default": i == 0,
                "n_continuity_corrected": len(res.continuity_corrected),
            }
        )
    return rows


def compute_pooled(
    measures: pd.DataFrame,
    members: pd.DataFrame | None,
    procedures: pd.DataFrame,
    key_measures: list[str],
    cfg: StatisticsConfig,
) -> pd.DataFrame:
    """``analytics.pooled`` rows (without ``as_of``/``computed_at``).

    ``measures`` are the funnel-selected all-time site rows (one denominator type per measure);
    ``members`` is ``marts.mart_measure_members`` counted per measure, denominator, site and diagnosis
    (:func:`.marts.read_member_counts`; None when absent: fall back to
    :data:`STRATUM_MEASURES` on the procedure frame).
    """
    rows: list[dict] = []
    for measure_id in sorted(key_measures):
        m = measures[(measures["measure_id"] == measure_id) & (measures["period_type"] == "all_time")]
        m = m.sort_values("site_id", kind="mergesort")
        denominator_type = str(m["denominator_type"].iloc[0]) if not m.empty else "standard"
        if not m.empty:
            base = {
                "measure_id": measure_id,
                "denominator_type": denominator_type,
                "stratum": "ALL",
                "period_type": "all_time",
                "source": "mart_measures",
            }
            rows += _pool_rows(
                pd.to_numeric(m["numerator"]).fillna(0).to_numpy(dtype=float),
                pd.to_numeric(m["denominator"]).fillna(0).to_numpy(dtype=float),
                cfg,
                base,
            )
        if members is not None:
            mm = members[
                (members["measure_id"] == measure_id) & (members["denominator_type"] == denominator_type)
            ]
            c = pd.DataFrame(
                {
                    "site_id": mm["site_id"],
                    "stratum": mm["diagnosis"].fillna("unknown").astype(str),
                    "den": mm["den"],
                    "num": mm["num"],
                }
            )
            source = "mart_measure_members"
        else:
            spec = STRATUM_MEASURES.get(measure_id)
            if spec is None or procedures.empty:
                continue
            c = _counts(procedures, spec, denominator_type)
            source = "procedures"
        if c.empty:
            continue
        by = c.groupby(["stratum", "site_id"], sort=True)[["num", "den"]].sum().reset_index()
        for stratum, g in by.groupby("stratum", sort=True):
            base = {
                "measure_id": measure_id,
                "denominator_type": denominator_type,
                "stratum": stratum,
                "period_type": "all_time",
                "source": source,
            }
            rows += _pool_rows(g["num"].to_numpy(dtype=float), g["den"].to_numpy(dtype=float), cfg, base)
    return pd.DataFrame(rows, columns=list(POOLED_COLUMNS))
