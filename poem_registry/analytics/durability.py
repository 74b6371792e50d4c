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


def compute_durability(data: pd.DataFrame, cfg: StatisticsConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(analytics.durability, analytics.km_curve)`` rows (without ``as_of``/``computed_at``)."""
    d = data.copy()
    d["time_days"] = pd.to_numeric(d["time_days"], errors="coerce")
    d["event"] = bool_series(d["event"], missing=False).astype(int)
    d = d[d["time_days"].notna() & (d["time_days"] >= 0)]
    groups: list[tuple[str, pd.DataFrame]] = [(str(s), g) for s, g in d.groupby("site_id", sort=True)]
    if not d.empty:
        groups.append(("ALL", d))
    summary: list[dict] = []
    curves: list[dict] = []
    for site, g in groups:
        t = g["time_days"].to_numpy(dtype=float)
        e = g["event"].to_numpy(dtype=int)
        km = kaplan_meier(t, e, confidence=cfg.km_confidence, ci=cfg.km_ci)
        days = [y * cfg.km_days_per_year for y in cfg.km_years]
        for years, point in zip(cfg.km_years, survival_at(km, days), strict=True):
            summary.append(
                {
                    "site_id": site,
                    "years": years,
                    "time_days": point.time,
                    "n": km.n,
                    "events": int(km.events[km.time <= point.time].sum()),
                    "at_risk": point.at_risk,
                    "survival": point.survival,
                    "se": point.greenwood_se,
                    "ci_low": point.ci_low,
                    "ci_high": point.ci_high,
                    "ci_method": f"greenwood_{km.ci}",
                }
            )
        if km.time[0] > 0:
            curves.append(
                {
                    "site_id": site,
                    "time_days": 0.0,
                    "at_risk": km.n,
                    "events": 0,
                    "censored": 0,
                    "survival": 1.0,
                    "se": 0.0,
                    "ci_low": 1.0,
                    "ci_high": 1.0,
                }
            )
        for i in range(km.time.size):
            curves.append(
                {
                    "site_id": site,
                    "time_days": float(km.time[i]),
                    "at_risk": int(km.at_risk[i]),
                    "events": int(km.events[i]),
                    "censored": int(km.censored[i]),
                    "survival": float(km.survival[i]),
                    "se": _nan_to_none(km.greenwood_se[i]),
                    "ci_low": _nan_to_none(km.ci_low[i]),
                    "ci_high": _nan_to_none(km.ci_high[i]),
                }
            )
    return (
        pd.DataFrame(summary, columns=list(DURABILITY_COLUMNS)),
        pd.DataFrame(curves, columns=list(KM_CURVE_COLUMNS)),
    )


def _nan_to_none(v: float) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v
