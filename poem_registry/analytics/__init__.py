"""Statistics over the dbt marts, written back to the warehouse (schema ``analytics``).

:func:`compute_all` reads ``marts.*`` (and the measure catalog seed), computes with
:mod:`poem_registry.stats` and replaces every ``analytics`` table in one transaction:

* ``funnel`` / ``funnel_curve`` (:mod:`.funnel`)
* ``learning_curve`` (:mod:`.learning_curves`)
* ``durability`` / ``km_curve`` (:mod:`.durability`)
* ``pooled`` (:mod:`.pooling`)
* ``site_oe`` (:mod:`.risk_adjustment`)
* ``parameters``: the seed values used (``seeds/cfg_statistics.csv``), for every chart.

Every table has ``as_of`` (DATE) and ``computed_at`` (TIMESTAMP, one value per run).
Outputs are sorted and simulations seeded, so two runs give identical tables except
``computed_at``. Columns: ``docs/analytics-tables.md``.

Incremental (:mod:`.incremental`): ``analytics._fingerprints`` holds a hash of every
input of each operator's learning curve and each site's durability; a later run reuses
the stored rows of unchanged units and computes the rest, with the same result as a
full recompute. ``compute_all(..., full=True)`` (``python -m poem_registry.analytics
--full-refresh``) ignores the stored fingerprints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime

import duckdb
import pandas as pd

from .config import StatisticsConfig, load_config, seed_path
from .durability import DURABILITY_COLUMNS, KM_CURVE_COLUMNS, compute_durability
from .funnel import CURVE_COLUMNS, FUNNEL_COLUMNS, compute_funnels, pick_denominator_type, select_periods
from .incremental import (
    FINGERPRINT_COLUMNS,
    FINGERPRINT_TABLE,
    Incremental,
    code_fingerprint,
    config_fingerprint,
)
from .learning_curves import LEARNING_CURVE_COLUMNS, compute_learning_curves
from .marts import mart_exists, read_mart, read_measure_catalog, read_member_counts, table_columns
from .outcomes import build_procedure_frame
from .pooling import POOLED_COLUMNS, compute_pooled
from .risk_adjustment import SITE_OE_COLUMNS, site_oe

__all__ = ["SCHEMA", "TABLE_COLUMNS", "compute_all", "compute_tables", "write_tables"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
SCHEMA = "analytics"

PARAMETER_COLUMNS: dict[str, str] = {
    "key": "varchar",
    "value": "varchar",
    "unit": "varchar",
    "tag": "varchar",
    "source": "varchar",
    "note": "varchar",
}

#: table -> column -> DuckDB type (``as_of`` and ``computed_at`` are appended to each)
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "funnel": FUNNEL_COLUMNS,
    "funnel_curve": CURVE_COLUMNS,
    "learning_curve": LEARNING_CURVE_COLUMNS,
    "durability": DURABILITY_COLUMNS,
    "km_curve": KM_CURVE_COLUMNS,
    "pooled": POOLED_COLUMNS,
    "site_oe": SITE_OE_COLUMNS,
    "parameters": PARAMETER_COLUMNS,
}

#: sort keys per table (deterministic row order)
SORT_KEYS: dict[str, list[str]] = {
    "funnel": ["measure_id", "period_type", "period_start", "site_id"],
    "funnel_curve": ["measure_id", "period_type", "period_start", "n"],
    "learning_curve": ["operator_key", "case_number"],
    "durability": ["site_id", "years"],
    "km_curve": ["site_id", "time_days"],
    "pooled": ["measure_id", "stratum"],  # then the seed's tau2 order (default first)
    "site_oe": ["measure_id", "site_id"],
    "parameters": ["key"],
    FINGERPRINT_TABLE: ["unit_kind", "unit"],
}
#: tables written besides :data:`TABLE_COLUMNS` (bookkeeping, not statistics)
INTERNAL_TABLE_COLUMNS: dict[str, dict[str, str]] = {FINGERPRINT_TABLE: FINGERPRINT_COLUMNS}


def _quiet(msg: str) -> None:
    log.info(msg)


def _default_as_of(con: duckdb.DuckDBPyConnection) -> date:
    """The marts' own as-of date when ``mart_measures`` has one, else today."""
    if "as_of" in table_columns(con, "marts", "mart_measures"):
        value = con.execute("select max(as_of) from marts.mart_measures").fetchone()[0]
        if value is not None:
            return pd.Timestamp(value).date()
    return date.today()


def compute_tables(
    con: duckdb.DuckDBPyConnection,
    cfg: StatisticsConfig,
    as_of: date,
    dbt_project_dir,
    progress: Progress = _quiet,
    full: bool = True,
) -> dict[str, pd.DataFrame]:
    """Every analytics table as a frame (no ``as_of``/``computed_at`` yet); reads only.

    ``full=False`` reuses the previous run's rows of units whose inputs are unchanged
    (:mod:`.incremental`). The fingerprints of this run are under :data:`FINGERPRINT_TABLE`.
    """
    incremental = Incremental(con, SCHEMA, f"{code_fingerprint()}:{config_fingerprint(cfg)}", full=full)
    procedures = read_mart(con, "fct_procedure")
    adverse = read_mart(con, "fct_adverse_event")
    windows = read_mart(con, "mart_outcome_windows")
    frame = build_procedure_frame(procedures, adverse, windows, cfg)
    catalog = read_measure_catalog(con, dbt_project_dir)
    key_measures = sorted(catalog.loc[catalog["key_measure"], "measure_id"].astype(str))
    measures = read_mart(con, "mart_measures")

    progress("  funnel limits ...")
    funnel, curve = compute_funnels(measures, key_measures, cfg, as_of)
    progress("  learning curves ...")
    learning = compute_learning_curves(frame, cfg, incremental)
    progress("  Kaplan-Meier durability ...")
    if mart_exists(con, "mart_durability_input"):
        durability, km = compute_durability(read_mart(con, "mart_durability_input"), cfg, incremental)
    else:
        durability, km = (
            pd.DataFrame(columns=list(DURABILITY_COLUMNS)),
            pd.DataFrame(columns=list(KM_CURVE_COLUMNS)),
        )
    progress("  pooled estimates ...")
    site_rows = measures[(measures["site_id"] != "ALL") & measures["measure_id"].isin(key_measures)]
    selected = pick_denominator_type(select_periods(site_rows, cfg, as_of), cfg)
    members = read_member_counts(con) if mart_exists(con, "mart_measure_members") else None
    pooled = compute_pooled(selected, members, frame, key_measures, cfg)
    progress("  observed/expected ...")
    oe = site_oe(frame, cfg)
    parameters = pd.DataFrame([vars(p) for p in cfg.parameters], columns=list(PARAMETER_COLUMNS))
    progress(
        "  units reused/computed: "
        + "; ".join(
            f"{k} {incremental.reused[k]} reused, {n} computed" for k, n in incremental.computed.items()
        )
    )
    return {
        "funnel": funnel,
        "funnel_curve": curve,
        "learning_curve": learning,
        "durability": durability,
        "km_curve": km,
        "pooled": pooled,
        "site_oe": oe,
        "parameters": parameters,
        FINGERPRINT_TABLE: incremental.fingerprint_frame(),
    }


def write_tables(
    con: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame], as_of: date, computed_at: datetime
) -> dict[str, int]:
    """Replace every ``analytics`` table in one transaction; returns row counts."""
    counts: dict[str, int] = {}
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {SCHEMA}")
        for name, columns in {**TABLE_COLUMNS, **INTERNAL_TABLE_COLUMNS}.items():
            if name not in tables:
                continue
            df = tables[name].reindex(columns=list(columns))
            keys = [k for k in SORT_KEYS[name] if k in df.columns]
            df = df.sort_values(keys, kind="mergesort", na_position="first").reset_index(drop=True)
            df = df.astype(object).where(df.notna(), None)
            view = f"_analytics_{name}"
            con.register(view, df)
            select = ", ".join(f'cast("{c}" as {t}) as "{c}"' for c, t in columns.items())
            con.execute(
                f"create or replace table {SCHEMA}.{name} as select {select}, "
                f"cast(? as date) as as_of, cast(? as timestamp) as computed_at from {view}",
                [as_of, computed_at],
            )
            con.unregister(view)
            if name in TABLE_COLUMNS:
                counts[name] = len(df)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return counts


def compute_all(settings, as_of: date | None = None, progress: Progress = _quiet, full: bool = False) -> dict:
    """Compute every statistics table from the marts and write schema ``analytics``.

    Incremental unless ``full`` (see :mod:`.incremental`). Returns ``{"as_of": ...,
    "tables": {table: rows}}`` (small, fits an XCom).
    """
    from poem_registry.warehouse import connect

    cfg = load_config(seed_path(settings.dbt_project_dir))
    with connect(settings.warehouse_path, timeout=settings.warehouse_lock_timeout) as con:
        as_of = as_of or _default_as_of(con)
        tables = compute_tables(con, cfg, as_of, settings.dbt_project_dir, progress, full=full)
        computed_at = datetime.now(UTC).replace(tzinfo=None)
        counts = write_tables(con, tables, as_of, computed_at)
    progress("statistics written: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return {"as_of": as_of.isoformat(), "tables": counts}
