"""Funnel plots of key measures across sites (clinical spec §8.1).

For each key measure (``measure_catalog.key_measure``) and period (``funnel_periods``:
all time and the latest complete calendar year before ``as_of``) the site rows of
``marts.mart_measures`` (not ``site_id = 'ALL'``) are compared with the registry
pooled proportion ``target = sum r / sum n`` (``target_source = 'registry'``). Limits
come from :func:`poem_registry.stats.funnel_limits`: exact binomial limits, or the
additive over-dispersion limits when there are at least
``funnel_min_sites_overdispersion`` sites and phi > 1 (registry default). With an
additive adjustment the limits are normal on the arcsine scale (``method='normal'``).
A target of exactly 0 or 1 has no binomial spread: every limit equals the target
(tiny adapter; the stats functions need 0 < p0 < 1).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from poem_registry.stats import classify_against_limits, estimate_overdispersion, funnel_limits, level_label

from .config import StatisticsConfig

FUNNEL_COLUMNS: dict[str, str] = {
    "measure_id": "varchar",
    "denominator_type": "varchar",
    "period_type": "varchar",
    "period_start": "date",
    "period_end": "date",
    "site_id": "varchar",
    "numerator": "bigint",
    "denominator": "bigint",
    "rate": "double",
    "target": "double",
    "target_source": "varchar",
    "method": "varchar",
    "overdispersion": "varchar",
    "phi": "double",
    "tau2": "double",
    "n_sites": "integer",
    "lower_95": "double",
    "upper_95": "double",
    "lower_998": "double",
    "upper_998": "double",
    "classification": "varchar",
}
CURVE_COLUMNS: dict[str, str] = {
    "measure_id": "varchar",
    "denominator_type": "varchar",
    "period_type": "varchar",
    "period_start": "date",
    "period_end": "date",
    "n": "bigint",
    "target": "double",
    "lower_95": "double",
    "upper_95": "double",
    "lower_998": "double",
    "upper_998": "double",
}


def _label(level: float) -> str:
    """Column/label suffix as in docs/analytics-tables.md: 0.95 -> '95', 0.998 -> '998'."""
    return level_label(level).replace("_", "")


def select_periods(measures: pd.DataFrame, cfg: StatisticsConfig, as_of: date) -> pd.DataFrame:
    """Rows of the configured periods: ``all_time`` and ``latest_complete_year`` (period_end <= as_of)."""
    m = measures.copy()
    m["period_start"] = pd.to_datetime(m["period_start"]).dt.date
    m["period_end"] = pd.to_datetime(m["period_end"]).dt.date
    keep = pd.Series(False, index=m.index)
    for period in cfg.funnel_periods:
        if period == "latest_complete_year":
            years = m[(m["period_type"] == "year") & (pd.to_datetime(m["period_end"]) <= pd.Timestamp(as_of))]
            if not years.empty:
                latest = max(years["period_start"])
                keep |= (m["period_type"] == "year") & (m["period_start"] == latest)
        else:
            keep |= m["period_type"] == period
    return m[keep]


def pick_denominator_type(m: pd.DataFrame, cfg: StatisticsConfig) -> pd.DataFrame:
    """Per measure keep the first configured denominator type present (no column -> keep all)."""
    if m["denominator_type"].isna().all():
        return m.assign(denominator_type=m["denominator_type"].fillna("standard"))
    parts = []
    for _, g in m.groupby("measure_id", sort=True):
        for dt in cfg.funnel_denominator_types:
            if (g["denominator_type"] == dt).any():
                parts.append(g[g["denominator_type"] == dt])
                break
    return pd.concat(parts) if parts else m.iloc[0:0]


def curve_grid(max_n: int, site_ns: np.ndarray, points: int) -> np.ndarray:
    """Every n up to ``points``, then geometric spacing to ``max_n``, plus every site's n."""
    max_n = max(int(max_n), 1)
    dense = np.arange(1, min(max_n, points) + 1)
    if max_n > points:
        geo = np.unique(np.round(np.geomspace(points, max_n, num=points)).astype(int))
        dense = np.concatenate([dense, geo])
    return np.unique(np.concatenate([dense, np.asarray(site_ns, dtype=int), [max_n]]))


def _limits(target: float, n: np.ndarray, cfg: StatisticsConfig, overdispersion: str | None, od) -> dict:
    out: dict[str, np.ndarray] = {}
    if 0.0 < target < 1.0:
        lim = funnel_limits(target, n, cfg.funnel_levels, cfg.funnel_method, overdispersion, od)
        for lv in cfg.funnel_levels:
            out[f"lower_{_label(lv)}"] = lim.lower_for(lv)
            out[f"upper_{_label(lv)}"] = lim.upper_for(lv)
    else:
        for lv in cfg.funnel_levels:
            out[f"lower_{_label(lv)}"] = np.full(n.size, target)
            out[f"upper_{_label(lv)}"] = np.full(n.size, target)
    return out


def compute_funnels(
    measures: pd.DataFrame, key_measures: list[str], cfg: StatisticsConfig, as_of: date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(analytics.funnel, analytics.funnel_curve)`` rows (without ``as_of``/``computed_at``)."""
    m = measures[(measures["site_id"] != "ALL") & measures["measure_id"].isin(key_measures)]
    m = pick_denominator_type(select_periods(m, cfg, as_of), cfg)
    rows: list[pd.DataFrame] = []
    curves: list[pd.DataFrame] = []
    keys = ["measure_id", "denominator_type", "period_type", "period_start", "period_end"]
    for key, g in m.groupby(keys, sort=True, dropna=False):
        g = g.sort_values("site_id", kind="mergesort")
        r = pd.to_numeric(g["numerator"]).fillna(0).astype(int).to_numpy()
        n = pd.to_numeric(g["denominator"]).fillna(0).astype(int).to_numpy()
        ok = n > 0
        if not ok.any():
            continue
        target = float(r[ok].sum() / n[ok].sum())
        n_sites = int(ok.sum())
        overdispersion, od, method = None, None, cfg.funnel_method
        if n_sites >= cfg.funnel_min_sites_overdispersion and 0.0 < target < 1.0:
            od = estimate_overdispersion(r[ok], n[ok], target, cfg.funnel_winsor_trim)
            if od.phi > 1.0:
                overdispersion = cfg.funnel_overdispersion_adjustment
                if overdispersion == "additive":
                    method = "normal"
        site = pd.DataFrame(dict(zip(keys, key, strict=True)), index=range(len(g)))
        site["site_id"] = g["site_id"].to_numpy()
        site["numerator"] = r
        site["denominator"] = n
        site["rate"] = np.where(ok, r / np.where(ok, n, 1), np.nan)
        site["target"] = target
        site["target_source"] = "registry"
        site["method"] = method
        site["overdispersion"] = overdispersion or "none"
        site["phi"] = None if od is None else od.phi
        site["tau2"] = None if od is None else od.tau2
        site["n_sites"] = n_sites
        lim = _limits(target, np.where(ok, n, 1), cfg, overdispersion, od)
        for col, values in lim.items():
            site[col] = np.where(ok, values, np.nan)
        if 0.0 < target < 1.0:
            labels = classify_against_limits(
                r[ok], n[ok], target, cfg.funnel_levels, cfg.funnel_method, overdispersion, od
            )
            labels = [lab.replace("99_8", "998") for lab in labels]
        else:
            labels = ["within"] * n_sites
        cls: list[str | None] = [None] * len(g)
        for i, lab in zip(np.flatnonzero(ok), labels, strict=True):
            cls[i] = lab
        site["classification"] = cls
        rows.append(site)

        grid = curve_grid(int(n.max()), n[ok], cfg.funnel_curve_points)
        curve = pd.DataFrame(dict(zip(keys, key, strict=True)), index=range(grid.size))
        curve["n"] = grid
        curve["target"] = target
        for col, values in _limits(target, grid, cfg, overdispersion, od).items():
            curve[col] = values
        curves.append(curve)
    funnel = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(FUNNEL_COLUMNS))
    curve_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=list(CURVE_COLUMNS))
    return funnel.reindex(columns=list(FUNNEL_COLUMNS)), curve_df.reindex(columns=list(CURVE_COLUMNS))
