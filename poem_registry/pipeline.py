"""The stages of a pipeline run, as plain functions the CLI and the Airflow DAGs both call.

Each stage takes :class:`Settings`, does one thing, and returns a small summary
(paths and counts, never data frames) that fits in an XCom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from poem_registry.locking import run_lock
from poem_registry.settings import Settings

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _quiet(msg: str) -> None:
    log.info(msg)


def run_ingest(settings: Settings, *, site_ids: list[str] | None = None, run_id: str | None = None,
               progress: Progress = _quiet) -> dict:
    from poem_registry.ingest import ingest

    with run_lock(settings, "ingest"):
        summary = ingest(settings, site_ids=site_ids, run_id=run_id, progress=progress)
    return summary.as_dict()


def run_build(settings: Settings, *, as_of: date | None = None, run_id: str | None = None,
              progress: Progress = _quiet, full_refresh: bool = False) -> dict:
    from poem_registry.build import run_dbt, store_run_results
    from poem_registry.warehouse import connect

    progress(f"dbt build (as of {as_of or 'today'}) ...")
    args = ["build"] + (["--full-refresh"] if full_refresh else [])
    with run_lock(settings, "build"):
        # Parse once (partial parsing against the persistent target dir); the build and the
        # docs below reuse the manifest instead of parsing and compiling the project again.
        manifest = run_dbt(["parse", "--no-write-json"], settings, as_of=as_of).manifest
        result = run_dbt(args, settings, as_of=as_of, manifest=manifest)
        with connect(settings.warehouse_path, timeout=settings.warehouse_lock_timeout) as con:
            store_run_results(con, result, run_id or "adhoc")
    for node in result.nodes:
        if node.status not in ("success", "pass"):
            progress(f"  {node.status}: {node.name} {node.message or ''}")
    progress(f"dbt build: {result.summary_line()}")
    if not result.success:
        raise RuntimeError(f"dbt build failed: {result.summary_line()}; see {result.run_results_path} "
                           "and the log above for the failing model or test")
    # --no-compile: the build already compiled every node into the manifest it wrote.
    docs = run_dbt(["docs", "generate", "--static", "--no-compile"], settings, as_of=as_of, manifest=manifest)
    if not docs.success:  # the marts are fine; an edition then simply has no warehouse docs
        progress("  warning: dbt docs generate failed; editions will not include the warehouse docs")
    return {"success": result.success, "nodes": len(result.nodes), "summary": result.summary_line()}


def run_analytics(settings: Settings, *, as_of: date | None = None, progress: Progress = _quiet) -> dict:
    from poem_registry.analytics import compute_all

    progress("statistics over marts (funnel limits, learning curves, durability, pooling, O/E) ...")
    with run_lock(settings, "analytics"):
        return compute_all(settings, as_of=as_of, progress=progress)


def run_validate(settings: Settings, *, run_id: str, progress: Progress = _quiet) -> dict:
    from poem_registry.quality.marts import validate_marts
    from poem_registry.quality.results import store_results
    from poem_registry.sites import load_sites
    from poem_registry.warehouse import connect

    progress("validating marts (GX) ...")
    with run_lock(settings, "validate"), connect(settings.warehouse_path,
                                                 timeout=settings.warehouse_lock_timeout) as con:
        delivered = {r[0] for r in con.execute(
            "select distinct site_id from ingest.batches where rows_loaded > 0").fetchall()}
        configured = [s.site_id for s in load_sites(settings.sites_dir)]
        validation = validate_marts(con, run_id=run_id, expected_sites=[s for s in configured if s in delivered])
        store_results(con, validation.checks, run_id=run_id, stage="mart")
    gate = validation.gate
    passed = sum(c.status == "pass" for c in validation.checks)
    failed = sum(c.status in ("fail", "error") for c in validation.checks)
    progress(f"mart checks: {passed} passed, {failed} failed; publishing "
             + ("allowed" if gate.publish_allowed else "BLOCKED: " + "; ".join(gate.reasons)))
    for warning in validation.as_dict()["warnings"]:
        progress(f"  warning: {warning}")
    return {**validation.as_dict(), "checks_passed": passed, "checks_failed": failed}


def run_publish(settings: Settings, *, run_id: str, as_of: date | None = None, period: str | None = None,
                gate: dict | None = None, progress: Progress = _quiet) -> dict:
    from poem_registry.reports.publish import publish_edition

    with run_lock(settings, "publish"):
        return publish_edition(settings, run_id=run_id, as_of=as_of, period=period, gate=gate,
                               progress=progress)


@dataclass
class RunSummary:
    run_id: str
    started_at: str
    finished_at: str | None = None
    stages: dict = field(default_factory=dict)

    def write(self, settings: Settings) -> Path:
        path = settings.logs_dir / "last_run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=str), encoding="utf-8")
        return path


def run_all(settings: Settings, *, as_of: date | None = None, run_id: str | None = None,
            site_ids: list[str] | None = None, period: str | None = None, progress: Progress = _quiet) -> RunSummary:
    """Every stage in order: ingest, build, statistics, validate, publish."""
    from poem_registry.ingest import new_run_id

    run_id = run_id or new_run_id()
    with run_lock(settings, f"run_all {run_id}"):  # held across every stage: no other run interleaves
        summary = RunSummary(run_id=run_id, started_at=datetime.now(UTC).isoformat())
        summary.stages["ingest"] = run_ingest(settings, site_ids=site_ids, run_id=run_id, progress=progress)
        summary.stages["build"] = run_build(settings, as_of=as_of, run_id=run_id, progress=progress)
        summary.stages["analytics"] = run_analytics(settings, as_of=as_of, progress=progress)
        summary.stages["validate"] = run_validate(settings, run_id=run_id, progress=progress)
        summary.stages["publish"] = run_publish(settings, run_id=run_id, as_of=as_of, period=period,
                                                gate=summary.stages["validate"], progress=progress)
        summary.finished_at = datetime.now(UTC).isoformat()
        summary.write(settings)
    return summary
