"""Mart validation: the GX gate that decides whether an edition may be published.

Each ``expectations/mart_*.yml`` names its table (``tables.table``), the checks
to run on it, and optionally drift metrics. Tables are read from DuckDB into
pandas (GX has no DuckDB dialect) and validated with GX's pandas datasource. A
suite whose table does not exist yet is reported as not_applicable, not as a
crash. A critical failure closes the gate; warnings are grouped by measure so a
report can show a banner on the affected pages.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from poem_registry.contract import REPO_ROOT
from poem_registry.quality.catalog import EXPECTATIONS_DIR, CatalogError, CheckSpec, Suite, load_suite
from poem_registry.quality.delivery import check_result, status_of
from poem_registry.quality.results import CheckResult, store_mart_metrics
from poem_registry.quality.rules import fmt

log = logging.getLogger(__name__)

SEEDS_DIR = REPO_ROOT / "dbt_project" / "seeds"
PUBLISHED_PREFIX = "published__"
ALL_MEASURES = "_all"
MAX_EXAMPLES = 5
#: Precision at which mart numbers are compared.
DECIMALS = 9


@dataclass
class Gate:
    """The publishing verdict: closed by any critical failure (or error), with reasons in words."""

    publish_allowed: bool
    reasons: list[str] = field(default_factory=list)
    #: measure_id (or "_all" for table-wide findings) -> warning texts for a banner.
    warnings_by_measure: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class MartValidation:
    run_id: str
    checks: list[CheckResult]
    gate: Gate
    #: Drift metrics of this run (metric, site_id, measure_id, value), stored for the next run.
    metrics: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["metric", "site_id", "measure_id", "value"])
    )
    gx_results: list[Any] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """XCom-friendly summary (no frames)."""
        return {
            "run_id": self.run_id,
            "publish_allowed": self.gate.publish_allowed,
            "reasons": list(self.gate.reasons),
            "warnings_by_measure": {k: list(v) for k, v in self.gate.warnings_by_measure.items()},
            "warnings": sorted({w for v in self.gate.warnings_by_measure.values() for w in v}),
            "checks": len(self.checks),
            "failed": sum(c.status == "fail" for c in self.checks),
            "errors": sum(c.status == "error" for c in self.checks),
        }


def mart_suites(directory: Path = EXPECTATIONS_DIR) -> list[Suite]:
    suites = [load_suite(p) for p in sorted(Path(directory).glob("mart_*.yml"))]
    for s in suites:
        if not s.config.get("tables", {}).get("table"):
            raise CatalogError(f"{s.path.name}: tables.table (schema.table) is required")
    return suites


def _split(qualified: str) -> tuple[str, str]:
    schema, _, table = qualified.rpartition(".")
    return schema or "main", table


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = _split(qualified)
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _seed_values(con: duckdb.DuckDBPyConnection, table: str | None, csv_name: str, column: str) -> list[str]:
    """A seed column from the warehouse, or from the seed CSV when dbt has not loaded it yet."""
    if table and table_exists(con, table):
        return [r[0] for r in con.execute(f"select distinct {column} from {table}").fetchall()]
    with (SEEDS_DIR / csv_name).open(encoding="utf-8", newline="") as fh:
        return sorted({row[column] for row in csv.DictReader(fh)})


def small_cell_min(con: duckdb.DuckDBPyConnection) -> int:
    """``small_cell_min`` from the cfg_thresholds seed (the one place the threshold lives)."""
    if table_exists(con, "seeds.cfg_thresholds"):
        row = con.execute("select value from seeds.cfg_thresholds where key = 'small_cell_min'").fetchone()
        if row:
            return int(row[0])
    with (SEEDS_DIR / "cfg_thresholds.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["key"] == "small_cell_min":
                return int(float(row["value"]))
    raise CatalogError("cfg_thresholds has no small_cell_min")


def _gx_frame(table: pd.DataFrame, tables: dict[str, Any]) -> pd.DataFrame:
    """Numeric columns as float64 (GX's vectorised path), plus published__<count> columns."""
    out = pd.DataFrame(index=pd.RangeIndex(len(table)))
    for name in table.columns:
        col = table[name]
        if pd.api.types.is_bool_dtype(col) or col.dtype == object or pd.api.types.is_string_dtype(col):
            arr = col.astype(object).to_numpy(copy=True)
            arr[pd.isna(col).to_numpy()] = None
            out[name] = arr
        elif pd.api.types.is_numeric_dtype(col):
            # Rounded so that float noise (a Wilson bound of 0.9999999999999999 for a rate of 1)
            # does not fail an ordering check.
            values = col.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
            out[name] = np.round(values, DECIMALS)
        else:
            out[name] = col.to_numpy()
    suppressed_col = tables.get("suppressed_column")
    for count in tables.get("count_columns", []):
        if count not in table.columns:
            continue
        published = out[count].copy()
        if suppressed_col and suppressed_col in table.columns:
            published[table[suppressed_col].fillna(False).astype(bool).to_numpy()] = np.nan
        out[PUBLISHED_PREFIX + count] = published
    return out


def _row_label(table: pd.DataFrame, labels: list[str], position: int) -> str:
    return " ".join(f"{c}={fmt(table[c].iloc[position])}" for c in labels if c in table.columns)


def _examples(spec: CheckSpec, table: pd.DataFrame, labels: list[str], positions: list[int]) -> list[str]:
    shown = []
    columns = [c for c in (spec.kwargs.get("column_A"), spec.kwargs.get("column_B"), spec.column) if c]
    for pos in positions[:MAX_EXAMPLES]:
        values = ", ".join(
            f"{c}={fmt(table[c].iloc[pos])}" for c in dict.fromkeys(columns) if c in table.columns
        )
        shown.append(f"{_row_label(table, labels, pos)}: {values}".strip(": "))
    return shown


def _run_table_suite(
    con: duckdb.DuckDBPyConnection, suite: Suite, parameters: dict[str, Any]
) -> tuple[list[CheckResult], dict[str, set[str]], list[Any]]:
    """Results of one mart suite, and measure_id -> check_ids that failed on that measure's rows."""
    from poem_registry.quality._gx import validate_frame

    tables = suite.config["tables"]
    qualified = tables["table"]
    if not table_exists(con, qualified):
        msg = f"table {qualified} does not exist yet (dbt has not built it)"
        return [check_result(c, "not_applicable", message=msg) for c in suite.checks], {}, []
    table = con.execute(f"select * from {qualified}").df()
    frame = _gx_frame(table, tables)
    specs = [c for c in suite.checks if not _needs_missing_parameter(c, parameters)]
    outcomes, gx_results = validate_frame(frame, suite.name, specs, parameters)
    labels = list(tables.get("row_label", []))
    measure_col = tables.get("measure_column")
    results: list[CheckResult] = []
    by_measure: dict[str, set[str]] = {}
    for spec in suite.checks:
        out = outcomes.get(spec.check_id)
        if out is None:
            results.append(
                check_result(spec, "not_applicable", message="nothing to compare with (empty set)")
            )
            continue
        status, message = status_of(spec, out, len(table))
        examples: list[str] = []
        if out.unexpected_index_list:
            positions = [int(i) for i in out.unexpected_index_list]
            examples = _examples(spec, table, labels, positions)
            if measure_col and measure_col in table.columns:
                for m in table[measure_col].iloc[positions].dropna().unique():
                    by_measure.setdefault(str(m), set()).add(spec.check_id)
        if spec.expectation == "expect_column_distinct_values_to_contain_set" and status == "fail":
            present = set(table[spec.kwargs["column"]].dropna().astype(str))
            missing = sorted(set(parameters.get("expected_sites", [])) - present)
            examples = missing[:MAX_EXAMPLES]
            message = f"sites missing from {qualified}: {', '.join(missing)}"
        if status == "fail" and not message.startswith("sites"):
            message = f"{qualified}: {message}"
        results.append(
            check_result(
                spec,
                status,
                element_count=out.element_count if out.element_count is not None else len(table),
                unexpected_count=out.unexpected_count,
                unexpected_percent=out.unexpected_percent,
                examples=examples,
                message=message,
            )
        )
    return results, by_measure, gx_results


def _needs_missing_parameter(spec: CheckSpec, parameters: dict[str, Any]) -> bool:
    """A check whose $PARAMETER value is empty (no expected sites) has nothing to check."""
    for value in spec.kwargs.values():
        if isinstance(value, dict) and "$PARAMETER" in value and not parameters.get(value["$PARAMETER"]):
            return True
    return False


# -- drift ------------------------------------------------------------------------------


def drift_metrics(con: duckdb.DuckDBPyConnection, suite: Suite) -> pd.DataFrame:
    """This run's drift metrics of a suite (metric, site_id, measure_id, value)."""
    drift = suite.config.get("drift") or {}
    qualified = suite.config["tables"]["table"]
    frames = []
    for metric in drift.get("metrics", []):
        rows = con.execute(metric["sql"].format(table=qualified)).df()
        frames.append(rows.assign(metric=metric["name"])[["metric", "site_id", "measure_id", "value"]])
    if not frames:
        return pd.DataFrame(columns=["metric", "site_id", "measure_id", "value"])
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"metric": object, "site_id": object, "measure_id": object, "value": "float64"})


def _history(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Per metric/site/measure: mean, sd, count and latest value of earlier runs."""
    if not table_exists(con, "quality.mart_metrics"):
        empty = pd.DataFrame(
            columns=["metric", "site_id", "measure_id", "hist_mean", "hist_sd", "hist_n", "previous"]
        )
        return empty.astype({"hist_mean": float, "hist_sd": float, "hist_n": float, "previous": float})
    return con.execute(
        """
        with ordered as (
            select metric, site_id, measure_id, value, run_at,
                   row_number() over (partition by metric, site_id, measure_id order by run_at desc) as recency
            from quality.mart_metrics where run_id <> ?
        )
        select metric, site_id, measure_id,
               avg(value) as hist_mean, stddev_samp(value) as hist_sd, count(value) as hist_n,
               max(case when recency = 1 then value end) as previous
        from ordered group by metric, site_id, measure_id
        """,
        [run_id],
    ).df()


def _drift_checks(con: duckdb.DuckDBPyConnection, suite: Suite, run_id: str,
                  metrics: pd.DataFrame) -> tuple[list[CheckResult], dict[str, set[str]], list[Any]]:  # fmt: skip
    from poem_registry.quality._gx import validate_frame

    drift = suite.config.get("drift") or {}
    if not drift.get("metrics"):
        return [], {}, []
    history = _history(con, run_id)
    keys = ["metric", "site_id", "measure_id"]
    joined = metrics.merge(history, on=keys, how="left")
    min_n = int(drift.get("min_history_for_z", 3))
    enough = (joined["hist_n"].fillna(0) >= min_n) & (joined["hist_sd"].fillna(0) > 0)
    joined["z_score"] = np.where(enough, (joined["value"] - joined["hist_mean"]) / joined["hist_sd"], np.nan)
    short = (joined["hist_n"].fillna(0) >= 1) & ~enough & (joined["previous"].fillna(0) > 0)
    joined["ratio_to_previous"] = np.where(short, joined["value"] / joined["previous"], np.nan)
    joined = joined.reset_index(drop=True)
    z_max, ratio_max = float(drift.get("z_max", 4)), float(drift.get("ratio_max", 2))
    base = {
        "suite": suite.name, "entity": suite.name, "category": "plausibility",
        "severity": drift.get("severity", "warning"), "note": str(drift.get("note", "")).strip(), "row_level": True,
    }  # fmt: skip
    specs: list[CheckSpec] = []
    for metric in drift["metrics"]:
        name = metric["name"]
        col = f"{name}__z"
        joined[col] = joined["z_score"].where(joined["metric"] == name)
        specs.append(CheckSpec(check_id=f"drift.{name}.z_score", expectation="expect_column_values_to_be_between",
                               kwargs={"column": col, "min_value": -z_max, "max_value": z_max}, column=name,
                               kind="drift", rule="drift", **base))  # fmt: skip
        col = f"{name}__ratio"
        joined[col] = joined["ratio_to_previous"].where(joined["metric"] == name)
        specs.append(CheckSpec(check_id=f"drift.{name}.ratio_to_previous",
                               expectation="expect_column_values_to_be_between",
                               kwargs={"column": col, "min_value": 1 / ratio_max, "max_value": ratio_max},
                               column=name, kind="drift", rule="drift", **base))  # fmt: skip
    frame = joined.astype({c: object for c in keys})
    outcomes, gx_results = validate_frame(frame, f"{suite.name}_drift", specs)
    results, by_measure = [], {}
    for spec in specs:
        out = outcomes[spec.check_id]
        status, message = status_of(spec, out, len(frame))
        if status == "not_applicable":
            message = "not enough history yet (earlier runs in quality.mart_metrics)"
        positions = [int(i) for i in out.unexpected_index_list]
        examples = []
        for pos in positions[:MAX_EXAMPLES]:
            r = joined.iloc[pos]
            who = f"site {r['site_id']}" + (f" {r['measure_id']}" if pd.notna(r["measure_id"]) else "")
            examples.append(
                f"{who}: {fmt(round(r['value'], 4))} vs history mean {fmt(round(r['hist_mean'], 4))} "
                f"(sd {fmt(round(r['hist_sd'], 4)) if pd.notna(r['hist_sd']) else '-'}, n={int(r['hist_n'])}, "
                f"previous {fmt(round(r['previous'], 4))})"
            )
        for pos in positions:
            measure = joined["measure_id"].iloc[pos]
            by_measure.setdefault(str(measure) if pd.notna(measure) else ALL_MEASURES, set()).add(
                spec.check_id
            )
        results.append(check_result(spec, status, element_count=out.element_count,
                                    unexpected_count=out.unexpected_count,
                                    unexpected_percent=out.unexpected_percent, examples=examples,
                                    message=message))  # fmt: skip
    return results, by_measure, gx_results


# -- the gate ----------------------------------------------------------------------------


def validate_marts(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    expected_sites: list[str],
    directory: Path = EXPECTATIONS_DIR,
) -> MartValidation:
    """Run every mart suite; the gate is closed by any critical check that fails or errors.

    The drift metrics of this run are written to ``quality.mart_metrics`` (the history
    of the next run; skipped on a read-only connection). Store the check results with
    :func:`poem_registry.quality.results.store_results` (``stage="mart"``).
    """
    suites = mart_suites(directory)
    small = small_cell_min(con)
    checks: list[CheckResult] = []
    gx_results: list[Any] = []
    metric_frames = []
    warnings: dict[str, list[str]] = {}
    for suite in suites:
        tables = suite.config["tables"]
        parameters = {
            "expected_sites": sorted(set(expected_sites)),
            "small_cells": list(range(1, small)),
            "measure_ids": _seed_values(
                con, tables.get("measure_catalog"), "measure_catalog.csv", "measure_id"
            ),
        }
        results, by_measure, gx = _run_table_suite(con, suite, parameters)
        if suite.config.get("drift") and table_exists(con, tables["table"]):
            metrics = drift_metrics(con, suite)
            metric_frames.append(metrics)
            drift_results, drift_by_measure, gx_drift = _drift_checks(con, suite, run_id, metrics)
            results += drift_results
            gx += gx_drift
            for k, v in drift_by_measure.items():
                by_measure.setdefault(k, set()).update(v)
        checks += results
        gx_results += gx
        failing_warnings = {c.check_id: c for c in results if c.status == "fail" and c.severity != "critical"}
        for measure, ids in by_measure.items():
            for check_id in sorted(ids & set(failing_warnings)):
                c = failing_warnings[check_id]
                warnings.setdefault(measure, []).append(f"{suite.name}.{check_id}: {c.message or c.note}")
        for c in failing_warnings.values():
            if not any(c.check_id in ids for ids in by_measure.values()):
                warnings.setdefault(ALL_MEASURES, []).append(f"{suite.name}.{c.check_id}: {c.message}")
    reasons = [
        f"{c.suite}.{c.check_id} {c.status}: {c.message}" + (f" (e.g. {'; '.join(c.examples[:3])})" if c.examples
                                                              else "")
        for c in checks
        if c.severity == "critical" and c.status in ("fail", "error")
    ]  # fmt: skip
    metrics = (
        pd.concat(metric_frames, ignore_index=True)
        if metric_frames
        else pd.DataFrame(columns=["metric", "site_id", "measure_id", "value"])
    )
    try:  # the history of the next run, whether or not the caller stores the whole validation
        store_mart_metrics(con, metrics, run_id=run_id)
    except duckdb.Error as exc:  # a read-only connection: drift still works from earlier history
        log.warning("drift metrics of run %s not stored: %s", run_id, exc)
    return MartValidation(
        run_id=run_id,
        checks=checks,
        gate=Gate(publish_allowed=not reasons, reasons=reasons, warnings_by_measure=warnings),
        metrics=metrics,
        gx_results=gx_results,
    )
