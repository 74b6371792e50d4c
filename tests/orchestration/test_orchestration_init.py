"""The init command, the embedded Airflow environment, edition periods and failure alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from datetime import date
from pathlib import Path

import pytest

from poem_registry.orchestration import callbacks
from poem_registry.orchestration.init import DAGS_FOLDER, airflow_env, smtp_connection
from poem_registry.orchestration.periods import period_end, periods_due, validate_period
from poem_registry.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_airflow_env_points_at_the_project(tmp_path):
    settings = load_settings(home=tmp_path / "home")
    env = airflow_env(settings)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home" / "airflow")
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == f"sqlite:///{tmp_path / 'home' / 'airflow' / 'airflow.db'}"
    )
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags") == str(DAGS_FOLDER)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert settings.as_env().items() <= env.items()
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/x"
    assert airflow_env(settings, url)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url


@pytest.mark.parametrize(
    ("run_date", "due"),
    [
        (date(2025, 4, 2), ["2025-03", "2025-Q1"]),
        (date(2025, 5, 2), ["2025-04"]),
        (date(2026, 1, 2), ["2025-12", "2025-Q4"]),
        (date(2025, 3, 1), ["2025-02"]),
    ],
)
def test_periods_due(run_date, due):
    assert periods_due(run_date) == due


def test_period_end_and_validation():
    assert period_end("2024-02") == date(2024, 2, 29)
    assert period_end("2025-Q3") == date(2025, 9, 30)
    assert period_end("2025") == date(2025, 12, 31)
    with pytest.raises(ValueError, match="not a month"):
        validate_period("2025-Q0")


def test_periods_are_understood_by_the_publisher():
    parse_period = pytest.importorskip("poem_registry.reports.periods").parse_period
    for period in (*periods_due(date(2025, 4, 2)), "2025"):
        assert parse_period(period, date(2025, 4, 2)).end == period_end(period)


def test_smtp_connection_mirrors_the_notifier_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert smtp_connection({}) is None
    conn = smtp_connection(
        {
            "POEM_SMTP_HOST": "mail.example.org",
            "POEM_SMTP_PORT": "587",
            "POEM_SMTP_USER": "u",
            "POEM_SMTP_PASSWORD": "p",
            "POEM_SMTP_TLS": "1",
            "POEM_SMTP_FROM": "registry@example.org",
        }
    )
    assert (conn.conn_id, conn.conn_type, conn.host, conn.port, conn.login) == (
        "smtp_default",
        "smtp",
        "mail.example.org",
        587,
        "u",
    )
    assert conn.password == "p"
    assert json.loads(conn.extra) == {
        "from_email": "registry@example.org",
        "disable_tls": False,
        "disable_ssl": True,
    }


def test_alert_failure_logs_and_notifies(monkeypatch, caplog):
    sent = []
    fake = types.ModuleType(callbacks.NOTIFY_MODULE)
    fake.notify_failure = lambda context: sent.append(context)
    monkeypatch.setitem(sys.modules, callbacks.NOTIFY_MODULE, fake)
    ti = types.SimpleNamespace(
        dag_id="poem_ingest", task_id="ingest_site", map_index=2, rendered_map_index="harbor", try_number=3
    )
    context = {"task_instance": ti, "run_id": "scheduled__1", "exception": RuntimeError("bad delivery")}
    callbacks.alert_failure(context)
    assert sent == [context]
    assert "poem_ingest.ingest_site[harbor] (run scheduled__1): bad delivery" in caplog.text


def test_alert_failure_survives_a_broken_notifier(monkeypatch, caplog):
    fake = types.ModuleType(callbacks.NOTIFY_MODULE)

    def broken(context):
        raise OSError("mail server down")

    fake.notify_failure = broken
    monkeypatch.setitem(sys.modules, callbacks.NOTIFY_MODULE, fake)
    callbacks.alert_failure({"run_id": "r", "exception": ValueError("x")})
    assert "could not be sent" in caplog.text


@pytest.mark.slow
def test_airflow_init_is_idempotent_on_sqlite(tmp_path):
    """Migrate a fresh SQLite metadata DB, init twice, and read the pool and variables back."""
    settings = load_settings(home=tmp_path / "home")
    settings.airflow_home.mkdir(parents=True)
    env = {**os.environ, **airflow_env(settings), "POEM_SMTP_HOST": "mail.example.org"}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run("-m", "airflow", "db", "migrate")
    for _ in range(2):
        out = run("-m", "poem_registry.orchestration.init")
        summary = json.loads(out[out.index("{") :])
        assert summary == {
            "pool": {"duckdb_writer": 1},
            "variables": ["poem_settings"],
            "connections": ["smtp_default"],
        }
    pools = json.loads(run("-m", "airflow", "pools", "list", "-o", "json"))
    assert [int(p["slots"]) for p in pools if p["pool"] == "duckdb_writer"] == [1]
    stored = json.loads(run("-m", "airflow", "variables", "get", "poem_settings"))
    assert stored == settings.as_env()
    conn = json.loads(run("-m", "airflow", "connections", "get", "smtp_default", "-o", "json"))
    assert [(c["conn_type"], c["host"]) for c in conn] == [("smtp", "mail.example.org")]
