"""Check results and their tables (``quality.check_results``, ``quality.runs``).

Results are stored as rows so the data-quality report and the site scorecard
are queries (:mod:`poem_registry.quality.scorecard`), not log files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

if TYPE_CHECKING:
    from poem_registry.quality.delivery import DeliveryValidation
    from poem_registry.quality.marts import MartValidation


@dataclass
class CheckResult:
    """The outcome of one check on one delivered file or mart table (OHDSI DQD style)."""

    check_id: str
    entity: str
    column: str | None
    category: str
    severity: str
    status: str  # pass | fail | error | not_applicable
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    threshold_percent: float = 0.0
    threshold_rows: int = 0
    note: str = ""
    #: Up to five offending values (never the value of an identifier column).
    examples: list[str] = field(default_factory=list)
    suite: str = ""
    expectation: str = ""
    #: Why the status is error / not_applicable, or a short human summary of a failure.
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")


QUALITY_DDL = """
create schema if not exists quality;
create table if not exists quality.runs (
    run_id varchar not null,
    run_at timestamp not null,
    stage varchar not null,           -- delivery | mart
    suite varchar,
    site_id varchar,
    extract_id varchar,
    batch_id varchar,
    checks integer not null,
    passed integer not null,
    failed integer not null,
    errors integer not null,
    not_applicable integer not null,
    critical_failed integer not null,
    publish_allowed boolean           -- mart stage only
);
create table if not exists quality.check_results (
    run_id varchar not null,
    run_at timestamp not null,
    stage varchar not null,
    suite varchar not null,
    site_id varchar,
    extract_id varchar,
    batch_id varchar,
    check_id varchar not null,
    entity varchar,
    column_name varchar,
    category varchar not null,
    severity varchar not null,
    status varchar not null,
    element_count bigint,
    unexpected_count bigint,
    unexpected_percent double,
    threshold_percent double,
    threshold_rows bigint,
    note varchar,
    examples varchar,                 -- JSON array of strings
    expectation varchar,
    message varchar
);
create table if not exists quality.mart_metrics (
    run_id varchar not null,
    run_at timestamp not null,
    metric varchar not null,          -- a drift metric of expectations/mart_*.yml
    site_id varchar,
    measure_id varchar,
    value double
);
"""

RESULT_COLUMNS = [
    "run_id", "run_at", "stage", "suite", "site_id", "extract_id", "batch_id", "check_id", "entity",
    "column_name", "category", "severity", "status", "element_count", "unexpected_count",
    "unexpected_percent", "threshold_percent", "threshold_rows", "note", "examples", "expectation", "message",
]  # fmt: skip


def ensure_quality_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(QUALITY_DDL)


def _as_list(results: Any) -> list[CheckResult]:
    checks = getattr(results, "checks", results)
    return list(checks)


def store_results(
    con: duckdb.DuckDBPyConnection,
    results: Iterable[CheckResult] | DeliveryValidation | MartValidation,
    *,
    run_id: str,
    stage: str,
    site_id: str | None = None,
    extract_id: str | None = None,
    batch_id: str | None = None,
    run_at: datetime | None = None,
) -> int:
    """Append results to ``quality.check_results`` and one summary row per suite to ``quality.runs``.

    ``results`` is a list of :class:`CheckResult` or a Delivery/MartValidation; a
    MartValidation also stores its drift metrics (``quality.mart_metrics``) so the
    next run can compare against them. Does not commit: the caller's transaction
    decides (ingest writes results and raw rows in one transaction). Returns the
    number of result rows written.
    """
    ensure_quality_schema(con)
    run_at = run_at or datetime.now(UTC).replace(tzinfo=None)
    checks = _as_list(results)
    rows = []
    for c in checks:
        d = asdict(c)
        rows.append(
            {
                "run_id": run_id, "run_at": run_at, "stage": stage, "suite": c.suite or f"{stage}_{c.entity}",
                "site_id": site_id, "extract_id": extract_id, "batch_id": batch_id, "check_id": c.check_id,
                "entity": c.entity, "column_name": c.column, "category": c.category, "severity": c.severity,
                "status": c.status, "element_count": c.element_count, "unexpected_count": c.unexpected_count,
                "unexpected_percent": c.unexpected_percent, "threshold_percent": c.threshold_percent,
                "threshold_rows": c.threshold_rows, "note": c.note,
                "examples": json.dumps([str(e) for e in d["examples"]]), "expectation": c.expectation,
                "message": c.message,
            }
        )  # fmt: skip
    if rows:
        frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
        frame = frame.astype(
            {"element_count": "Int64", "unexpected_count": "Int64", "threshold_rows": "Int64",
             "unexpected_percent": "Float64", "threshold_percent": "Float64"}
        )  # fmt: skip
        con.register("_quality_results", frame)
        try:
            con.execute(f"insert into quality.check_results ({', '.join(RESULT_COLUMNS)}) "
                        f"select {', '.join(RESULT_COLUMNS)} from _quality_results")  # fmt: skip
        finally:
            con.unregister("_quality_results")
        gate = getattr(results, "gate", None)
        summary = frame.groupby("suite", sort=True).agg(
            checks=("status", "size"),
            passed=("status", lambda s: int((s == "pass").sum())),
            failed=("status", lambda s: int((s == "fail").sum())),
            errors=("status", lambda s: int((s == "error").sum())),
            not_applicable=("status", lambda s: int((s == "not_applicable").sum())),
        )
        critical = (
            frame[(frame["severity"] == "critical") & frame["status"].isin(["fail", "error"])]
            .groupby("suite")
            .size()
        )
        for suite, r in summary.iterrows():
            con.execute(
                "insert into quality.runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, run_at, stage, suite, site_id, extract_id, batch_id, int(r["checks"]), int(r["passed"]),
                 int(r["failed"]), int(r["errors"]), int(r["not_applicable"]), int(critical.get(suite, 0)),
                 None if gate is None else bool(gate.publish_allowed)],
            )  # fmt: skip
    metrics = getattr(results, "metrics", None)
    if metrics is not None:
        store_mart_metrics(con, metrics, run_id=run_id, run_at=run_at)
    return len(rows)


def store_mart_metrics(
    con: duckdb.DuckDBPyConnection, metrics: pd.DataFrame, *, run_id: str, run_at: datetime | None = None
) -> None:
    """Replace the drift metrics of ``run_id`` in ``quality.mart_metrics`` (idempotent)."""
    ensure_quality_schema(con)
    run_at = run_at or datetime.now(UTC).replace(tzinfo=None)
    con.execute("delete from quality.mart_metrics where run_id = ?", [run_id])
    if not len(metrics):
        return
    frame = metrics.assign(run_id=run_id, run_at=run_at)[
        ["run_id", "run_at", "metric", "site_id", "measure_id", "value"]
    ]
    con.register("_quality_metrics", frame)
    try:
        con.execute("insert into quality.mart_metrics select * from _quality_metrics")
    finally:
        con.unregister("_quality_metrics")
