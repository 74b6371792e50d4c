"""poem_ingest: each configured site's new deliveries into the raw tables, one mapped task per site."""

from __future__ import annotations

from airflow.sdk import dag

from poem_registry.orchestration import config
from poem_registry.orchestration.tasks import (
    DAG_DEFAULTS,
    RAW_ASSET,
    collect_ingest,
    ingest_site,
    list_sites,
    watcher,
)


@dag(
    dag_id="poem_ingest",
    schedule=config.ingest_schedule(),
    max_active_runs=1,
    tags=["poem", "ingest"],
    doc_md="""
### Ingest site deliveries

Lists the sites configured in `POEM_SITES_DIR` and ingests each one in its own mapped
task instance (`ingest_site[<site_id>]`), so one site's bad delivery fails only that site.
A delivery that fails a critical check is **quarantined** with a report (the task still
succeeds); a site whose ingest raises fails its task and triggers an alert.

* **Schedule:** `POEM_INGEST_SCHEDULE` (default `@daily`; `none` for manual only), or trigger by hand.
* **Pool:** every ingest task runs in `duckdb_writer` (1 slot): one writer of the DuckDB file at a time.
* **Asset:** `collect_ingest` updates `poem://warehouse/raw` only when a site committed new
  rows (it skips itself otherwise), which schedules `poem_build`.
* The `watcher` task fails the run when any site failed, after the other sites' data is committed.
""",
    **DAG_DEFAULTS,
)
def poem_ingest() -> None:
    site_ids = list_sites()
    ingested = ingest_site.expand(site_id=site_ids)
    collected = collect_ingest.override(outlets=[RAW_ASSET])(ingested, site_ids, skip_when_nothing_new=True)
    [site_ids, ingested, collected] >> watcher()


poem_ingest()
