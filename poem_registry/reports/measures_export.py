"""``measures.csv``: every measure for every site and period, small cells blank.

Columns (exactly): measure_id, measure_name, site, period_start, period_end,
numerator, denominator, rate, ci_low, ci_high, ci_method, suppressed. The file
compares sites, so counts from 1 to 10 and every count that would let one be
worked out are blank with ``suppressed`` = true. Measures with a per-protocol and
an intention-to-treat denominator have one row each; the denominator kind is
appended to ``measure_name`` (``... [PP]``). Written with
:func:`poem_registry.safe_csv.write_csv`, which neutralises spreadsheet formulas.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from poem_registry.reports.data import ReportData
from poem_registry.reports.suppression import MeasureSuppression
from poem_registry.safe_csv import write_csv

MEASURES_CSV_COLUMNS = [
    "measure_id",
    "measure_name",
    "site",
    "period_start",
    "period_end",
    "numerator",
    "denominator",
    "rate",
    "ci_low",
    "ci_high",
    "ci_method",
    "suppressed",
]


def measure_suppression(data: ReportData) -> MeasureSuppression:
    """The edition's suppression of every measure row (all sites and periods), worked out once."""
    return data.memo(("measure_suppression",), lambda: MeasureSuppression(data.read("measures")))


def suppressed_measures(
    data: ReportData, own_site: str | None = None, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """Measure rows (all periods, or the positions ``rows``), suppressed across sites and over time as
    ``own_site`` may see them.

    ``own_site`` None is the cross-site view (system report, measures.csv). Every view comes from the
    edition's one :func:`measure_suppression`; callers get their own frame.
    """
    return measure_suppression(data).view(own_site, rows)


def measures_frame(data: ReportData) -> pd.DataFrame:
    """The suppressed cross-site measures table in ``measures.csv`` layout, in a stable order."""
    m = suppressed_measures(data)
    if m.empty:
        return pd.DataFrame(columns=MEASURES_CSV_COLUMNS)
    den = m["denominator_type"].fillna("na").astype(str)
    name = m["measure_name"].fillna("").astype(str)
    m["measure_name"] = name.where(~den.isin(["PP", "ITT"]), name + " [" + den + "]")
    m["site"] = m["site_id"]
    for col in ("period_start", "period_end"):
        m[col] = pd.to_datetime(m[col]).dt.strftime("%Y-%m-%d")
    for col in ("numerator", "denominator"):
        m[col] = pd.to_numeric(m[col], errors="coerce").round().astype("Int64")
    for col in ("rate", "ci_low", "ci_high"):
        m[col] = pd.to_numeric(m[col]).round(6)
    m["suppressed"] = np.where(m["suppressed"].astype(bool), "true", "false")
    m = m.sort_values(["measure_id", "measure_name", "site", "period_start", "period_end"], kind="mergesort")
    return m.loc[:, MEASURES_CSV_COLUMNS].reset_index(drop=True)


def export_measures(con: duckdb.DuckDBPyConnection, out_path: Path) -> int:
    """Write ``measures.csv`` for the warehouse behind ``con`` to ``out_path``; returns the number of rows."""
    frame = measures_frame(ReportData(con))
    write_csv(frame, Path(out_path))
    return len(frame)
