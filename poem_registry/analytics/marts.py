"""Reading the dbt marts the statistics need, with one place for column names.

Each reader returns a pandas frame with *canonical* column names. Where a mart column
may carry one of several names (the marts are built concurrently), the candidates are
listed in order in :data:`COLUMNS`; the first present wins, so aligning a name is a
one-line change here. A column that is absent reads as missing (NULL/NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

MARTS = "marts"
SEEDS = "seeds"

#: canonical name -> candidate warehouse column names, per relation
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "fct_procedure": {
        "procedure_sk": ("procedure_sk",),
        "site_id": ("site_id",),
        "operator_key": ("operator_key",),
        "procedure_date": ("procedure_date",),
        "operator_case_number": ("operator_case_number",),
        "procedure_minutes": ("procedure_minutes",),
        "technical_success": ("technical_success",),
        "is_index_poem": ("is_index_poem",),
        "procedure_type_in_scope": ("procedure_type_in_scope",),
        "age": ("age_at_procedure_capped", "age_at_procedure"),
        "sigmoid_esophagus": ("sigmoid_esophagus",),
        "esophageal_morphology": ("esophageal_morphology",),
        "diagnosis": ("diagnosis", "cc_diagnosis"),
        "diagnosis_group": ("diagnosis_group",),
        "prior_heller": ("prior_heller",),
        "prior_poem": ("prior_poem",),
        "chagas": ("chagas",),
    },
    "fct_adverse_event": {
        "procedure_sk": ("procedure_sk",),
        "within_30_days": ("within_30_days",),
        "asge_severity_rank": ("asge_severity_rank",),
        "asge_severity": ("asge_severity",),
        "is_adverse_event": ("is_adverse_event",),
    },
    "mart_outcome_windows": {
        "procedure_sk": ("procedure_sk",),
        "window_code": ("window_code",),
        # composite: Eckardt <= 3 and no re-intervention (P2C/P3); False for a re-intervention
        # before the window even without an assessment
        "success_composite": ("success_eckardt_le3_no_reintervention", "clinical_success_composite"),
        # Eckardt <= 3 only (P2/P3E); NULL when not assessed
        "success_eckardt": ("success_eckardt_le3", "clinical_success_eckardt"),
        "assessed": ("assessed",),
        "eligible": ("eligible",),
        "window_closed": ("window_closed",),
        # composite outcome known (PP): closed window and (assessed or re-intervened before it)
        "composite_pp_denominator": ("composite_pp_denominator",),
    },
    "mart_measure_members": {
        "measure_id": ("measure_id",),
        "denominator_type": ("denominator_variant", "denominator_type"),
        "procedure_sk": ("procedure_sk",),
        "site_id": ("site_id",),
        "diagnosis": ("diagnosis",),
        "in_numerator": ("in_numerator",),
    },
    "mart_durability_input": {
        "procedure_sk": ("procedure_sk",),
        "site_id": ("site_id",),
        "time_days": ("time_days", "duration_days", "followup_days", "days_to_event_or_censor"),
        "event": ("event", "is_event", "failed", "failure"),
    },
    "mart_measures": {
        "measure_id": ("measure_id",),
        "site_id": ("site_id",),
        "period_type": ("period_type",),
        "period_start": ("period_start",),
        "period_end": ("period_end",),
        "denominator_type": ("denominator_variant", "denominator_type"),
        "numerator": ("numerator",),
        "denominator": ("denominator",),
    },
}

ASGE_RANK = {"incident_only": 0, "mild": 1, "moderate": 2, "severe": 3, "fatal": 4}


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> list[str]:
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position",
        [schema, name],
    ).fetchall()
    return [r[0] for r in rows]


def resolve(existing: Sequence[str], candidates: Sequence[str]) -> str | None:
    present = set(existing)
    return next((c for c in candidates if c in present), None)


def read_mart(con: duckdb.DuckDBPyConnection, name: str, schema: str = MARTS) -> pd.DataFrame:
    """Rows of ``schema.name`` with the canonical columns of :data:`COLUMNS` (missing -> NaN/None).

    Raises :class:`LookupError` when the relation does not exist.
    """
    existing = table_columns(con, schema, name)
    if not existing:
        raise LookupError(f"{schema}.{name} does not exist (run the dbt build first)")
    parts = []
    for canonical, candidates in COLUMNS[name].items():
        src = resolve(existing, candidates)
        parts.append(f'"{src}" as "{canonical}"' if src else f'null as "{canonical}"')
    return con.execute(f"select {', '.join(parts)} from {schema}.{name}").df()


def read_member_counts(con: duckdb.DuckDBPyConnection, schema: str = MARTS) -> pd.DataFrame:
    """``mart_measure_members`` counted per measure, denominator, site and diagnosis (in SQL).

    The members mart has one row per measure x denominator x POEM (about 20 per POEM);
    reading it whole into pandas took ~10 GB at 1M procedures, and pooling only needs the counts.
    Columns: measure_id, denominator_type, site_id, diagnosis, den, num.
    """
    existing = table_columns(con, schema, "mart_measure_members")
    cols = {c: resolve(existing, cands) for c, cands in COLUMNS["mart_measure_members"].items()}
    missing = [c for c in ("measure_id", "denominator_type", "site_id", "in_numerator") if not cols[c]]
    if missing:
        raise LookupError(f"{schema}.mart_measure_members lacks {missing} (run the dbt build first)")
    diagnosis = f'"{cols["diagnosis"]}"' if cols["diagnosis"] else "null"
    return con.execute(
        f'select "{cols["measure_id"]}" as measure_id, "{cols["denominator_type"]}" as denominator_type, '
        f'"{cols["site_id"]}" as site_id, {diagnosis} as diagnosis, count(*) as den, '
        f'count(*) filter (where cast("{cols["in_numerator"]}" as boolean)) as num '
        f"from {schema}.mart_measure_members group by all order by all"
    ).df()


def mart_exists(con: duckdb.DuckDBPyConnection, name: str, schema: str = MARTS) -> bool:
    return bool(table_columns(con, schema, name))


def read_measure_catalog(con: duckdb.DuckDBPyConnection, dbt_project_dir: Path) -> pd.DataFrame:
    """``seeds.measure_catalog`` from the warehouse, else the seed CSV in the dbt project."""
    if table_columns(con, SEEDS, "measure_catalog"):
        df = con.execute(f"select measure_id, key_measure from {SEEDS}.measure_catalog").df()
    else:
        df = pd.read_csv(Path(dbt_project_dir) / "seeds" / "measure_catalog.csv")[
            ["measure_id", "key_measure"]
        ]
    df["key_measure"] = df["key_measure"].map(as_bool).fillna(False).astype(bool)
    return df


def as_bool(value: object) -> bool | None:
    """True/False for booleans, 0/1 and 'true'/'false' strings; None for missing (None, NaN, NA)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "t", "1", "yes", "y"):
            return True
        if text in ("false", "f", "0", "no", "n"):
            return False
        return None
    return bool(value)


def _bool_objects(series: pd.Series) -> np.ndarray:
    """:func:`as_bool` of every value as an ``object`` array of True/False/None, evaluated once per
    distinct value (``pd.factorize``) rather than once per row: same result, linear in numpy."""
    if pd.api.types.infer_dtype(series, skipna=True) in ("boolean", "empty"):  # bools and missing only
        values = series.to_numpy(dtype=object, na_value=None).copy()
        values[pd.isna(values)] = None
        return values
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.empty(len(uniques) + 1, dtype=object)
    lookup[:-1] = [as_bool(u) for u in uniques]
    lookup[-1] = None  # code -1: missing (None, NaN, NA)
    return lookup[codes]


def bool_series(series: pd.Series, missing: bool | None = False) -> pd.Series:
    """A yes/no column as a plain ``bool`` series (missing -> ``missing``), or an ``object``
    series of True/False/None when ``missing`` is None."""
    values = _bool_objects(series)
    if missing is None:
        return pd.Series(values, index=series.index, dtype=object)
    filled = np.where(pd.isna(values), bool(missing), values) if len(values) else values
    return pd.Series(filled, index=series.index, dtype=bool)


def negate(series: pd.Series) -> pd.Series:
    """Logical not of an ``object`` True/False/None series (None stays None)."""
    values = series.to_numpy(dtype=object)
    out = np.full(values.size, None, dtype=object)
    known = ~pd.isna(values)
    out[known] = (~values[known].astype(bool)).tolist()  # Python bools, as bool_series gives
    return pd.Series(out, index=series.index, dtype=object)


def is_true(series: pd.Series) -> pd.Series:
    """``bool`` series: True where the value is True (None/NA -> False)."""
    values = _bool_objects(series)
    return pd.Series(values == True, index=series.index, dtype=bool)  # noqa: E712 - elementwise on object


def severity_rank(ae: pd.DataFrame) -> pd.Series:
    """ASGE severity rank per AE row: the mart's rank column, else mapped from the label."""
    rank = pd.to_numeric(ae["asge_severity_rank"], errors="coerce")
    mapped = ae["asge_severity"].map(ASGE_RANK)
    return rank.fillna(pd.to_numeric(mapped, errors="coerce")).fillna(0)
