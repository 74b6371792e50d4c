"""Names and knobs shared by the DAGs, the init command and the deployment files.

Everything here is cheap to import (no Airflow, no DuckDB): the DAG files read it at
parse time, and the tests and the compose validation read it without Airflow.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

#: The pool every task that writes the DuckDB file runs in. DuckDB allows one writing
#: process per file, so the pool has exactly one slot: writers queue in Airflow instead
#: of failing on the file lock.
DUCKDB_POOL = "duckdb_writer"
DUCKDB_POOL_SLOTS = 1

#: Asset URIs: raw tables updated by ingest, marts rebuilt and validated by the build.
RAW_ASSET_URI = "poem://warehouse/raw"
MARTS_ASSET_URI = "poem://warehouse/marts"

OWNER = "poem-registry"
#: Fixed start date for every DAG (catchup is off everywhere, so it only anchors schedules).
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)

#: Orchestration knobs read from the environment at DAG parse time. They are plain
#: environment variables (not Airflow Variables) because reading a Variable at the top of
#: a DAG file costs a metadata-database round trip on every parse.
INGEST_SCHEDULE_ENV = "POEM_INGEST_SCHEDULE"
PUBLISH_SCHEDULE_ENV = "POEM_PUBLISH_SCHEDULE"
DEFAULT_INGEST_SCHEDULE = "@daily"
#: 06:00 UTC on the 2nd of each month: the previous month's edition, plus the quarter's
#: edition when that month closes a quarter.
DEFAULT_PUBLISH_SCHEDULE = "0 6 2 * *"

#: Every POEM_* variable the orchestration layer reads, beyond :meth:`Settings.as_env`.
ORCHESTRATION_ENV_VARS = (INGEST_SCHEDULE_ENV, PUBLISH_SCHEDULE_ENV)

#: Airflow objects the init command maintains. ``smtp_default`` mirrors the ``POEM_SMTP_*``
#: settings of :mod:`poem_registry.reports.notify`, for Airflow's own e-mail features.
SETTINGS_VARIABLE = "poem_settings"
SMTP_CONN_ID = "smtp_default"

#: Retries for steps where a retry can help (a warehouse lock held too long, a site's SQL
#: server briefly down): 2 retries at 2 then 4 minutes. Validation failures and bad
#: configuration raise AirflowFailException in the tasks, which is never retried.
RETRIES = 2
RETRY_DELAY = timedelta(minutes=2)
RETRY_BACKOFF = 2.0
MAX_RETRY_DELAY = timedelta(minutes=30)


def ingest_schedule() -> str | None:
    """Schedule of ``poem_ingest``: ``POEM_INGEST_SCHEDULE`` (cron or preset; ``none`` = manual only)."""
    return _schedule(os.environ.get(INGEST_SCHEDULE_ENV), DEFAULT_INGEST_SCHEDULE)


def publish_schedule() -> str | None:
    """Schedule of ``poem_publish``: ``POEM_PUBLISH_SCHEDULE`` (cron; ``none`` = manual only)."""
    return _schedule(os.environ.get(PUBLISH_SCHEDULE_ENV), DEFAULT_PUBLISH_SCHEDULE)


def _schedule(value: str | None, default: str) -> str | None:
    if value is None or not value.strip():
        return default
    return None if value.strip().lower() in {"none", "manual", "off"} else value.strip()
