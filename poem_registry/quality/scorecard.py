"""The site scorecard: queries over ``quality.check_results``, ``quality.runs`` and ``ingest.batches``.

A "run" of a site is one ``run_id`` of the delivery stage for that site (all the
entity files of all batches ingested in that pipeline run). Failures are compared
by ``(suite, check_id)`` between the site's latest run and the one before it:

* new: failing now, not failing before;
* persisting: failing in both;
* resolved: failing before, passing now;
* not_rechecked: failing before, not checked now (the site did not send that file).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from poem_registry.quality.results import ensure_quality_schema

#: The site's delivery runs, newest first.
SITE_RUNS_SQL = """
select run_id, min(run_at) as run_at
from quality.check_results
where stage = 'delivery' and site_id = $site_id
group by run_id
order by run_at desc, run_id desc
"""

#: Pass rate by DQD category in one run (not_applicable checks are not in the denominator).
PASS_RATE_SQL = """
select category,
       count(*) as checks,
       count(*) filter (where status = 'pass') as passed,
       count(*) filter (where status = 'fail') as failed,
       count(*) filter (where status = 'error') as errors,
       count(*) filter (where status = 'not_applicable') as not_applicable,
       round(100.0 * count(*) filter (where status = 'pass')
             / nullif(count(*) filter (where status in ('pass', 'fail', 'error')), 0), 1) as pass_rate_percent
from quality.check_results
where stage = 'delivery' and site_id = $site_id and run_id = $run_id
group by category
order by category
"""

#: Checks failing (or erroring) in one run, worst first.
OPEN_FAILURES_SQL = """
select suite, check_id, any_value(column_name) as column_name, any_value(category) as category,
       any_value(severity) as severity, max(status) as status,
       sum(unexpected_count) as unexpected_count, max(unexpected_percent) as unexpected_percent,
       any_value(threshold_percent) as threshold_percent, any_value(examples) as examples,
       any_value(message) as message
from quality.check_results
where stage = 'delivery' and site_id = $site_id and run_id = $run_id and status in ('fail', 'error')
group by suite, check_id
order by case any_value(severity) when 'critical' then 0 when 'warning' then 1 else 2 end, suite, check_id
"""

#: New / persisting / resolved / not re-checked failures between two runs of the site.
CHANGES_SQL = """
with checks as (
    select run_id, suite, check_id, any_value(column_name) as column_name, any_value(severity) as severity,
           bool_or(status in ('fail', 'error')) as failing,
           bool_or(status in ('pass', 'fail', 'error')) as checked
    from quality.check_results
    where stage = 'delivery' and site_id = $site_id and run_id in ($current, $previous)
    group by run_id, suite, check_id
),
cur as (select * from checks where run_id = $current),
prev as (select * from checks where run_id = $previous)
select coalesce(cur.suite, prev.suite) as suite,
       coalesce(cur.check_id, prev.check_id) as check_id,
       coalesce(cur.column_name, prev.column_name) as column_name,
       coalesce(cur.severity, prev.severity) as severity,
       case
           when coalesce(cur.failing, false) and coalesce(prev.failing, false) then 'persisting'
           when coalesce(cur.failing, false) then 'new'
           when coalesce(cur.checked, false) then 'resolved'
           else 'not_rechecked'
       end as change
from cur full outer join prev on cur.suite = prev.suite and cur.check_id = prev.check_id
where coalesce(cur.failing, false) or coalesce(prev.failing, false)
order by change, suite, check_id
"""

#: Every check of the run with its status in words (the scorecard table of the site report).
CHECKS_SQL = """
select stage, suite, check_id as check_name, any_value(column_name) as column_name,
       any_value(category) as category, any_value(severity) as severity,
       case when bool_or(status = 'error') then 'error' when bool_or(status = 'fail') then 'fail'
            when bool_or(status = 'pass') then 'pass' else 'not_applicable' end as status,
       case when sum(unexpected_count) is null then null
            else sum(unexpected_count) || ' of ' || sum(element_count) end as observed,
       case when max(threshold_percent) > 0 then 'tolerated up to ' || max(threshold_percent) || '%'
            else 'none tolerated' end as threshold,
       string_agg(distinct nullif(message, ''), '; ') as message
from quality.check_results
where stage = 'delivery' and site_id = $site_id and run_id = $run_id
group by stage, suite, check_id
order by case any_value(severity) when 'critical' then 0 when 'warning' then 1 else 2 end, suite, check_id
"""

#: Last delivery that was loaded (wholly or in part).
FRESHNESS_SQL = """
select max(extracted_at) as last_extracted_at, max(finished_at) as last_loaded_at, count(*) as batches_loaded
from ingest.batches
where site_id = $site_id and status in ('committed', 'partially_quarantined')
"""


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def freshness(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    *,
    expected_cadence_days: int | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Last extract loaded for the site, days since, and whether it is late for its cadence."""
    out: dict[str, Any] = {"last_extracted_at": None, "last_loaded_at": None, "batches_loaded": 0,
                           "days_since_extract": None, "expected_cadence_days": expected_cadence_days,
                           "late": None}  # fmt: skip
    if not _table_exists(con, "ingest", "batches"):
        return out
    row = con.execute(FRESHNESS_SQL, {"site_id": site_id}).fetchone()
    out.update(last_extracted_at=row[0], last_loaded_at=row[1], batches_loaded=int(row[2]))
    reference = row[0] or row[1]
    if reference is not None:
        now = as_of or datetime.now()
        out["days_since_extract"] = (now - reference).days
        if expected_cadence_days is not None:
            out["late"] = out["days_since_extract"] > expected_cadence_days
    elif expected_cadence_days is not None:
        out["late"] = True
    return out


def site_scorecard(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    *,
    expected_cadence_days: int | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The site's data-quality scorecard from its latest delivery run.

    Returns ``site_id``, ``latest_run_id``, ``previous_run_id``, DataFrames
    ``pass_rate_by_category``, ``open_failures`` and ``changes`` (see module doc),
    ``change_counts`` (new/persisting/resolved/not_rechecked -> n), ``checks`` (one
    record per check of the latest run: status, observed, threshold, message, change)
    and ``freshness``.
    """
    ensure_quality_schema(con)
    runs = con.execute(SITE_RUNS_SQL, {"site_id": site_id}).df()
    current = runs["run_id"].iloc[0] if len(runs) else None
    previous = runs["run_id"].iloc[1] if len(runs) > 1 else None
    params = {"site_id": site_id, "run_id": current}
    pass_rate = con.execute(PASS_RATE_SQL, params).df()
    open_failures = con.execute(OPEN_FAILURES_SQL, params).df()
    changes = con.execute(
        CHANGES_SQL, {"site_id": site_id, "current": current, "previous": previous or ""}
    ).df()
    counts = {
        k: int((changes["change"] == k).sum()) for k in ("new", "persisting", "resolved", "not_rechecked")
    }
    checks = con.execute(CHECKS_SQL, params).df()
    checks = checks.merge(
        changes[["suite", "check_id", "change"]].rename(columns={"check_id": "check_name"}),
        on=["suite", "check_name"],
        how="left",
    )
    return {
        "site_id": site_id,
        "latest_run_id": current,
        "previous_run_id": previous,
        "pass_rate_by_category": pass_rate,
        "open_failures": open_failures,
        "changes": changes,
        "change_counts": counts,
        "checks": checks.to_dict("records"),
        "freshness": freshness(con, site_id, expected_cadence_days=expected_cadence_days, as_of=as_of),
    }
