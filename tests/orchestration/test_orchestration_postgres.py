"""The demo DAG as a real Airflow run on a PostgreSQL metadata database.

A fresh database ``airflow_it_<random>`` per run (dropped afterwards); `airflow db
migrate`, the init command and `airflow dags test poem_demo` through
:func:`run_demo_dag`, on a small generated dataset. Then the metadata database must show
every task instance succeeded (the watcher skipped) and an edition must be published.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest

from poem_registry.settings import load_settings

PG_HOST, PG_PORT = "127.0.0.1", 5432

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def metadata_db():
    """A dedicated, empty PostgreSQL database for this run's Airflow metadata; dropped afterwards."""
    if not _postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} (start it to run this test)")
    # Airflow 3 opens an async engine on its metadata database at start-up (postgresql+asyncpg)
    pytest.importorskip(
        "asyncpg",
        reason="Airflow 3 needs asyncpg for a PostgreSQL metadata database; "
        "it is not in the locked environment (see test_orchestration_deploy)",
    )
    import psycopg2

    name = f"airflow_it_{secrets.token_hex(4)}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@{PG_HOST}:{PG_PORT}/{name}", name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def test_demo_dag_runs_green_on_postgres(metadata_db, tmp_path, monkeypatch):
    generate = pytest.importorskip(
        "poem_registry.synth", reason="the demo data generator is not there yet"
    ).generate
    import psycopg2

    from poem_registry.orchestration.init import run_demo_dag

    url, name = metadata_db
    monkeypatch.delenv("POEM_PSEUDONYM_KEY", raising=False)
    settings = load_settings(home=tmp_path / "home", demo=True)
    settings.ensure_dirs()
    summary = generate(settings.landing_dir, years=2, seed=7, scale=0.3, sites_dir=settings.sites_dir)
    for source in getattr(summary, "sql_urls", {}).values():  # sites that deliver from a database
        monkeypatch.setenv(source["env"], source["url"])

    assert run_demo_dag(settings, metadata_url=url) == 0

    with (
        psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=name) as con,
        con.cursor() as cur,
    ):
        cur.execute("select state from dag_run where dag_id = 'poem_demo'")
        assert [r[0] for r in cur.fetchall()] == ["success"]
        cur.execute("select task_id, map_index, state from task_instance where dag_id = 'poem_demo'")
        states = {(task_id, map_index): state for task_id, map_index, state in cur.fetchall()}
    expected_sites = len(list(Path(settings.sites_dir).glob("*.yml")))
    assert sum(task == "ingest_site" for task, _ in states) == expected_sites
    not_green = {k: s for k, s in states.items() if s != ("skipped" if k[0] == "watcher" else "success")}
    assert not not_green, f"task instances not successful: {not_green}"

    assert (settings.published_dir / "latest.json").is_file(), "no edition was published"
    assert (settings.published_dir / "index.html").is_file()
    assert any((settings.published_dir / "editions").iterdir())
