"""Alerts from Airflow callbacks: always a log line, and an e-mail through the project's notifier.

The notifier is :mod:`poem_registry.reports.notify` (``notify_failure(context)`` and
``notify(settings, edition_summary)``; SMTP settings from ``POEM_SMTP_*``). It is imported
when a callback runs, never at DAG parse time, and any error it raises is logged instead
of masking the task's own outcome.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("poem_registry.alerts")

NOTIFY_MODULE = "poem_registry.reports.notify"


def _notifier(name: str) -> Callable[..., Any] | None:
    try:
        module = importlib.import_module(NOTIFY_MODULE)
    except ImportError:
        log.info("no notifier installed (%s): the alert is in this log only", NOTIFY_MODULE)
        return None
    return getattr(module, name, None)


def _where(context: Mapping[str, Any]) -> str:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "?")
    task = getattr(ti, "task_id", None) or "(run)"
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        task += f"[{getattr(ti, 'rendered_map_index', None) or map_index}]"
    run_id = context.get("run_id") or getattr(dag_run, "run_id", "?")
    return f"{dag_id}.{task} (run {run_id})"


def alert_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every task: log the failure, then e-mail it if SMTP is configured."""
    error = context.get("exception") or context.get("reason") or "see the task log"
    log.error("[POEM Registry] FAILED: %s: %s", _where(context), error)
    notify_failure = _notifier("notify_failure")
    if notify_failure is None:
        return
    try:
        notify_failure(dict(context))
    except Exception:  # alerting must never hide the task's own failure
        log.exception("the failure notification for %s could not be sent", _where(context))


def announce_success(context: Mapping[str, Any]) -> None:
    """``on_success_callback`` of the publishing task: log the edition and e-mail its summary."""
    ti = context.get("task_instance") or context.get("ti")
    try:
        summary = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index) if ti is not None else None
    except Exception:  # without the summary there is nothing to announce; the log says so
        log.warning("could not read the published edition's summary from XCom", exc_info=True)
        summary = None
    if not isinstance(summary, Mapping):
        return
    log.info("[POEM Registry] edition %s published by %s", summary.get("edition"), _where(context))
    notify = _notifier("notify")
    if notify is None:
        return
    try:
        from poem_registry.settings import load_settings

        notify(load_settings(), dict(summary))
    except Exception:  # the edition is online; a mail problem must not fail the task
        log.exception("the edition notification for %s could not be sent", summary.get("edition"))
