"""Fixtures for the dbt project: raw tables with hand-written rows, on DuckDB or PostgreSQL.

``create_raw_tables_duckdb`` / ``create_raw_tables_postgres`` build the raw schema
from the same contract DDL ingestion uses, so the dbt sources look exactly like
production. ``RAW_BATCH_1`` / ``RAW_BATCH_2`` are two deliveries of a small
registry; the expected mart numbers in ``test_dbt_build.py`` are worked out by
hand from these rows (see the comments there), not from the SQL.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import uuid
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from poem_registry.build import DbtResult, run_dbt
from poem_registry.contract import DUCKDB_TYPES, load_contract
from poem_registry.settings import load_settings
from poem_registry.warehouse import LINEAGE_COLUMNS, ensure_schema

AS_OF = dt.date(2025, 9, 30)
PG_HOST, PG_PORT = "127.0.0.1", 5432

#: DuckDB raw types -> PostgreSQL types (the rest are spelled the same).
POSTGRES_TYPES = {"VARCHAR": "text", "DOUBLE": "double precision"}


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def plus(date_text: str, days: int) -> dt.date:
    """An assessment or event date given as days after a procedure date."""
    return d(date_text) + dt.timedelta(days=days)


# --------------------------------------------------------------------------- raw DDL and loading


def raw_columns(entity: str) -> dict[str, str]:
    """Raw column name -> DuckDB type, contract columns then lineage (as ensure_schema creates them)."""
    contract = load_contract().entities[entity]
    cols = {c.raw_name: DUCKDB_TYPES[c.type] for c in contract.columns}
    cols.update(LINEAGE_COLUMNS)
    return cols


def _row_values(entity: str, row: dict) -> list:
    cols = raw_columns(entity)
    unknown = set(row) - set(cols)
    if unknown:
        raise KeyError(f"raw.{entity} has no column(s) {sorted(unknown)}")
    return [row.get(c) for c in cols]


def create_raw_tables_duckdb(path: Path, batches: list[dict[str, list[dict]]] | None = None) -> None:
    """Create the raw schema in a DuckDB file with ``ensure_schema`` and insert the given rows."""
    con = duckdb.connect(str(path))
    try:
        ensure_schema(con)
        for batch in batches or []:
            insert_rows_duckdb(con, batch)
    finally:
        con.close()


def insert_rows_duckdb(con, batch: dict[str, list[dict]], schema: str = "raw") -> None:
    for entity, rows in batch.items():
        if not rows:
            continue
        cols = list(raw_columns(entity))
        sql = f"insert into {schema}.{entity} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})"
        con.executemany(sql, [_row_values(entity, r) for r in rows])


def postgres_raw_ddl(schema: str) -> list[str]:
    """The raw tables as PostgreSQL DDL, translated from the contract's DuckDB types."""
    statements = [f'create schema if not exists "{schema}"']
    for entity in load_contract().entities:
        cols = [f"{name} {POSTGRES_TYPES.get(typ, typ)}" for name, typ in raw_columns(entity).items()]
        statements.append(f'create table "{schema}".{entity} (\n    ' + ",\n    ".join(cols) + "\n)")
    return statements


def postgres_connect(dbname: str = "test"):
    import psycopg2

    return psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=dbname)


def create_raw_tables_postgres(schema: str, batches: list[dict[str, list[dict]]] | None = None) -> None:
    """Create ``<schema>.<entity>`` raw tables in PostgreSQL and insert the given rows."""
    con = postgres_connect()
    try:
        with con, con.cursor() as cur:
            for ddl in postgres_raw_ddl(schema):
                cur.execute(ddl)
            for batch in batches or []:
                for entity, rows in batch.items():
                    if not rows:
                        continue
                    cols = list(raw_columns(entity))
                    sql = (
                        f'insert into "{schema}".{entity} ({", ".join(cols)}) '
                        f"values ({', '.join(['%s'] * len(cols))})"
                    )
                    cur.executemany(sql, [_row_values(entity, r) for r in rows])
    finally:
        con.close()


def drop_postgres_schemas(prefix: str) -> None:
    con = postgres_connect()
    try:
        with con, con.cursor() as cur:
            cur.execute(
                "select schema_name from information_schema.schemata where schema_name like %s",
                (prefix + "%",),
            )
            for (name,) in cur.fetchall():
                cur.execute(f'drop schema "{name}" cascade')
    finally:
        con.close()


def postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the hand-written registry


def _lineage(site: str, extract: str, extracted: str, batch_seq: int, loaded: str) -> dict:
    return {
        "_site_id": site,
        "_extract_id": extract,
        "_extracted_at": dt.datetime.fromisoformat(extracted),
        "_source_file": "fixture.csv",
        "_source_row": 1,
        "_loaded_at": dt.datetime.fromisoformat(loaded),
        "_batch_id": f"{site}-{extract}",
        "_batch_seq": batch_seq,
    }


A1 = _lineage("alpha", "a-2025-01", "2025-01-05 08:00", 1, "2025-01-06 09:00")
B1 = _lineage("beta", "b-2025-01", "2025-01-07 08:00", 2, "2025-01-08 09:00")
A_LATE = _lineage("alpha", "a-2025-08", "2025-08-01 08:00", 3, "2025-08-02 09:00")
A_OLD = _lineage("alpha", "a-2024-06", "2024-06-01 08:00", 4, "2025-08-02 09:30")
B2 = _lineage("beta", "b-2025-08", "2025-08-03 08:00", 5, "2025-08-04 09:00")
B_FUTURE = _lineage("beta", "b-2025-10", "2025-10-15 08:00", 6, "2025-10-16 09:00")


def procedure(pid, patient, operator, date, lineage, **kw) -> dict:
    row = {
        "procedure_id": pid,
        "patient_key": patient,
        "operator_key": operator,
        "procedure_date": d(date),
        "procedure_type": "poem",
        "sex": "female",
        "age_at_procedure": 50,
        "diagnosis": "achalasia_type_2",
        "cc_version": "v4",
        "technical_success": True,
        **lineage,
    }
    row.update(kw)
    return row


def followup(aid, pid, proc_date, day, lineage, items=None, **kw) -> dict:
    row = {"assessment_id": aid, "procedure_id": pid, "assessment_date": plus(proc_date, day), **lineage}
    if items is not None:
        names = ("eckardt_dysphagia", "eckardt_regurgitation", "eckardt_chest_pain", "eckardt_weight_loss")
        row.update(dict(zip(names, items, strict=True)))
        row["eckardt_total"] = sum(items)
    row.update(kw)
    return row


def adverse_event(eid, pid, proc_date, day, ae_type, lineage, **kw) -> dict:
    return {
        "event_id": eid,
        "procedure_id": pid,
        "ae_type": ae_type,
        "onset_date": plus(proc_date, day),
        **lineage,
        **kw,
    }


DATES = {
    "A1": "2024-01-10",
    "A2": "2024-02-15",
    "A3": "2024-04-20",
    "A4": "2024-09-01",
    "A5": "2024-05-05",
    "A6": "2024-03-01",
    "A7": "2024-03-10",
    "B1": "2024-01-05",
    "B2": "2024-07-15",
    "B3": "2023-11-20",
}

RAW_BATCH_1: dict[str, list[dict]] = {
    "procedures": [
        procedure(
            "A1",
            "pA1",
            "OP1",
            DATES["A1"],
            A1,
            baseline_eckardt_date=d("2023-12-01"),
            baseline_eckardt_dysphagia=3,
            baseline_eckardt_regurgitation=2,
            baseline_eckardt_chest_pain=1,
            baseline_eckardt_weight_loss=1,
            discharge_date=d("2024-01-12"),
            planned_los_nights=2,
            mucosotomy_intraop=True,
            baseline_irp_mmhg=30.0,
            baseline_tbe_5min_cm=10.0,
        ),
        procedure(
            "A2",
            "pA2",
            "OP1",
            DATES["A2"],
            A1,
            procedure_type="poem_f",
            diagnosis="achalasia_type_1",
            cc_version="v3",
            baseline_eckardt_date=d("2023-06-01"),
            baseline_eckardt_dysphagia=2,
            baseline_eckardt_regurgitation=2,
            baseline_eckardt_chest_pain=2,
            baseline_eckardt_weight_loss=2,
            discharge_date=d("2024-02-16"),
        ),
        procedure(
            "A3",
            "pA3",
            "OP2",
            DATES["A3"],
            A1,
            diagnosis="achalasia_type_3",
            technical_success=False,
            aborted_reason="fibrosis",
        ),
        procedure("A4", "pA1", "OP2", DATES["A4"], A1, procedure_type="redo_poem", prior_poem=True),
        procedure("A5", "pA5", "OP1", DATES["A5"], A1, procedure_type="g_poem", diagnosis="other"),
        procedure("A6", "pA6", "OP1", DATES["A6"], A1),
        # A7: three versions. v1 here (aborted), v3 here (record_updated_at missing, later extract),
        # v2 arrives in batch 2 with the latest record_updated_at and wins.
        procedure(
            "A7",
            "pA7",
            "OP2",
            DATES["A7"],
            A1,
            technical_success=False,
            aborted_reason="other",
            record_updated_at=dt.datetime(2024, 3, 10, 10, 0),
        ),
        procedure(
            "A7", "pA7", "OP2", DATES["A7"], A_LATE, technical_success=False, aborted_reason="equipment"
        ),
        procedure(
            "B1",
            "pB1",
            "OP1",
            DATES["B1"],
            B1,
            diagnosis="egjoo",
            baseline_eckardt_date=d("2024-01-01"),
            baseline_eckardt_dysphagia=2,
            baseline_eckardt_regurgitation=2,
            baseline_eckardt_chest_pain=2,
            baseline_eckardt_weight_loss=2,
            discharge_date=d("2024-01-08"),
        ),
        procedure("B3", "pB3", "OP3", DATES["B3"], B1, diagnosis="achalasia_unsubtyped", cc_version="none"),
    ],
    "followups": [
        followup("fA1a", "A1", DATES["A1"], 10, A1, (1, 0, 0, 0)),
        followup("fA1b", "A1", DATES["A1"], 100, A1, (1, 1, 0, 0)),
        followup("fA1c", "A1", DATES["A1"], 140, A1, (2, 2, 1, 0)),
        followup(
            "fA1d",
            "A1",
            DATES["A1"],
            365,
            A1,
            (1, 0, 0, 0),
            ppi_use=True,
            la_grade="B",
            gerdq_score=9,
            aet_percent=8.0,
            ph_on_ppi=False,
            irp_mmhg=12.0,
            tbe_5min_cm=4.0,
        ),
        followup("fA2a", "A2", DATES["A2"], 59, A1, (1, 0, 0, 0)),
        followup(
            "fA2b", "A2", DATES["A2"], 241, A1, (1, 1, 0, 0), ppi_use=False, la_grade="A", gerdq_score=4
        ),
        # Eckardt total disagrees with the items (3+3+2+1 = 9): excluded from clinical success.
        followup("fA3a", "A3", DATES["A3"], 120, A1, (3, 3, 2, 1), eckardt_total=8),
        followup("fA6a", "A6", DATES["A6"], 120, A1, (1, 0, 0, 0)),
        followup("fA7a", "A7", DATES["A7"], 240, A1, (1, 1, 1, 0), ppi_use=False),
        followup("fB1a", "B1", DATES["B1"], 20, B1, la_grade="D"),
        followup("fB1b", "B1", DATES["B1"], 120, B1, (0, 0, 0, 0)),
        followup(
            "fB1c",
            "B1",
            DATES["B1"],
            365,
            B1,
            (1, 1, 0, 0),
            la_grade="C",
            aet_percent=10.0,
            ph_on_ppi=True,
            gerdq_score=10,
            ppi_use=True,
        ),
        followup("fB3a", "B3", DATES["B3"], 200, B1, (1, 1, 1, 0)),
        # v1 of fB3b (Eckardt 2); corrected to 4 in batch 2.
        followup(
            "fB3b", "B3", DATES["B3"], 500, B1, (1, 1, 0, 0), record_updated_at=dt.datetime(2025, 1, 1, 12, 0)
        ),
    ],
    "adverse_events": [
        adverse_event(
            "eA2",
            "A2",
            DATES["A2"],
            8,
            "perforation_delayed",
            A1,
            surgery=True,
            unplanned_nights=6,
            severity_reported="severe",
        ),
        adverse_event("eA6", "A6", DATES["A6"], 2, "bleeding_delayed", A1, surgery=True),
        adverse_event(
            "eA7",
            "A7",
            DATES["A7"],
            5,
            "bleeding_delayed",
            A1,
            repeat_endoscopy=True,
            unplanned_nights=2,
            severity_reported="moderate",
        ),
        adverse_event("eB1a", "B1", DATES["B1"], 0, "capnoperitoneum", B1, severity_reported="incident"),
        adverse_event(
            "eB1b",
            "B1",
            DATES["B1"],
            3,
            "pneumonia_aspiration",
            B1,
            unplanned_nights=5,
            severity_reported="mild",
        ),
        adverse_event(
            "eB3a",
            "B3",
            DATES["B3"],
            1,
            "pain_requiring_admission",
            B1,
            unplanned_nights=1,
            severity_reported="mild",
        ),
        adverse_event("eB3b", "B3", DATES["B3"], 45, "other", B1, unplanned_nights=12),
    ],
    "reinterventions": [
        {
            "event_id": "rA1",
            "procedure_id": "A1",
            "reintervention_date": plus(DATES["A1"], 235),
            "reintervention_type": "redo_poem",
            "indication": "persistent_symptoms",
            **A1,
        },
        {
            "event_id": "rA3",
            "procedure_id": "A3",
            "reintervention_date": plus(DATES["A3"], 50),
            "reintervention_type": "heller_myotomy",
            "indication": "persistent_symptoms",
            **A1,
        },
        {
            "event_id": "rB1",
            "procedure_id": "B1",
            "reintervention_date": plus(DATES["B1"], 200),
            "reintervention_type": "pneumatic_dilation",
            "indication": "gerd",
            **B1,
        },
    ],
    "withdrawals": [],
}

RAW_BATCH_2: dict[str, list[dict]] = {
    "procedures": [
        procedure(
            "A7",
            "pA7",
            "OP2",
            DATES["A7"],
            A_OLD,
            technical_success=True,
            record_updated_at=dt.datetime(2024, 5, 1, 9, 0),
        ),
        # Extracted after as_of: ignored by every model built as of AS_OF.
        procedure("B2", "pB2", "OP3", DATES["B2"], B_FUTURE, diagnosis="distal_esophageal_spasm"),
    ],
    "followups": [
        followup(
            "fB3b", "B3", DATES["B3"], 500, B2, (2, 1, 1, 0), record_updated_at=dt.datetime(2025, 8, 1, 12, 0)
        ),
    ],
    "adverse_events": [],
    "reinterventions": [],
    "withdrawals": [{"patient_key": "pA6", "withdrawn_at": d("2025-08-01"), **A_LATE}],
}


# --------------------------------------------------------------------------- dbt runs


def make_settings(tmp: Path):
    """Settings whose warehouse, dbt target and logs live under ``tmp``."""
    return replace(
        load_settings(),
        home=tmp,
        warehouse_path=tmp / "warehouse.duckdb",
        logs_dir=tmp / "logs",
    )


def assert_dbt_ok(result: DbtResult) -> None:
    assert result.success, result.summary()


@pytest.fixture(scope="session")
def dbt_target_path(tmp_path_factory) -> Path:
    """One dbt target dir for the session's DuckDB runs, so dbt can re-use its parsed manifest."""
    return tmp_path_factory.mktemp("dbt_target")


@pytest.fixture(scope="session")
def duckdb_build(tmp_path_factory, dbt_target_path):
    """A warehouse built incrementally: batch 1 -> dbt build -> batch 2 -> dbt build (incremental).

    Shared by the mart tests (which check the hand-computed numbers) and by the
    incremental-vs-full-refresh test (which rebuilds a copy from scratch).
    """
    tmp = tmp_path_factory.mktemp("dbt_duckdb")
    settings = make_settings(tmp)
    create_raw_tables_duckdb(settings.warehouse_path, [RAW_BATCH_1])
    first = run_dbt(["build"], settings, as_of=AS_OF, full_refresh=False, target_path=dbt_target_path)
    assert_dbt_ok(first)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        insert_rows_duckdb(con, RAW_BATCH_2)
    finally:
        con.close()
    second = run_dbt(["build"], settings, as_of=AS_OF, full_refresh=False, target_path=dbt_target_path)
    assert_dbt_ok(second)
    return settings, second


@pytest.fixture(scope="session")
def duckdb_full_refresh_copy(duckdb_build, tmp_path_factory, dbt_target_path):
    """A copy of the incremental warehouse with the incremental models rebuilt from scratch."""
    settings, _ = duckdb_build
    tmp = tmp_path_factory.mktemp("dbt_duckdb_full")
    copy = make_settings(tmp)
    shutil.copy(settings.warehouse_path, copy.warehouse_path)
    result = run_dbt(
        ["run", "--select", "tag:incremental_dedupe"],
        copy,
        as_of=AS_OF,
        full_refresh=True,
        target_path=dbt_target_path,
    )
    assert_dbt_ok(result)
    return copy


@pytest.fixture(scope="session")
def postgres_build(tmp_path_factory):
    """The same two batches loaded into PostgreSQL and built with --target postgres in a unique schema."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
    prefix = f"poem_t_{uuid.uuid4().hex[:8]}"
    raw_schema = f"{prefix}_raw"
    tmp = tmp_path_factory.mktemp("dbt_postgres")
    settings = make_settings(tmp)
    create_raw_tables_postgres(raw_schema, [RAW_BATCH_1, RAW_BATCH_2])
    try:
        result = run_dbt(
            ["build"],
            settings,
            as_of=AS_OF,
            target="postgres",
            full_refresh=False,
            extra_vars={"raw_schema": raw_schema},
            env={"POEM_PG_SCHEMA": prefix},
        )
        assert_dbt_ok(result)
        yield prefix, result
    finally:
        drop_postgres_schemas(prefix)
