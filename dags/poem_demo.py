"""poem_demo: the whole pipeline in one DAG run (used by `make demo` via `airflow dags test poem_demo`)."""

from __future__ import annotations

from airflow.sdk import dag

from poem_registry.orchestration.tasks import (
    DAG_DEFAULTS,
    DEFAULT_ARGS,
    build_warehouse,
    collect_ingest,
    compute_analytics,
    ingest_site,
    list_sites,
    publish_edition,
    validate_marts,
    watcher,
)


@dag(
    dag_id="poem_demo",
    schedule=None,
    max_active_runs=1,
    tags=["poem", "demo"],
    doc_md="""
### The whole pipeline in one run

What `make demo` runs (`airflow dags test poem_demo`): mapped ingest per site, then one
`dbt build`, the statistics, the mart quality gate and the publication of an edition.
The same tasks as `poem_ingest`, `poem_build` and `poem_publish`, wired in one run and
without assets, so a demo run never schedules the production DAGs.

The build goes on when a site's ingest failed (the other sites' data is still worth a
report); the `watcher` task then fails the run so the failure is not hidden.
Manual trigger only. Warehouse tasks run in pool `duckdb_writer` (1 slot).
""",
    # No retries in the demo: `airflow dags test` waits out real retry delays, and a demo
    # should show a failure at once.
    **{**DAG_DEFAULTS, "default_args": {**DEFAULT_ARGS, "retries": 0}},
)
def poem_demo() -> None:
    site_ids = list_sites()
    ingested = ingest_site.expand(site_id=site_ids)
    collected = collect_ingest(ingested, site_ids, skip_when_nothing_new=False)
    built = build_warehouse()
    analytics = compute_analytics()
    validation = validate_marts()
    published = publish_edition(period=None, gate=validation)
    collected >> built >> analytics >> validation
    [site_ids, ingested, collected, built, analytics, validation, published] >> watcher()


poem_demo()
