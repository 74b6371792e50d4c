"""poem_build: dbt build, statistics and the mart quality gate whenever new raw data lands."""

from __future__ import annotations

from airflow.sdk import dag

from poem_registry.orchestration.tasks import (
    DAG_DEFAULTS,
    MARTS_ASSET,
    RAW_ASSET,
    build_warehouse,
    compute_analytics,
    require_gate,
    validate_marts,
)


@dag(
    dag_id="poem_build",
    schedule=[RAW_ASSET],
    max_active_runs=1,
    tags=["poem", "warehouse", "quality"],
    doc_md="""
### Build the warehouse

Runs when `poem_ingest` updates the asset `poem://warehouse/raw`.

1. `build_warehouse`: **one** `dbt build` process (staging, intermediate, marts and their
   data tests); per-model results are stored in the warehouse and logged.
2. `compute_analytics`: statistics over the marts (funnel limits, learning curves, pooling).
3. `validate_marts`: the Great Expectations mart gate; results go to `quality.*` and the
   verdict (`publish_allowed`, `reasons`, check counts) is this task's XCom.
4. `require_gate`: fails (alert, no retry) when the gate is closed; otherwise updates the
   asset `poem://warehouse/marts`.

All warehouse tasks run in pool `duckdb_writer` (1 slot).
""",
    **DAG_DEFAULTS,
)
def poem_build() -> None:
    validation = validate_marts()
    build_warehouse() >> compute_analytics() >> validation
    require_gate.override(outlets=[MARTS_ASSET])(validation)


poem_build()
