"""The Airflow tasks of the pipeline, defined once and wired by every DAG in ``dags/``.

Each task resolves :class:`~poem_registry.settings.Settings` from the ``POEM_*``
environment of the worker, calls one stage function of :mod:`poem_registry.pipeline`
(imported inside the task, so DAG parsing never loads DuckDB, dbt, GX or pandas) and
returns a small dict of paths and counts for XCom. The Airflow run id is passed to the
stages as the pipeline run id, so ledger rows, dbt results and quality results of one
DAG run share it.

Retry policy: tasks inherit :data:`DEFAULT_ARGS` (2 retries, exponential backoff) for
failures a retry can fix (the warehouse held by another process, a site's database briefly
down). Failures a retry cannot fix (bad configuration, missing secret, failed dbt tests,
a closed quality gate) raise :class:`AirflowFailException`, which Airflow never retries.
Every task that opens the DuckDB file runs in the one-slot pool ``duckdb_writer``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from poem_registry.orchestration import config
from poem_registry.orchestration.callbacks import alert_failure, announce_success

if TYPE_CHECKING:
    from poem_registry.settings import Settings

log = logging.getLogger(__name__)

#: Updated when an ingest run committed new rows to the ``raw`` tables.
RAW_ASSET = Asset(name="poem_warehouse_raw", uri=config.RAW_ASSET_URI, group="poem")
#: Updated when the marts were rebuilt and passed the mart quality gate.
MARTS_ASSET = Asset(name="poem_warehouse_marts", uri=config.MARTS_ASSET_URI, group="poem")

#: ``default_args`` of every DAG: owner, retries with exponential backoff, a default
#: timeout (each task also sets its own) and the failure alert.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": config.OWNER,
    "retries": config.RETRIES,
    "retry_delay": config.RETRY_DELAY,
    "retry_exponential_backoff": config.RETRY_BACKOFF,
    "max_retry_delay": config.MAX_RETRY_DELAY,
    "execution_timeout": timedelta(hours=1),
    "on_failure_callback": alert_failure,
}

#: Keyword arguments shared by every ``@dag`` of the project.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": config.START_DATE,
    "catchup": False,
    "default_args": DEFAULT_ARGS,
}


# --------------------------------------------------------------------------- helpers


def _settings() -> Settings:
    from poem_registry.settings import load_settings

    try:
        return load_settings()
    except ValueError as exc:  # an unknown key in the settings file: fix the file, a retry cannot help
        raise AirflowFailException(f"settings: {exc}") from exc


def _run_id() -> str:
    return str(get_current_context()["run_id"])


def _progress(message: str) -> None:
    log.info("%s", message)


@contextmanager
def _not_retryable(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the given exceptions into :class:`AirflowFailException` (fail now, no retry)."""
    try:
        yield
    except errors as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def _xcom_safe(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-plain copy of a stage summary (dates and paths become strings)."""
    return json.loads(json.dumps(dict(summary), default=str))


def _as_of_param() -> date | None:
    value = get_current_context()["params"].get("as_of")
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise AirflowFailException(f"param as_of {value!r} is not a date (YYYY-MM-DD)") from exc


# --------------------------------------------------------------------------- ingest


@task(retries=0, execution_timeout=timedelta(minutes=5))
def list_sites() -> list[str]:
    """The site ids configured in the sites folder: one mapped ingest task each."""
    from poem_registry.sites import SiteConfigError, load_sites

    settings = _settings()
    with _not_retryable(SiteConfigError):
        site_ids = [site.site_id for site in load_sites(settings.sites_dir)]
    if not site_ids:
        log.warning("no site configured in %s: nothing to ingest", settings.sites_dir)
    log.info("sites: %s", ", ".join(site_ids))
    return site_ids


@task(
    pool=config.DUCKDB_POOL,
    execution_timeout=timedelta(hours=1),
    map_index_template="{{ site_label }}",
)
def ingest_site(site_id: str) -> dict[str, Any]:
    """Ingest one site's new deliveries. A failure here fails only this site's task instance.

    A delivery that fails a critical check is quarantined (with a report) and the task
    still succeeds: quarantine is the designed outcome for bad data, not a pipeline error.
    """
    from poem_registry.ingest.pseudonymize import MissingSecretError
    from poem_registry.pipeline import run_ingest
    from poem_registry.sites import SiteConfigError

    get_current_context()["site_label"] = site_id  # type: ignore[typeddict-unknown-key]  # map_index_template
    settings = _settings()
    with _not_retryable(SiteConfigError, MissingSecretError):
        summary = run_ingest(settings, site_ids=[site_id], run_id=_run_id(), progress=_progress)
    if error := summary.get("site_errors", {}).get(site_id):
        raise RuntimeError(f"site {site_id}: {error}")
    batches = summary.get("batches", [])
    statuses: dict[str, int] = {}
    for batch in batches:
        statuses[batch["status"]] = statuses.get(batch["status"], 0) + 1
    quarantined = [b["quarantine_path"] for b in batches if b.get("quarantine_path")]
    for path in quarantined:
        log.warning("site %s: a delivery was quarantined, see %s", site_id, path)
    return {
        "site_id": site_id,
        "rows_loaded": int(summary.get("rows_loaded", 0)),
        "rows_quarantined": int(summary.get("rows_quarantined", 0)),
        "committed_batches": int(summary.get("committed_batches", 0)),
        "batch_statuses": statuses,
        "quarantine_paths": [str(p) for p in quarantined],
    }


@task(retries=0, execution_timeout=timedelta(minutes=5), trigger_rule=TriggerRule.ALL_DONE)
def collect_ingest(
    results: Iterable[Mapping[str, Any]], site_ids: list[str], skip_when_nothing_new: bool = True
) -> dict[str, Any]:
    """Totals over the sites' ingest tasks (runs even when some sites failed).

    With ``skip_when_nothing_new`` the task skips itself when no site committed rows, so
    its ``outlets`` (the raw asset in ``poem_ingest``) get no event and nothing downstream
    is scheduled.
    """
    done = [dict(r) for r in results if r]
    failed = sorted(set(site_ids) - {r["site_id"] for r in done})
    totals = {
        "sites": len(site_ids),
        "sites_failed": failed,
        "rows_loaded": sum(r["rows_loaded"] for r in done),
        "rows_quarantined": sum(r["rows_quarantined"] for r in done),
        "committed_batches": sum(r["committed_batches"] for r in done),
    }
    log.info("ingest totals: %s", totals)
    if failed:
        log.error("ingest failed for site(s) %s; the other sites' data is committed", ", ".join(failed))
    if skip_when_nothing_new and totals["committed_batches"] == 0:
        raise AirflowSkipException("no site committed new rows: the raw asset is not updated")
    return totals


# --------------------------------------------------------------------------- warehouse


@task(pool=config.DUCKDB_POOL, execution_timeout=timedelta(hours=2))
def build_warehouse() -> dict[str, Any]:
    """One ``dbt build`` (models and data tests); per-model results go to a warehouse table and the log."""
    from poem_registry.pipeline import run_build
    from poem_registry.warehouse import WarehouseBusyError

    settings = _settings()
    try:
        return _xcom_safe(run_build(settings, as_of=_as_of_param(), run_id=_run_id(), progress=_progress))
    except WarehouseBusyError:
        raise  # another process held the file: a retry can help
    except RuntimeError as exc:  # dbt reported failing models or tests: fix the data or the model first
        raise AirflowFailException(str(exc)) from exc


@task(pool=config.DUCKDB_POOL, execution_timeout=timedelta(hours=1))
def compute_analytics() -> dict[str, Any]:
    """Statistics over the marts (funnel limits, learning curves, pooling, O/E), written as tables."""
    from poem_registry.pipeline import run_analytics

    return _xcom_safe(run_analytics(_settings(), as_of=_as_of_param(), progress=_progress))


@task(pool=config.DUCKDB_POOL, execution_timeout=timedelta(minutes=30))
def validate_marts() -> dict[str, Any]:
    """The mart quality gate (GX); results are stored in ``quality.*`` and returned as XCom.

    A closed gate is a result, not an error: this task succeeds and :func:`require_gate`
    (or :func:`publish_edition`) acts on it, so the stored XCom always holds the verdict.
    """
    from poem_registry.pipeline import run_validate

    result = _xcom_safe(run_validate(_settings(), run_id=_run_id(), progress=_progress))
    if not result.get("publish_allowed"):
        log.warning("mart quality gate CLOSED: %s", "; ".join(result.get("reasons", [])))
    return result


@task(retries=0, execution_timeout=timedelta(minutes=5))
def require_gate(validation: dict[str, Any]) -> dict[str, Any]:
    """Fail (no retry, with an alert) when the mart quality gate is closed; pass the verdict on."""
    if not validation.get("publish_allowed"):
        reasons = "; ".join(validation.get("reasons", [])) or "no reason recorded"
        raise AirflowFailException(
            f"the mart quality gate is closed ({reasons}); nothing is published and the last good "
            "edition stays online. The data-quality report lists the failing checks."
        )
    return validation


# --------------------------------------------------------------------------- publish


@task(retries=0, execution_timeout=timedelta(minutes=5))
def publication_periods() -> list[str]:
    """The editions this run publishes: the ``period`` param, or those due at the run's date."""
    from poem_registry.orchestration.periods import periods_due, validate_period

    context = get_current_context()
    chosen = context["params"].get("period")
    if chosen:
        with _not_retryable(ValueError):
            return [validate_period(str(chosen))]
    dag_run = context["dag_run"]
    run_date = (context.get("logical_date") or dag_run.run_after).date()
    due = periods_due(run_date)
    log.info("editions due on %s: %s", run_date, ", ".join(due))
    return due


@task(
    pool=config.DUCKDB_POOL,
    execution_timeout=timedelta(hours=1),
    on_success_callback=announce_success,
)
def publish_edition(period: str | None, gate: dict[str, Any] | None) -> dict[str, Any]:
    """Publish one edition (static HTML), only behind an open mart quality gate.

    The reporting date is the ``as_of`` param, else the end of ``period``, else today.
    A closed gate fails the task without retry; the publisher records the blocked attempt
    and the last good edition stays online.
    """
    from poem_registry.orchestration.periods import period_end
    from poem_registry.pipeline import run_publish

    as_of = _as_of_param() or (period_end(period) if period else None)
    summary = _xcom_safe(
        run_publish(_settings(), run_id=_run_id(), as_of=as_of, period=period, gate=gate, progress=_progress)
    )
    if summary.get("status") == "blocked":
        raise AirflowFailException(summary.get("message") or "publishing blocked by the mart quality gate")
    return summary


# --------------------------------------------------------------------------- run state


@task(retries=0, execution_timeout=timedelta(minutes=1), trigger_rule=TriggerRule.ONE_FAILED)
def watcher() -> None:
    """Fail the DAG run when any task failed (Airflow's "watcher" pattern).

    Needed where an ``all_done`` task (``collect_ingest``) lets the run go on after a
    site's ingest failed: without it the run would end "success" and hide that failure.
    Skipped (so harmless) when nothing failed.
    """
    raise AirflowFailException("a task of this run failed; see the failed task's log")
