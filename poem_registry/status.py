"""What is loaded, what is open, what was last published: read-only, for `poem-registry status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from poem_registry.settings import Settings
from poem_registry.sites import load_sites
from poem_registry.warehouse import connect


def collect_status(settings: Settings, now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC).replace(tzinfo=None)
    sites = load_sites(settings.sites_dir)
    status: dict = {"warehouse": str(settings.warehouse_path), "sites": [], "open_quarantines": [],
                    "last_run": None, "latest_edition": None, "last_blocked": None}
    last_run = settings.logs_dir / "last_run.json"
    if last_run.exists():
        status["last_run"] = json.loads(last_run.read_text(encoding="utf-8"))
    latest = settings.published_dir / "latest.json"
    if latest.exists():
        status["latest_edition"] = json.loads(latest.read_text(encoding="utf-8"))
    blocked = settings.published_dir / "last_blocked.json"
    if blocked.exists():
        status["last_blocked"] = json.loads(blocked.read_text(encoding="utf-8"))
    if not settings.warehouse_path.exists():
        status["sites"] = [{"site_id": s.site_id, "adapter": s.adapter, "batches": 0, "late": True,
                            "last_delivery": None} for s in sites]
        return status
    with connect(settings.warehouse_path, read_only=True, timeout=settings.warehouse_lock_timeout) as con:
        per_site = {r[0]: r[1:] for r in con.execute(
            "select site_id, count(*) filter (where status in ('committed','partially_quarantined')), "
            "sum(rows_loaded), sum(rows_quarantined), max(coalesce(extracted_at, finished_at)), "
            "max(finished_at) from ingest.batches group by site_id").fetchall()}
        raw_counts = {r[0]: r[1] for r in con.execute(
            "select _site_id, count(distinct procedure_id) from raw.procedures group by 1").fetchall()}
        for s in sites:
            batches, loaded, quarantined, last_extract, last_load = per_site.get(s.site_id, (0, 0, 0, None, None))
            late = last_extract is None or (now - last_extract) > timedelta(days=s.expected_cadence_days)
            status["sites"].append({
                "site_id": s.site_id, "adapter": s.adapter, "batches": batches or 0,
                "rows_loaded": int(loaded or 0), "rows_quarantined": int(quarantined or 0),
                "procedures": raw_counts.get(s.site_id, 0),
                "last_delivery": last_extract.isoformat() if last_extract else None,
                "last_loaded": last_load.isoformat() if last_load else None,
                "expected_cadence_days": s.expected_cadence_days, "late": late})
        status["open_quarantines"] = [
            {"batch_id": r[0], "site_id": r[1], "extract_id": r[2], "status": r[3], "rows": r[4],
             "reason": r[5], "path": r[6]}
            for r in con.execute(
                "select batch_id, site_id, extract_id, status, rows_quarantined, message, quarantine_path "
                "from ingest.batches where status in ('quarantined', 'partially_quarantined') "
                "and resolved_at is null order by batch_seq").fetchall()]
    return status


def resolve_quarantine(settings: Settings, batch_id: str, note: str) -> None:
    with connect(settings.warehouse_path, timeout=settings.warehouse_lock_timeout) as con:
        n = con.execute("update ingest.batches set resolved_at = ?, resolution_note = ? where batch_id = ? "
                        "and status in ('quarantined', 'partially_quarantined') and resolved_at is null",
                        [datetime.now(UTC).replace(tzinfo=None), note, batch_id]).fetchone()[0]
    if not n:
        raise ValueError(f"no open quarantine with batch id {batch_id!r}; `poem-registry status` lists them")


def format_status(status: dict) -> str:
    lines = [f"Warehouse: {status['warehouse']}", "", "Sites:"]
    for s in status["sites"]:
        late = "  LATE" if s.get("late") else ""
        lines.append(f"  {s['site_id']:<12} {s['adapter']:<10} batches {s.get('batches', 0):>3}  procedures "
                     f"{s.get('procedures', 0):>6}  quarantined rows {s.get('rows_quarantined', 0):>4}  "
                     f"last delivery {s.get('last_delivery') or 'never'}{late}")
    lines += ["", f"Open quarantines: {len(status['open_quarantines'])}"]
    for q in status["open_quarantines"]:
        lines.append(f"  {q['batch_id']}: {q['status']}, {q['rows']} row(s): {q['reason']}")
        lines.append(f"      report: {Path(q['path']) / 'report.md' if q['path'] else '-'}")
    run = status.get("last_run")
    lines += ["", f"Last run: {run['run_id'] + ' finished ' + str(run.get('finished_at')) if run else 'none'}"]
    ed = status.get("latest_edition")
    lines.append(f"Latest edition: {ed.get('edition') + ' at ' + ed.get('path', '') if ed else 'none published'}")
    blocked = status.get("last_blocked")
    if blocked:
        lines.append(f"Last blocked publish: {blocked.get('run_id')}: {'; '.join(blocked.get('reasons', []))}")
    return "\n".join(lines)
