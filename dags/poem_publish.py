"""poem_publish: monthly and quarterly report editions, behind the mart quality gate."""

from __future__ import annotations

from airflow.sdk import Param, dag

from poem_registry.orchestration import config
from poem_registry.orchestration.periods import PERIOD_PATTERN
from poem_registry.orchestration.tasks import (
    DAG_DEFAULTS,
    MARTS_ASSET,
    publication_periods,
    publish_edition,
    validate_marts,
)


@dag(
    dag_id="poem_publish",
    schedule=config.publish_schedule(),
    max_active_runs=1,
    tags=["poem", "reports", "publish"],
    params={
        "period": Param(
            None,
            type=["null", "string"],
            pattern=PERIOD_PATTERN,
            description="Edition to publish: a month (2025-03) or a quarter (2025-Q1). "
            "Empty: the editions due at the run date (last month, and its quarter if it closed one).",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Reporting date YYYY-MM-DD. Empty: the last day of the period.",
        ),
    },
    doc_md="""
### Publish report editions

* **Schedule:** `POEM_PUBLISH_SCHEDULE` (default `0 6 2 * *`, 06:00 UTC on the 2nd): the
  previous month's edition, plus the quarter's edition when that month closes a quarter
  (one mapped `publish_edition` instance per period). Trigger by hand with `period`
  and/or `as_of` to publish a chosen edition.
* **Gate:** `validate_marts` re-runs the mart quality gate on the marts *as they are now*
  rather than trusting the last stored result: the marts may have been rebuilt since that
  validation, and publishing must never show numbers nobody checked. The results are stored
  in `quality.*` like every validation. A closed gate fails the publishing task without
  retry; the last good edition stays online.
* **Notifications:** success (edition online) and failure go through the project notifier.

Reads the asset `poem://warehouse/marts` (no scheduling on it: editions follow the calendar).
Warehouse tasks run in pool `duckdb_writer` (1 slot).
""",
    **DAG_DEFAULTS,
)
def poem_publish() -> None:
    gate = validate_marts.override(inlets=[MARTS_ASSET])()
    publish_edition.partial(gate=gate).expand(period=publication_periods())


poem_publish()
