"""Child-process entry: run exactly one benchmark stage and write its result JSON.

``python -m benchmarks.stage SPEC.json``; the spec names the stage and its inputs
(see :mod:`benchmarks.harness`). The result JSON carries the stage's own details
(row counts, internal splits) and this process's ``ru_maxrss``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path

ENTITIES = ("procedures", "followups", "adverse_events", "reinterventions", "withdrawals")


def _settings(spec: dict):
    from poem_registry.settings import load_settings

    return load_settings(home=spec["home"], sites_dir=spec["sites_dir"], landing_dir=spec["landing_dir"],
                         demo=True, warehouse_lock_timeout=600)


def _as_of(spec: dict):
    from datetime import date

    return date.fromisoformat(spec["as_of"]) if spec.get("as_of") else None


# -- pipeline stages -------------------------------------------------------------------------------
def stage_generate(spec: dict) -> dict:
    from poem_registry.synth import generate

    summary = generate(Path(spec["landing_dir"]), sites=spec["sites"], years=spec["years"], seed=spec["seed"],
                       target_procedures=spec["procedures"], sites_dir=Path(spec["sites_dir"]),
                       truth_dir=Path(spec["truth_dir"]))
    delivered = {ent: 0 for ent in ENTITIES}
    extracts = 0
    for by_extract in summary.counts.values():
        for counts in by_extract.values():
            extracts += 1
            for ent, n in counts.items():
                delivered[ent] = delivered.get(ent, 0) + n
    final = {ent: sum(c.get(ent, 0) for c in summary.truth_counts.values()) for ent in ENTITIES}
    return {"total_procedures": summary.total_procedures, "sites": len(summary.sites) or len(summary.counts),
            "extracts": extracts, "delivered_rows": delivered, "delivered_rows_total": sum(delivered.values()),
            "final_rows": final, "sql_urls": summary.sql_urls,
            "adapters": {s["site_id"]: s.get("adapter") for s in summary.sites} if summary.sites else {}}


def stage_ingest(spec: dict) -> dict:
    from poem_registry.pipeline import run_ingest

    out = run_ingest(_settings(spec), site_ids=spec.get("site_ids"), run_id=spec.get("run_id"))
    return {"rows_loaded": out.get("rows_loaded"), "rows_quarantined": out.get("rows_quarantined"),
            "batches": len(out.get("batches", [])) if isinstance(out.get("batches"), list) else None}


def stage_build(spec: dict) -> dict:
    from poem_registry.pipeline import run_build

    return run_build(_settings(spec), as_of=_as_of(spec), run_id=spec.get("run_id"),
                     full_refresh=bool(spec.get("full_refresh")))


def stage_analytics(spec: dict) -> dict:
    from poem_registry.pipeline import run_analytics

    out = run_analytics(_settings(spec), as_of=_as_of(spec))
    return {"keys": sorted(out)[:20] if isinstance(out, dict) else None}


def stage_validate(spec: dict) -> dict:
    from poem_registry.pipeline import run_validate

    out = run_validate(_settings(spec), run_id=spec["run_id"])
    Path(spec["gate_file"]).write_text(json.dumps(out, default=str), encoding="utf-8")
    return {"checks_passed": out.get("checks_passed"), "checks_failed": out.get("checks_failed")}


def stage_publish(spec: dict) -> dict:
    from poem_registry.pipeline import run_publish

    gate_file = Path(spec["gate_file"])
    gate = json.loads(gate_file.read_text(encoding="utf-8")) if gate_file.exists() else None
    out = run_publish(_settings(spec), run_id=spec["run_id"], as_of=_as_of(spec), gate=gate)
    return {"pages": out.get("pages") if isinstance(out, dict) else None}


def stage_end_to_end(spec: dict) -> dict:
    from poem_registry.pipeline import run_all

    summary = run_all(_settings(spec), as_of=_as_of(spec), run_id=spec.get("run_id"))
    return {"stages": sorted(summary.stages)}


# -- delivery validation alone ---------------------------------------------------------------------
def stage_delivery_validation(spec: dict) -> dict:
    """The delivery (GX) suites alone over the canonical sites' files, batched as ingest batches them
    (sites in waves of ``ingest_rows_per_wave`` rows, one stacked GX pass per entity and wave), without
    pseudonymization or loading."""
    import pandas as pd

    from poem_registry.adapters import get_adapter
    from poem_registry.quality.delivery import prepare_delivery, validate_deliveries
    from poem_registry.sites import load_sites

    settings = _settings(spec)
    wanted = set(spec["site_ids"])
    adapter = get_adapter("canonical")
    read_s = validate_s = 0.0
    rows = checks = passes = 0
    today = _as_of(spec)

    def validate_wave(wave: list[tuple[str, dict[str, list]]]) -> None:
        nonlocal rows, checks, passes
        prepared_by_entity: dict[str, list] = {}
        for site_id, frames in wave:
            procs = pd.concat(frames.get("procedures", []) or [pd.DataFrame(columns=["procedure_id",
                                                                                     "procedure_date"])])
            parents = procs.drop_duplicates("procedure_id", keep="last")
            parent_dates = dict(zip(parents["procedure_id"], pd.to_datetime(parents["procedure_date"],
                                                                            errors="coerce"), strict=False))
            for ent in ENTITIES:
                if ent in frames:
                    combined = pd.concat(frames[ent], ignore_index=True)
                    prepared_by_entity.setdefault(ent, []).append(prepare_delivery(
                        ent, combined, site_id=site_id, extract_id="bench", known_parent_ids=set(parent_dates),
                        parent_dates=parent_dates, today=today, partition_column="_part"))
                    rows += len(combined)
        for prepared in prepared_by_entity.values():
            checks += sum(len(v.checks) for v in validate_deliveries(prepared))
            passes += 1

    wave: list[tuple[str, dict[str, list]]] = []
    wave_rows = 0
    for site in load_sites(settings.sites_dir):
        if site.site_id not in wanted:
            continue
        t0 = time.perf_counter()
        frames: dict[str, list] = {}
        for i, delivery in enumerate(adapter.discover(site, settings.landing_dir)):
            out = adapter.read(delivery, site)
            for ent, frame in out.frames.items():
                frames.setdefault(ent, []).append(frame.assign(_part=str(i)))
                wave_rows += len(frame)
        read_s += time.perf_counter() - t0
        wave.append((site.site_id, frames))
        if wave_rows >= settings.ingest_rows_per_wave:
            t0 = time.perf_counter()
            validate_wave(wave)
            validate_s += time.perf_counter() - t0
            wave, wave_rows = [], 0
    if wave:
        t0 = time.perf_counter()
        validate_wave(wave)
        validate_s += time.perf_counter() - t0
    return {"rows_validated": rows, "checks": checks, "gx_entity_passes": passes, "read_s": round(read_s, 3),
            "validate_s": round(validate_s, 3)}


# -- the floor: DuckDB alone -----------------------------------------------------------------------
def stage_floor_read(spec: dict) -> dict:
    """DuckDB alone: ``read_csv`` of the canonical sites' delivered files into one table per entity."""
    import duckdb

    db = Path(spec["floor_db"])
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    rows = {}
    root = Path(spec["floor_dir"])
    for ent in ENTITIES:
        files = sorted(str(p) for p in root.glob(f"*/*/{ent}.csv"))
        if not files:
            continue
        con.execute(f"create table {ent} as select * from read_csv(?, header = true, union_by_name = true, "
                    "filename = true)", [files])
        rows[ent] = con.execute(f"select count(*) from {ent}").fetchone()[0]
    con.close()
    return {"rows": rows, "rows_total": sum(rows.values())}


FLOOR_MART_SQL = """
create or replace table floor_mart as
with p as (   -- latest version of each procedure (correction semantics of the exchange format)
    select split_part(filename, '/', -3) as site_id, procedure_id, procedure_date, procedure_type,
           technical_success
    from procedures
    qualify row_number() over (partition by split_part(filename, '/', -3), procedure_id
                               order by record_updated_at desc, filename desc) = 1
),
idx as (select * from p where procedure_type in ('poem', 'poem_f')),
f as (        -- latest version of each assessment
    select split_part(filename, '/', -3) as site_id, assessment_id, procedure_id, assessment_date, eckardt_total
    from followups
    qualify row_number() over (partition by split_part(filename, '/', -3), assessment_id
                               order by record_updated_at desc, filename desc) = 1
),
r as (
    select split_part(filename, '/', -3) as site_id, procedure_id, min(reintervention_date) as first_reint
    from reinterventions group by all
),
pick as (     -- the 12-month window (180..545 days): the assessment closest to day 365
    select idx.site_id, idx.procedure_id, f.eckardt_total, f.assessment_date
    from idx join f on f.site_id = idx.site_id and f.procedure_id = idx.procedure_id
    where f.assessment_date - idx.procedure_date between 180 and 545
    qualify row_number() over (partition by idx.site_id, idx.procedure_id
                               order by abs(f.assessment_date - idx.procedure_date - 365), f.assessment_date) = 1
)
select idx.site_id, date_trunc('quarter', idx.procedure_date) as quarter_start,
       count(*) as procedures,
       avg(case when idx.technical_success then 1.0 else 0.0 end) as technical_success_rate,
       count(pick.procedure_id) as assessed_12m,
       avg(case when pick.procedure_id is null then null
                when r.first_reint is not null and r.first_reint < pick.assessment_date then 0.0
                when pick.eckardt_total <= 3 then 1.0 else 0.0 end) as clinical_success_12m
from idx
left join pick on pick.site_id = idx.site_id and pick.procedure_id = idx.procedure_id
left join r on r.site_id = idx.site_id and r.procedure_id = idx.procedure_id
group by all
order by all
"""


def stage_floor_mart(spec: dict) -> dict:
    """DuckDB alone: technical and clinical success per site and quarter in one hand-written query."""
    import duckdb

    con = duckdb.connect(spec["floor_db"])
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    sql = FLOOR_MART_SQL
    if "reinterventions" not in tables:
        sql = sql.replace("from reinterventions group by all", "from (select null::varchar as filename, "
                          "null::varchar as procedure_id, null::date as reintervention_date) where false group by all")
    con.execute(sql)
    n = con.execute("select count(*) from floor_mart").fetchone()[0]
    con.close()
    return {"mart_rows": n}


STAGES = {name[len("stage_"):]: fn for name, fn in globals().items() if name.startswith("stage_")}


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING)
    for key, value in (spec.get("env") or {}).items():
        os.environ[key] = value
    result: dict = {"stage": spec["stage"]}
    code = 0
    try:
        result["details"] = STAGES[spec["stage"]](spec) or {}
    except Exception as exc:
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        code = 1
    result["maxrss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["maxrss_children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(spec["out"]).write_text(json.dumps(result, default=str), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
