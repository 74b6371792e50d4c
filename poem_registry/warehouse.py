"""The DuckDB warehouse file: connecting safely and the raw/ledger schema.

DuckDB allows one writing process per file. Every writer opens the file through
:func:`connect`, which retries for a bounded time while another process holds
it and then fails with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from poem_registry.contract import DUCKDB_TYPES, load_contract

#: Lineage columns on every raw table, in this order, after the contract columns.
LINEAGE_COLUMNS = {
    "_site_id": "VARCHAR",
    "_extract_id": "VARCHAR",
    "_extracted_at": "TIMESTAMP",
    "_source_file": "VARCHAR",
    "_source_row": "INTEGER",
    "_loaded_at": "TIMESTAMP",
    "_batch_id": "VARCHAR",
    "_batch_seq": "BIGINT",
}

LEDGER_DDL = """
create schema if not exists raw;
create schema if not exists ingest;
create schema if not exists quality;
create sequence if not exists ingest.batch_seq start 1;
create table if not exists ingest.batches (
    batch_id varchar primary key,
    batch_seq bigint not null,
    site_id varchar not null,
    extract_id varchar not null,
    adapter varchar not null,
    status varchar not null,          -- committed | quarantined | duplicate | failed
    started_at timestamp not null,
    finished_at timestamp,
    extracted_at timestamp,
    rows_loaded integer default 0,
    rows_quarantined integer default 0,
    message varchar,
    quarantine_path varchar,
    fingerprint varchar,              -- content hash of the whole delivery: a re-delivery is a no-op
    run_id varchar,
    resolved_at timestamp,            -- a quarantine stays open until resolved (poem-registry quarantine resolve)
    resolution_note varchar
);
create table if not exists ingest.files (
    sha256 varchar not null,
    site_id varchar not null,
    extract_id varchar not null,
    file_name varchar not null,
    batch_id varchar not null,
    rows integer,
    recorded_at timestamp not null,
    primary key (site_id, sha256)
);
create table if not exists ingest.findings (
    batch_id varchar not null,
    site_id varchar not null,
    extract_id varchar not null,
    file_name varchar,
    source_row integer,
    column_name varchar,
    rule varchar not null,
    category varchar not null,        -- conformance | completeness | plausibility | privacy | ledger
    severity varchar not null,        -- critical | warning | info
    message varchar not null,
    value varchar,
    recorded_at timestamp not null
);
create table if not exists ingest.withdrawals_applied (
    site_id varchar not null,
    patient_key varchar not null,
    withdrawn_at date,
    applied_at timestamp not null,
    rows_purged integer not null,
    batch_id varchar
);
"""


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse file for longer than the timeout."""


def raw_table_ddl() -> list[str]:
    statements = []
    for entity in load_contract().entities.values():
        cols = [f"{c.raw_name} {DUCKDB_TYPES[c.type]}" for c in entity.columns]
        cols += [f"{name} {typ}" for name, typ in LINEAGE_COLUMNS.items()]
        statements.append(f"create table if not exists raw.{entity.name} (\n    " + ",\n    ".join(cols) + "\n)")
    return statements


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
    for ddl in raw_table_ddl():
        con.execute(ddl)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "being used by another process" in text or "conflicting lock" in text


def duckdb_config() -> dict[str, str]:
    """DuckDB settings of every pipeline connection; the same variable caps dbt's (dbt_project/profiles.yml).

    DuckDB's default buffer pool is 80% of RAM; the pipeline shares the host with Airflow
    and pandas frames, so the pool is capped (DuckDB spills to disk beyond it).
    """
    return {"memory_limit": os.environ.get("POEM_DUCKDB_MEMORY_LIMIT", "2GB")}


@contextlib.contextmanager
def connect(
    path: Path, *, read_only: bool = False, timeout: float = 60.0, poll: float = 0.5
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting up to ``timeout`` seconds while another process holds it."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"No warehouse at {path}. Run `poem-registry ingest` (or `make demo`) first.")
    deadline = time.monotonic() + timeout
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"The warehouse {path} is held by another process (for example a DuckDB shell "
                    f"or a running pipeline) and was not released within {timeout:.0f} s. Close that "
                    f"process, or wait for the running pipeline to finish, then run the command again. "
                    f"DuckDB said: {exc}"
                ) from exc
            time.sleep(poll)
    try:
        yield con
    finally:
        con.close()
