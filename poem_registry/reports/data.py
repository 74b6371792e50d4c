"""Every table the reports read, in one place.

Reports never compute statistics: they read rows that dbt (``marts.*``), the
statistics step (``analytics.*``), the quality gate (``quality.*``) and the
ingest ledger (``ingest.*``) wrote. Each logical table below maps *report* column
names onto *warehouse* column names, so a renamed warehouse column is a one-line
change here. A missing table or column reads as empty/NULL so a report can say
"not available yet" instead of failing while the marts are still being built.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd


@dataclass(frozen=True)
class Table:
    """A warehouse relation and the columns reports use (report name -> warehouse column)."""

    relation: str
    columns: dict[str, str]
    order_by: tuple[str, ...] = ()


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


TABLES: dict[str, Table] = {
    "measures": Table(
        "marts.mart_measures",
        _same(
            "measure_id",
            "measure_name",
            "site_id",
            "period_type",
            "period_start",
            "period_end",
            "numerator",
            "denominator",
            "rate",
            "ci_method",
            "suppressed",
            "benchmark_value",
            "benchmark_citation",
        )
        | {
            "denominator_type": "denominator_variant",
            "ci_low": "ci_lower",
            "ci_high": "ci_upper",
            "benchmark_provenance_tag": "benchmark_provenance_tag",
            "statistic": "statistic",
        },
        ("measure_id", "denominator_type", "site_id", "period_type", "period_start"),
    ),
    "measure_catalog": Table(
        "seeds.measure_catalog",
        _same(
            "measure_id",
            "name",
            "statistic",
            "numerator",
            "denominator",
            "exclusions",
            "window_code",
            "interval_method",
            "definition_source",
            "benchmark_key",
            "higher_is_better",
            "key_measure",
        ),
        ("measure_id",),
    ),
    "benchmarks": Table(
        "seeds.benchmarks",
        _same(
            "benchmark_key",
            "metric",
            "value",
            "low",
            "high",
            "population",
            "citation",
            "provenance_tag",
            "note",
        ),
        ("benchmark_key",),
    ),
    # dim_site has no names: reports name sites from the site YAML (settings.sites_dir).
    "sites": Table("marts.dim_site", _same("site_id", "n_index_poems", "last_procedure_date"), ("site_id",)),
    "adverse_events": Table(
        "marts.mart_adverse_events",
        _same(
            "site_id",
            "period_type",
            "period_start",
            "event_class",
            "ae_type",
            "asge_severity",
            "asge_severity_rank",
            "n_events",
            "n_patients",
        ),
        ("site_id", "event_class", "ae_type", "asge_severity"),
    ),
    "la_grade": Table(
        "marts.mart_reflux_la_grade",
        _same("site_id", "period_type", "period_start", "la_grade", "la_grade_rank", "n_patients"),
        ("site_id", "la_grade"),
    ),
    "funnel": Table(
        "analytics.funnel",
        _same(
            "measure_id",
            "denominator_type",
            "period_type",
            "period_start",
            "period_end",
            "site_id",
            "numerator",
            "denominator",
            "rate",
            "target",
            "target_source",
            "method",
            "overdispersion",
            "phi",
            "tau2",
            "lower_95",
            "upper_95",
            "lower_998",
            "upper_998",
            "classification",
            "n_sites",
        ),
        ("measure_id", "denominator_type", "period_type", "period_start", "site_id"),
    ),
    "funnel_curve": Table(
        "analytics.funnel_curve",
        _same(
            "measure_id",
            "denominator_type",
            "period_type",
            "period_start",
            "period_end",
            "n",
            "target",
            "lower_95",
            "upper_95",
            "lower_998",
            "upper_998",
        ),
        ("measure_id", "denominator_type", "period_type", "period_start", "n"),
    ),
    "learning_curve": Table(
        "analytics.learning_curve",
        _same(
            "operator_label",
            "site_id",
            "case_number",
            "procedure_minutes",
            "cusum_minutes",
            "composite_failure",
            "bernoulli_cusum",
            "bernoulli_h0",
            "bernoulli_h1",
            "racusum",
            "racusum_h",
            "p0",
            "p1",
            "alpha",
            "beta",
            "odds_multiplier",
            "signal",
            "racusum_false_signal_probability",
            "note",
        ),
        ("site_id", "operator_label", "case_number"),
    ),
    "durability": Table(
        "analytics.durability",
        _same("site_id", "years", "n", "events", "at_risk", "survival", "se", "ci_low", "ci_high"),
        ("site_id", "years"),
    ),
    "km_curve": Table(
        "analytics.km_curve",
        _same("site_id", "time_days", "at_risk", "events", "censored", "survival", "ci_low", "ci_high"),
        ("site_id", "time_days"),
    ),
    "pooled": Table(
        "analytics.pooled",
        _same(
            "measure_id",
            "denominator_type",
            "stratum",
            "period_type",
            "k",
            "n_total",
            "events",
            "estimate",
            "ci_low",
            "ci_high",
            "pi_low",
            "pi_high",
            "tau2",
            "i2",
            "model",
            "transform",
            "tau2_method",
            "is_default",
            "q_p",
            "ci_method",
        ),
        ("measure_id", "denominator_type", "stratum", "tau2_method"),
    ),
    "check_results": Table(
        "quality.check_results",
        _same(
            "run_id",
            "stage",
            "site_id",
            "category",
            "severity",
            "status",
            "column_name",
            "message",
            "run_at",
            "suite",
            "unexpected_count",
            "element_count",
            "note",
            "threshold_percent",
        )
        | {
            "check_name": "check_id",
            "table_name": "entity",
            "observed": "unexpected_percent",
            "threshold": "threshold_percent",
        },
        ("run_at", "site_id", "check_name"),
    ),
    "batches": Table(
        "ingest.batches",
        _same(
            "batch_id",
            "site_id",
            "extract_id",
            "status",
            "started_at",
            "finished_at",
            "extracted_at",
            "rows_loaded",
            "rows_quarantined",
            "message",
            "quarantine_path",
            "resolved_at",
        ),
        ("site_id", "started_at"),
    ),
    "findings": Table(
        "ingest.findings",
        _same("batch_id", "site_id", "rule", "category", "severity", "message", "column_name"),
        ("site_id", "batch_id", "rule"),
    ),
}

#: Subtype benchmarks (clinical-spec §9.1, S4) are rows of ``seeds.benchmarks`` with this key prefix
#: followed by the ``analytics.pooled`` stratum (a diagnosis code), e.g. ``bm_cs_subtype_type_iii``.
SUBTYPE_BENCHMARK_PREFIX = "bm_cs_subtype_"


class ReportData:
    """Read-only access to the warehouse tables in :data:`TABLES` as pandas frames."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._existing: dict[str, set[str] | None] = {}
        self._frames: dict[tuple, pd.DataFrame] = {}
        #: Per-edition memo for derived frames (suppressed measures, scorecards...): see :meth:`memo`.
        self._memo: dict[tuple, object] = {}

    def memo(self, key: tuple, compute):
        """``compute()`` once per edition for ``key`` (derived frames reused by every page)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _columns_of(self, relation: str) -> set[str] | None:
        if relation not in self._existing:
            schema, name = relation.split(".", 1)
            rows = self.con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchall()
            self._existing[relation] = {r[0] for r in rows} or None
        return self._existing[relation]

    def available(self, key: str) -> bool:
        """Whether the warehouse has the table behind ``key`` at all."""
        return self._columns_of(TABLES[key].relation) is not None

    def read(self, key: str, where: str | None = None, params: list | None = None) -> pd.DataFrame:
        """Rows of table ``key`` with report column names; ``where`` uses report column names.

        Missing columns come back as NULL, a missing table as an empty frame with the columns.
        Each distinct query runs once per :class:`ReportData` (one edition); callers get a copy.
        """
        return self._cached(key, where, params).copy()

    def size(self, key: str, where: str | None = None, params: list | None = None) -> int:
        """Number of rows :meth:`read` gives (without copying them)."""
        return len(self._cached(key, where, params))

    def rows_for(
        self, key: str, site_ids: list[str], where: str | None = None, params: list | None = None
    ) -> pd.DataFrame:
        """:meth:`read` restricted to ``site_ids`` (rows in table order, fresh index).

        The table is split by site once per edition, so a site's page costs the size of its own rows,
        not of the table (which grows with the number of sites).
        """

        def split() -> dict[str, pd.DataFrame]:
            frame = self._cached(key, where, params)
            return {str(k): g for k, g in frame.groupby(frame["site_id"].astype(str), sort=False)}

        groups = self.memo(("rows_for", key, where, tuple(params or ())), split)
        parts = [groups[s] for s in dict.fromkeys(str(s) for s in site_ids) if s in groups]
        if not parts:
            return self._cached(key, where, params).iloc[0:0].copy()
        return pd.concat(parts).sort_index().reset_index(drop=True)

    def _cached(self, key: str, where: str | None, params: list | None) -> pd.DataFrame:
        cache_key = (key, where, tuple(params or ()))
        if cache_key not in self._frames:
            self._frames[cache_key] = self._read(key, where, params)
        return self._frames[cache_key]

    def _read(self, key: str, where: str | None, params: list | None) -> pd.DataFrame:
        table = TABLES[key]
        existing = self._columns_of(table.relation)
        if existing is None:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in table.columns})
        select = ", ".join(
            (f'"{src}" as "{name}"' if src in existing else f'null as "{name}"')
            for name, src in table.columns.items()
        )
        inner = f"select {select} from {table.relation}"
        sql = f"select * from ({inner}) t"
        if where:
            sql += f" where {where}"
        order = [c for c in table.order_by if c in table.columns]
        if order:
            sql += " order by " + ", ".join(f'"{c}"' for c in order)
        return self.con.execute(sql, params or []).df()

    def first_value(self, sql: str, params: list | None = None):
        """One scalar from an ad-hoc query (used for the edition's own metadata only)."""
        row = self.con.execute(sql, params or []).fetchone()
        return row[0] if row else None
