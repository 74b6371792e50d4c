"""sql adapter: incremental pulls from a site's own database, against real PostgreSQL and SQLite."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from poem_registry.adapters import sqldb
from poem_registry.adapters.base import SOURCE_FILE, SOURCE_ROW, Delivery, DeliveryError
from tests.adapters.conftest import POSTGRES_URL, findings_of

ENV = "POEM_SITE_HARBOR_DB_URL"
TABLE_COLUMNS = {
    "case_no": "procedure_id",
    "mrn": "patient_id",
    "surgeon": "operator_id",
    "op_date": "procedure_date",
    "dx": "diagnosis",
    "tunnel_mm": "tunnel_length_cm",
    "completed": "technical_success",
}


@dataclass
class SiteDb:
    """A site database for one test: where it is, how to write to it, and the table names to configure."""

    url: str
    schema: str | None
    engine: sa.Engine

    def name(self, table: str) -> str:
        return f"{self.schema}.{table}" if self.schema else table

    def create(self) -> None:
        md = sa.MetaData(schema=self.schema)
        sa.Table(
            "poem_procedure",
            md,
            sa.Column("case_no", sa.String(20), primary_key=True),
            sa.Column("mrn", sa.String(20)),
            sa.Column("surgeon", sa.String(20)),
            sa.Column("op_date", sa.Date),
            sa.Column("procedure_type", sa.String(20)),
            sa.Column("sex", sa.String(10)),
            sa.Column("age_at_procedure", sa.Integer),
            sa.Column("dx", sa.String(40)),
            sa.Column("tunnel_mm", sa.Numeric(6, 1)),
            sa.Column("baseline_irp_mmhg", sa.Float),
            sa.Column("completed", sa.Boolean),
            sa.Column(
                "patient_name", sa.String(80)
            ),  # a site column the ingest must drop as a privacy finding
            sa.Column("record_updated_at", sa.DateTime),
        )
        sa.Table(
            "poem_followup",
            md,
            sa.Column("assessment_id", sa.String(20), primary_key=True),
            sa.Column("procedure_id", sa.String(20)),
            sa.Column("assessment_date", sa.Date),
            sa.Column("eckardt_total", sa.Integer),
            sa.Column("deleted", sa.Boolean),
            sa.Column("record_updated_at", sa.DateTime),
        )
        md.create_all(self.engine)

    def insert(self, table: str, rows: list[dict]) -> None:
        t = sa.Table(table, sa.MetaData(schema=self.schema), autoload_with=self.engine)
        with self.engine.begin() as conn:
            conn.execute(t.insert(), rows)

    def update(self, table: str, key: dict, values: dict) -> None:
        t = sa.Table(table, sa.MetaData(schema=self.schema), autoload_with=self.engine)
        with self.engine.begin() as conn:
            ((col, val),) = key.items()
            conn.execute(t.update().where(t.c[col] == val).values(**values))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site_db(request, tmp_path) -> Iterator[SiteDb]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'harbor.sqlite'}"
        engine = sa.create_engine(url)
        db = SiteDb(url, None, engine)
    else:
        schema = request.getfixturevalue("pg_schema")
        engine = request.getfixturevalue("postgres_engine")
        db = SiteDb(POSTGRES_URL, schema, engine)
    db.create()
    yield db
    if request.param == "sqlite":
        engine.dispose()


@pytest.fixture
def harbor(make_site, site_db, monkeypatch) -> Callable[..., object]:
    """The ``harbor`` site pointing at the test database through the environment variable."""
    monkeypatch.setenv(ENV, site_db.url)

    def _make(tables: dict | None = None, **sql: object):
        tables = tables or {
            "procedures": {"table": site_db.name("poem_procedure"), "columns": TABLE_COLUMNS},
            "followups": {"table": site_db.name("poem_followup")},
        }
        return make_site(
            "harbor",
            adapter="sql",
            sql={"url_setting": ENV, "tables": tables, **sql},
            mapping={
                "codes": {
                    "diagnosis": {"Achalasia Type II": "achalasia_type_2", "Type III": "achalasia_type_3"}
                },
                "units": {"procedures": {"tunnel_length_cm": 0.1}},
            },
        )

    return _make


def _proc(i: int, updated: datetime, **over) -> dict:
    row = {
        "case_no": f"H-{i:05d}",
        "mrn": f"MRN{i}",
        "surgeon": "S1",
        "op_date": date(2024, 1 + i % 12, 1 + i % 28),
        "procedure_type": "poem",
        "sex": "female" if i % 2 else "male",
        "age_at_procedure": 40 + i % 30,
        "dx": ["Achalasia Type II", "Type III", "egjoo"][i % 3],
        "tunnel_mm": Decimal("125.0") + i % 10,
        "baseline_irp_mmhg": 20.5,
        "completed": i % 11 != 0,
        "patient_name": "Jane Roe",
        "record_updated_at": updated,
    }
    return row | over


def test_full_then_incremental_pull_is_idempotent(harbor, site_db):
    site = harbor()
    t1, t2, t3 = (
        datetime(2025, 1, 10, 8, 0),
        datetime(2025, 1, 11, 9, 30),
        datetime(2025, 2, 1, 12, 0, 0, 250000),
    )
    site_db.insert("poem_procedure", [_proc(i, t1 if i < 3 else t2) for i in range(5)])
    site_db.insert(
        "poem_followup",
        [
            {
                "assessment_id": "F1",
                "procedure_id": "H-00001",
                "assessment_date": date(2024, 9, 1),
                "eckardt_total": 1,
                "deleted": False,
                "record_updated_at": t1,
            }
        ],
    )

    [first] = sqldb.discover(site)
    assert first.extract_id == "sql_20250111T093000" and first.extracted_at == "2025-01-11T09:30:00"
    out = sqldb.read(first, site)

    proc = out.frames["procedures"]
    assert len(proc) == 5
    assert proc["procedure_id"].tolist() == [f"H-{i:05d}" for i in range(5)]  # by updated_at, then key
    assert proc[SOURCE_ROW].tolist() == [1, 2, 3, 4, 5]
    assert set(proc[SOURCE_FILE]) == {site_db.name("poem_procedure")}
    assert proc["procedure_date"].tolist()[1] == "2024-02-02"
    assert proc["tunnel_length_cm"].tolist()[:2] == ["12.5", "12.6"]
    assert proc["technical_success"].tolist()[:2] == ["false", "true"]
    assert proc["diagnosis"].tolist()[:3] == ["achalasia_type_2", "achalasia_type_3", "egjoo"]
    assert proc["age_at_procedure"].tolist()[0] == "40"
    assert proc["baseline_irp_mmhg"].tolist()[0] == "20.5"
    assert proc["record_updated_at"].tolist()[0] == "2025-01-10T08:00:00"
    assert "patient_name" in proc.columns and out.extra_columns["procedures"] == ["patient_name"]
    assert out.frames["followups"]["assessment_date"].tolist() == ["2024-09-01"]
    assert out.extracted_at == first.extracted_at
    assert set(out.files) == {site_db.name("poem_procedure"), site_db.name("poem_followup")}

    # nothing changed: no new delivery, the same extract id, and reading with the watermark yields zero rows
    assert sqldb.discover(site, since=first.extracted_at) == []
    assert sqldb.discover(site, since="2025-01-11 09:30:00") == []  # the loader's space-separated form
    [again] = sqldb.discover(site)
    assert again.extract_id == first.extract_id
    unchanged = sqldb.read(again, site, since=first.extracted_at)
    assert {k: len(v) for k, v in unchanged.frames.items()} == {"procedures": 0, "followups": 0}
    assert list(unchanged.frames["procedures"].columns) == list(proc.columns)

    # one correction and one new case
    site_db.update("poem_procedure", {"case_no": "H-00001"}, {"dx": "Type III", "record_updated_at": t3})
    site_db.insert("poem_procedure", [_proc(7, t3)])
    [second] = sqldb.discover(site, since=first.extracted_at)
    assert second.extract_id == "sql_20250201T120000250000"
    delta = sqldb.read(second, site, since=first.extracted_at)
    assert delta.frames["procedures"]["procedure_id"].tolist() == ["H-00001", "H-00007"]
    assert delta.frames["procedures"]["diagnosis"].tolist()[0] == "achalasia_type_3"
    assert len(delta.frames["followups"]) == 0

    # a row changed after discover waits for the next pull instead of being delivered twice
    site_db.insert("poem_procedure", [_proc(8, datetime(2025, 3, 1))])
    late = sqldb.read(second, site, since=first.extracted_at)
    assert late.frames["procedures"]["procedure_id"].tolist() == ["H-00001", "H-00007"]
    [third] = sqldb.discover(site, since=second.extracted_at)
    assert sqldb.read(third, site, since=second.extracted_at).frames["procedures"][
        "procedure_id"
    ].tolist() == ["H-00008"]


def test_rows_without_incremental_value_are_pulled_in_full_and_warned_about(harbor, site_db):
    site = harbor()
    site_db.insert("poem_procedure", [_proc(1, datetime(2025, 1, 1)), _proc(2, None)])
    [delivery] = sqldb.discover(site)
    full = sqldb.read(delivery, site)
    assert full.frames["procedures"]["procedure_id"].tolist() == [
        "H-00002",
        "H-00001",
    ]  # NULLs first, not lost
    incremental = sqldb.read(delivery, site, since="2024-12-31T00:00:00")
    assert incremental.frames["procedures"]["procedure_id"].tolist() == ["H-00001"]
    [warning] = findings_of(incremental, "incremental_value_missing")
    assert "1 row(s)" in warning.message and warning.severity == "warning"


def test_query_source_with_renames_and_unmapped_code_finding(harbor, site_db):
    followups = site_db.name("poem_followup")
    site = harbor(
        {
            "procedures": {"table": site_db.name("poem_procedure"), "columns": TABLE_COLUMNS},
            "followups": {
                "query": f"select assessment_id as visit, procedure_id, assessment_date, record_updated_at "
                f"from {followups} where deleted = false",
                "columns": {"visit": "assessment_id"},
            },
        }
    )
    site_db.insert("poem_procedure", [_proc(1, datetime(2025, 1, 1), dx="Vigorous")])
    site_db.insert(
        "poem_followup",
        [
            {
                "assessment_id": "F2",
                "procedure_id": "H-00001",
                "assessment_date": date(2025, 6, 1),
                "deleted": False,
                "record_updated_at": datetime(2025, 6, 2),
            },
            {
                "assessment_id": "F3",
                "procedure_id": "H-00001",
                "assessment_date": date(2025, 7, 1),
                "deleted": True,
                "record_updated_at": datetime(2025, 7, 2),
            },
        ],
    )
    [delivery] = sqldb.discover(site)
    assert delivery.extracted_at == "2025-06-02T00:00:00"  # the max of what the query returns, as ISO
    out = sqldb.read(delivery, site)
    fu = out.frames["followups"]
    assert fu["assessment_id"].tolist() == ["F2"]
    assert set(fu[SOURCE_FILE]) == {"query:followups"}
    assert fu["assessment_date"].tolist() == ["2025-06-01"]
    [unmapped] = findings_of(out, "unmapped_code")
    assert (unmapped.value, unmapped.source_row, unmapped.column_name) == ("Vigorous", 1, "diagnosis")
    assert sqldb.read(delivery, site, since="2025-06-02T00:00:00").frames["followups"].empty


def test_renamed_database_column_is_schema_drift(harbor, site_db):
    columns = {k: v for k, v in TABLE_COLUMNS.items() if k != "case_no"} | {"case_number": "procedure_id"}
    site = harbor({"procedures": {"table": site_db.name("poem_procedure"), "columns": columns}})
    with pytest.raises(DeliveryError) as err:
        sqldb.discover(site)
    msg = str(err.value)
    assert "column 'case_number' mapped to procedure_id is missing" in msg
    assert "similar column 'case_no'" in msg and "did the export layout change?" in msg


def test_missing_table_lists_the_tables_there(harbor, site_db):
    site = harbor({"procedures": {"table": site_db.name("poem_cases")}})
    with pytest.raises(DeliveryError, match=r"table .*poem_cases .* does not exist.*poem_followup"):
        sqldb.discover(site)


def test_ten_thousand_rows_pull_quickly_and_completely(harbor, site_db):
    site = harbor()
    base = datetime(2024, 1, 1)
    site_db.insert(
        "poem_procedure", [_proc(i, base.replace(day=1 + i % 28, hour=i % 24)) for i in range(10_000)]
    )
    started = time.perf_counter()
    [delivery] = sqldb.discover(site)
    out = sqldb.read(delivery, site)
    elapsed = time.perf_counter() - started
    proc = out.frames["procedures"]
    assert len(proc) == 10_000 and proc["procedure_id"].is_unique
    assert proc[SOURCE_ROW].tolist() == list(range(1, 10_001))
    assert pd.Series(proc["record_updated_at"]).is_monotonic_increasing
    assert elapsed < 20


# ---------------------------------------------------------------------------- configuration and connection errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_fails_fast_with_a_clear_message(make_site, monkeypatch):
    monkeypatch.setenv(ENV, f"postgresql+psycopg2://reader:s3cret@127.0.0.1:{_closed_port()}/registry")
    site = make_site(
        "harbor", adapter="sql", sql={"url_setting": ENV, "tables": {"procedures": {"table": "p"}}}
    )
    started = time.perf_counter()
    with pytest.raises(DeliveryError) as err:
        sqldb.discover(site)
    assert time.perf_counter() - started < 10
    msg = str(err.value)
    assert msg.startswith("site harbor database unreachable: ")
    assert f"check the URL in ${ENV} and the network; other sites continue" in msg
    assert "s3cret" not in msg
    assert err.value.rule == "database_reachable"


def test_missing_sqlite_file_is_unreachable_not_silently_created(make_site, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, f"sqlite:///{tmp_path / 'nope.sqlite'}")
    site = make_site(
        "harbor", adapter="sql", sql={"url_setting": ENV, "tables": {"procedures": {"table": "p"}}}
    )
    with pytest.raises(DeliveryError, match=r"database unreachable: SQLite file .* does not exist"):
        sqldb.discover(site)
    assert not (tmp_path / "nope.sqlite").exists()


def test_missing_environment_variable_says_which_to_set(make_site, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    site = make_site(
        "harbor", adapter="sql", sql={"url_setting": ENV, "tables": {"procedures": {"table": "p"}}}
    )
    delivery = Delivery(site_id="harbor", extract_id="sql_x", path=sqldb.Path(ENV))
    for call in (lambda: sqldb.discover(site), lambda: sqldb.read(delivery, site)):
        with pytest.raises(
            DeliveryError, match=f"environment variable {ENV} is not set; set it to the SQLAlchemy URL"
        ):
            call()


def test_url_in_the_repository_is_refused(make_site):
    site = make_site(
        "harbor",
        adapter="sql",
        sql={"url_setting": "postgresql://u:pw@h/db", "tables": {"procedures": {"table": "p"}}},
    )
    with pytest.raises(DeliveryError, match="must be the NAME of an environment variable"):
        sqldb.discover(site)


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ({"procedures": {"table": "poem; drop table poem_procedure"}}, "not a plain SQL identifier"),
        ({"procedures": {"table": 'poem"--'}}, "not a plain SQL identifier"),
        ({"procedures": {"table": "a.b.c"}}, "must be `table` or `schema.table`"),
        (
            {"procedures": {"table": "p", "columns": {"x) or (1=1": "procedure_id"}}},
            "not a plain SQL identifier",
        ),
        (
            {"procedures": {"table": "p", "incremental_column": "updated_at desc"}},
            "not a plain SQL identifier",
        ),
        ({"procedures": {"query": "select * from p; delete from p"}}, "contains ';'"),
        ({"procedures": {"query": "delete from p returning *"}}, "must start with SELECT"),
        ({"procedures": {"query": "select * into copy_of_p from p"}}, "keyword 'into'"),
        ({"procedures": {"query": "select * from p for update"}}, "keyword 'update'"),
        ({"procedures": {"query": "select * from p -- where 1=0"}}, "comment"),
        ({"procedures": {"query": "select pg_sleep(100)"}}, "keyword 'pg_sleep'"),
        ({"procedures": {"table": "p", "query": "select 1"}}, "exactly one of `table` or `query`"),
        ({"followups": {"table": "f"}}, "must include procedures"),
        (
            {"surgeries": {"table": "s"}, "procedures": {"table": "p"}},
            "sql.tables.surgeries is not an entity",
        ),
    ],
)
def test_injection_and_bad_configuration_are_rejected_before_connecting(
    make_site, monkeypatch, tables, expected
):
    monkeypatch.setenv(ENV, f"postgresql+psycopg2://reader@127.0.0.1:{_closed_port()}/registry")
    site = make_site("harbor", adapter="sql", sql={"url_setting": ENV, "tables": tables})
    with pytest.raises(DeliveryError, match=expected) as err:
        sqldb.discover(site)
    assert err.value.rule == "site_config"  # refused from the configuration, not by the (closed) database


def test_check_select_accepts_ordinary_queries():
    query = "SELECT p.*, s.name AS surgeon_group FROM poem_procedure p JOIN surgeon s ON s.id = p.surgeon_id"
    assert sqldb.check_select(query) == query
    assert sqldb.check_select("  select record_updated_at, updated_by from t  ").startswith("select")


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (None, "sql_empty"),
        ("2025-01-11T09:30:00", "sql_20250111T093000"),
        ("2025-01-11T10:30:00+01:00", "sql_20250111T093000Z"),
        ("2025-01-11", "sql_20250111T000000"),
        ("12345", "sql_12345"),
    ],
)
def test_extract_ids_are_deterministic(watermark, expected):
    assert sqldb.extract_id_for(watermark) == expected
