"""The one-screen summary printed at the end of a run or the demo."""

from __future__ import annotations

from poem_registry.settings import Settings
from poem_registry.warehouse import connect


def format_run_summary(stages: dict) -> str:
    ing = stages.get("ingest", {})
    val = stages.get("validate", {})
    pub = stages.get("publish", {})
    lines = [
        "",
        "== POEM Registry run ==",
        f"rows loaded: {ing.get('rows_loaded', 0)}   rows quarantined: {ing.get('rows_quarantined', 0)}   "
        f"batches committed: {ing.get('committed_batches', 0)}   sites failed: {len(ing.get('site_errors', {}))}",
        f"mart checks: {val.get('checks_passed', 0)} passed, {val.get('checks_failed', 0)} failed; publishing "
        + ("allowed" if val.get("publish_allowed") else "blocked: " + "; ".join(val.get("reasons", []))),
        f"edition: {pub.get('status', '-')}  {pub.get('index_html') or pub.get('edition_path') or ''}",
    ]
    return "\n".join(lines)


def warehouse_summary(settings: Settings) -> str:
    """Totals from the ledger and quality tables: works however the run was started (CLI or Airflow)."""
    with connect(settings.warehouse_path, read_only=True, timeout=settings.warehouse_lock_timeout) as con:
        sites = con.execute(
            "select site_id, count(*) filter (where status in ('committed','partially_quarantined')), "
            "coalesce(sum(rows_loaded),0), coalesce(sum(rows_quarantined),0), "
            "count(*) filter (where status = 'quarantined') from ingest.batches group by 1 order by 1").fetchall()
        checks = con.execute(
            "select stage, count(*) filter (where status = 'pass'), count(*) filter (where status in "
            "('fail','error')), count(*) filter (where status = 'not_applicable') from quality.check_results "
            "where run_id in (select run_id from quality.check_results group by run_id, stage "
            "qualify row_number() over (partition by stage order by max(run_at) desc) = 1) group by 1 order by 1"
        ).fetchall() if _has_table(con, "quality", "check_results") else []
    lines = ["", "== POEM Registry: what is in the warehouse ==",
             f"{'site':<12} {'batches':>8} {'rows loaded':>12} {'rows quarantined':>17} {'batches rejected':>17}"]
    for site_id, batches, loaded, quarantined, rejected in sites:
        lines.append(f"{site_id:<12} {batches:>8} {loaded:>12} {quarantined:>17} {rejected:>17}")
    lines.append(f"{'total':<12} {sum(s[1] for s in sites):>8} {sum(s[2] for s in sites):>12} "
                 f"{sum(s[3] for s in sites):>17} {sum(s[4] for s in sites):>17}")
    for stage, passed, failed, na in checks:
        lines.append(f"checks on {stage} (latest run): {passed} passed, {failed} failed, {na} not applicable")
    return "\n".join(lines)


def _has_table(con, schema: str, table: str) -> bool:
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and "
                            "table_name = ?", [schema, table]).fetchone()[0])
