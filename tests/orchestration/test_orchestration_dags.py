"""DAG integrity: the DAG files import cleanly and fast, and follow the project's Airflow conventions.

Parse-time budget: each DAG file must import in under PARSE_BUDGET_S seconds. Files that
only wire package functions import in milliseconds (measured: < 0.1 s each, airflow.sdk
already loaded); a file that pulled DuckDB, pandas, dbt or Great Expectations at module
level would take seconds on every parse by the dag-processor. The budget is generous so
the test is not flaky on a slow machine, and the heavy-import test below checks the cause
directly.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
PARSE_BUDGET_S = 5.0
EXPECTED_DAGS = {"poem_ingest", "poem_build", "poem_publish", "poem_demo"}
#: Tasks that open the DuckDB file: they must queue in the one-slot pool.
DUCKDB_TASKS = {"ingest_site", "build_warehouse", "compute_analytics", "validate_marts", "publish_edition"}
HEAVY_MODULES = ("duckdb", "pandas", "dbt", "great_expectations", "plotly", "scipy", "statsmodels")


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    airflow_home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from airflow.dag_processing.dagbag import DagBag

        from poem_registry.orchestration.config import DUCKDB_POOL

        yield DagBag(dag_folder=str(DAGS_DIR), known_pools={"default_pool", DUCKDB_POOL})
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED_DAGS


def test_each_dag_file_parses_within_budget(dagbag):
    stats = {stat.file: stat.duration for stat in dagbag.dagbag_stats}
    assert len(stats) == len(list(DAGS_DIR.glob("*.py")))
    slow = {file: d for file, d in stats.items() if d > timedelta(seconds=PARSE_BUDGET_S)}
    assert not slow, f"DAG files over the {PARSE_BUDGET_S} s parse budget: {slow}"


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS_DIR.glob("*.py")))
def test_dag_file_imports_no_heavy_module(dag_file, tmp_path):
    """Importing a DAG file must not load the data stack (that belongs inside the tasks)."""
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(DAGS_DIR / dag_file)!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"{dag_file} imports {out.stdout.strip()}"


def test_dag_conventions(dagbag):
    from poem_registry.orchestration.config import OWNER, START_DATE

    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert "poem" in dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md.strip()) > 100, f"{dag.dag_id}: doc_md"
        assert dag.catchup is False, dag.dag_id
        assert dag.max_active_runs == 1, dag.dag_id
        assert dag.start_date == START_DATE, dag.dag_id
        assert dag.owner == OWNER, dag.dag_id


def test_every_task_has_timeout_and_alert(dagbag):
    from poem_registry.orchestration.callbacks import alert_failure

    for dag in dagbag.dags.values():
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.execution_timeout is not None, where
            assert task.execution_timeout <= timedelta(hours=2), where
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert alert_failure in callbacks, where
            if task.retries:
                assert task.retry_exponential_backoff >= 2, f"{where}: retries without exponential backoff"


def test_duckdb_tasks_use_the_one_slot_pool(dagbag):
    from poem_registry.orchestration.config import DUCKDB_POOL, DUCKDB_POOL_SLOTS

    assert DUCKDB_POOL == "duckdb_writer"
    assert DUCKDB_POOL_SLOTS == 1
    seen = set()
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if task.task_id in DUCKDB_TASKS:
                seen.add(task.task_id)
                assert task.pool == DUCKDB_POOL, f"{dag.dag_id}.{task.task_id}"
            else:
                assert task.pool != DUCKDB_POOL, f"{dag.dag_id}.{task.task_id} needs no warehouse slot"
    assert seen == DUCKDB_TASKS


def test_gate_and_config_failures_are_not_retried(dagbag):
    """Tasks that only check (gate, site list, periods, watcher) never retry; the demo never retries."""
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if task.task_id in {
                "list_sites",
                "collect_ingest",
                "require_gate",
                "publication_periods",
                "watcher",
            }:
                assert task.retries == 0, f"{dag.dag_id}.{task.task_id}"
    assert all(task.retries == 0 for task in dagbag.dags["poem_demo"].tasks)


def test_schedules(dagbag, monkeypatch):
    from airflow.sdk import CronTriggerTimetable
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    from poem_registry.orchestration import config

    ingest = dagbag.dags["poem_ingest"].timetable
    assert isinstance(ingest, CronTriggerTimetable)
    assert ingest.expression == "0 0 * * *"  # @daily
    publish = dagbag.dags["poem_publish"].timetable
    assert isinstance(publish, CronTriggerTimetable)
    assert publish.expression == "0 6 2 * *"
    build = dagbag.dags["poem_build"].timetable
    assert isinstance(build, AssetTriggeredTimetable)
    assert [a.uri for a in build.asset_condition.objects] == ["poem://warehouse/raw"]
    assert isinstance(dagbag.dags["poem_demo"].timetable, NullTimetable)
    # the schedules are configurable from the environment ("none" = manual only)
    monkeypatch.setenv(config.INGEST_SCHEDULE_ENV, "0 */6 * * *")
    monkeypatch.setenv(config.PUBLISH_SCHEDULE_ENV, "none")
    assert config.ingest_schedule() == "0 */6 * * *"
    assert config.publish_schedule() is None


def test_assets_are_emitted_by_the_gatekeeping_tasks(dagbag):
    def outlets(dag_id):
        return {t.task_id: [a.uri for a in t.outlets] for t in dagbag.dags[dag_id].tasks if t.outlets}

    assert outlets("poem_ingest") == {"collect_ingest": ["poem://warehouse/raw"]}
    assert outlets("poem_build") == {"require_gate": ["poem://warehouse/marts"]}
    assert outlets("poem_publish") == {}
    assert outlets("poem_demo") == {}, "a demo run must not schedule the production DAGs"


def test_ingest_is_mapped_over_the_configured_sites(dagbag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for dag_id in ("poem_ingest", "poem_demo"):
        dag = dagbag.dags[dag_id]
        ingest = dag.get_task("ingest_site")
        assert isinstance(ingest, MappedOperator), dag_id
        assert "list_sites" in ingest.upstream_task_ids
        mapped_over = ingest.op_kwargs_expand_input.value
        assert set(mapped_over) == {"site_id"}
        assert mapped_over["site_id"].operator.task_id == "list_sites"
        collect = dag.get_task("collect_ingest")
        assert collect.trigger_rule == "all_done", "one failed site must not stop the others' data"
        watcher = dag.get_task("watcher")
        assert watcher.trigger_rule == "one_failed"
        assert {"ingest_site", "collect_ingest"} <= watcher.upstream_task_ids


def test_build_runs_one_dbt_build_then_analytics_then_gate(dagbag):
    dag = dagbag.dags["poem_build"]
    assert dag.get_task("compute_analytics").upstream_task_ids == {"build_warehouse"}
    assert dag.get_task("validate_marts").upstream_task_ids == {"compute_analytics"}
    assert dag.get_task("require_gate").upstream_task_ids == {"validate_marts"}
    assert sum(t.task_id == "build_warehouse" for t in dag.tasks) == 1


def test_demo_runs_the_whole_pipeline_in_order(dagbag):
    dag = dagbag.dags["poem_demo"]
    chain = ["collect_ingest", "build_warehouse", "compute_analytics", "validate_marts", "publish_edition"]
    for upstream, downstream in itertools.pairwise(chain):
        assert upstream in dag.get_task(downstream).upstream_task_ids, f"{upstream} -> {downstream}"


def test_publish_params_validate_the_period(dagbag):
    from airflow.sdk import Param

    dag = dagbag.dags["poem_publish"]
    period: Param = dag.params.get_param("period")
    for good in (None, "2025-03", "2025-Q1", "2025"):
        assert period.resolve(good) == good
    for bad in ("2025-13", "2025-Q5", "March", "25-03"):
        with pytest.raises(Exception, match=r"does not match|not valid|invalid"):
            period.resolve(bad)
    as_of: Param = dag.params.get_param("as_of")
    assert as_of.resolve("2025-03-31") == "2025-03-31"
    publish = dag.get_task("publish_edition")
    assert "publication_periods" in publish.upstream_task_ids
    assert "validate_marts" in publish.upstream_task_ids


def test_collect_ingest_skips_when_nothing_was_committed():
    from airflow.sdk.exceptions import AirflowSkipException

    from poem_registry.orchestration.tasks import collect_ingest

    nothing = [{"site_id": "a", "rows_loaded": 0, "rows_quarantined": 3, "committed_batches": 0}]
    with pytest.raises(AirflowSkipException):
        collect_ingest.function(nothing, ["a", "b"], skip_when_nothing_new=True)
    totals = collect_ingest.function(nothing, ["a", "b"], skip_when_nothing_new=False)
    assert totals["sites_failed"] == ["b"]
    new = [*nothing, {"site_id": "b", "rows_loaded": 10, "rows_quarantined": 0, "committed_batches": 1}]
    totals = collect_ingest.function(new, ["a", "b"], skip_when_nothing_new=True)
    assert totals == {
        "sites": 2,
        "sites_failed": [],
        "rows_loaded": 10,
        "rows_quarantined": 3,
        "committed_batches": 1,
    }


def test_require_gate_fails_without_retry_when_closed():
    from airflow.sdk.exceptions import AirflowFailException

    from poem_registry.orchestration.tasks import require_gate

    open_gate = {"publish_allowed": True, "reasons": [], "checks_passed": 3, "checks_failed": 0}
    assert require_gate.function(open_gate) == open_gate
    with pytest.raises(AirflowFailException, match="completeness below threshold"):
        require_gate.function({"publish_allowed": False, "reasons": ["completeness below threshold"]})
