"""Prepare an Airflow installation for this project, and run the demo DAG on the embedded defaults.

* :func:`airflow_env`: the environment that points the ``airflow`` CLI at this project
  (``AIRFLOW_HOME`` under the POEM home, a SQLite metadata database there unless a URL is
  given, the repository's ``dags/`` folder, no example DAGs, LocalExecutor) plus the
  ``POEM_*`` settings the tasks read.
* :func:`airflow_init`: creates the ``duckdb_writer`` pool (1 slot), the Variables and the
  SMTP connection, idempotently (``poem-registry airflow-init``, or
  ``python -m poem_registry.orchestration.init``). It works on the Airflow the current
  process is configured for: the compose's ``airflow-init`` service sets PostgreSQL in its
  environment; on a checkout with no ``AIRFLOW_HOME`` set, the defaults of
  :func:`airflow_env` are applied first.
* :func:`run_demo_dag`: ``airflow db migrate``, the init, then ``airflow dags test
  poem_demo`` in subprocesses with that environment (``make demo``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from poem_registry.orchestration import config
from poem_registry.settings import REPO_ROOT, Settings, load_settings

DAGS_FOLDER = REPO_ROOT / "dags"
DEMO_DAG_ID = "poem_demo"


def sqlite_url(settings: Settings) -> str:
    """The embedded metadata database: a SQLite file in the Airflow home."""
    return f"sqlite:///{settings.airflow_home / 'airflow.db'}"


def airflow_env(settings: Settings, metadata_url: str | None = None) -> dict[str, str]:
    """Environment variables for running the ``airflow`` CLI on this project.

    ``metadata_url`` is a SQLAlchemy URL of the metadata database (for example
    ``postgresql+psycopg2://user@host/db``); by default a SQLite file under
    ``settings.airflow_home``. Merge the result over ``os.environ`` for a subprocess.
    """
    return {
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url or sqlite_url(settings),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        **settings.as_env(),
    }


def _use_embedded_defaults(settings: Settings) -> None:
    """Point this process's Airflow at the embedded defaults unless it is configured already.

    Airflow reads its configuration when first imported, so this runs before that import.
    """
    if "AIRFLOW_HOME" in os.environ or "airflow.configuration" in sys.modules:
        return
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    for key, value in airflow_env(settings).items():
        os.environ.setdefault(key, value)


def airflow_init(settings: Settings, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Create or update the pool, Variables and connection this project needs. Idempotent.

    * pool ``duckdb_writer`` with 1 slot (DuckDB has one writing process per file);
    * Variable ``poem_settings``: the ``POEM_*`` settings this deployment was initialised
      with, as JSON (a reference in the UI: the tasks read their settings from the worker's
      environment, so editing the Variable cannot point a run at another warehouse);
    * connection ``smtp_default`` from the ``POEM_SMTP_*`` settings the notifier uses
      (:func:`smtp_connection`), when ``POEM_SMTP_HOST`` is set.

    The metadata database must be migrated (``airflow db migrate``). ``environ`` (default
    ``os.environ``) is where the ``POEM_SMTP_*`` settings are read.
    Returns what was configured (no secrets).
    """
    environ = os.environ if environ is None else environ
    _use_embedded_defaults(settings)

    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    done: dict[str, Any] = {}
    with create_session() as session:
        Pool.create_or_update_pool(
            config.DUCKDB_POOL,
            slots=config.DUCKDB_POOL_SLOTS,
            description="Writers of the DuckDB warehouse file (one writing process at a time)",
            include_deferred=False,
            session=session,
        )
        done["pool"] = {config.DUCKDB_POOL: config.DUCKDB_POOL_SLOTS}

        Variable.set(
            config.SETTINGS_VARIABLE,
            settings.as_env(),
            description="POEM_* settings at the last airflow-init (reference; tasks read the environment)",
            serialize_json=True,
            session=session,
        )
        done["variables"] = [config.SETTINGS_VARIABLE]

        if smtp := smtp_connection(environ):
            existing = session.query(Connection).filter(Connection.conn_id == smtp.conn_id).one_or_none()
            if existing is None:
                session.add(smtp)
            else:
                for attr in ("conn_type", "host", "port", "login", "description"):
                    setattr(existing, attr, getattr(smtp, attr))
                existing.set_password(smtp.password)
                existing.set_extra(smtp.extra)
            done["connections"] = [smtp.conn_id]
    return done


def smtp_connection(environ: Mapping[str, str]) -> Any | None:
    """The ``smtp_default`` Airflow connection built from ``POEM_SMTP_*``, or None without a host.

    Same variables as :class:`poem_registry.reports.notify.SmtpConfig`, so the mail server
    is configured once for the project's notifications and Airflow's own e-mail features.
    """
    host = environ.get("POEM_SMTP_HOST", "").strip()
    if not host:
        return None
    from airflow.models import Connection

    truthy = {"1", "true", "yes", "on"}
    extra = {
        "from_email": environ.get("POEM_SMTP_FROM", ""),
        "disable_tls": environ.get("POEM_SMTP_TLS", "").strip().lower() not in truthy,
        "disable_ssl": environ.get("POEM_SMTP_SSL", "").strip().lower() not in truthy,
    }
    return Connection(
        conn_id=config.SMTP_CONN_ID,
        conn_type="smtp",
        description="From POEM_SMTP_* (poem-registry airflow-init)",
        host=host,
        port=int(environ.get("POEM_SMTP_PORT") or 25),
        login=environ.get("POEM_SMTP_USER") or None,
        password=environ.get("POEM_SMTP_PASSWORD") or None,
        extra=json.dumps(extra),
    )


def run_demo_dag(
    settings: Settings,
    *,
    metadata_url: str | None = None,
    progress: Callable[[str], None] = print,
) -> int:
    """Run the whole pipeline as one real Airflow DAG run; returns the exit code (0 = success).

    Three subprocesses with :func:`airflow_env` over the current environment, output
    streamed to this process's stdout/stderr: ``airflow db migrate`` (every time: it is a
    no-op on a current database and upgrades one left by an older Airflow), the init, and
    ``airflow dags test poem_demo`` (which exits non-zero when the DAG run fails).
    """
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **airflow_env(settings, metadata_url)}
    steps = [
        ("migrating the Airflow metadata database", [sys.executable, "-m", "airflow", "db", "migrate"]),
        (
            "creating the pool, variables and connections",
            [sys.executable, "-m", "poem_registry.orchestration.init"],
        ),
        (f"airflow dags test {DEMO_DAG_ID}", [sys.executable, "-m", "airflow", "dags", "test", DEMO_DAG_ID]),
    ]
    for label, command in steps:
        progress(f"  airflow: {label} ...")
        code = subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode
        if code != 0:
            progress(f"  airflow: {label} failed (exit {code})")
            return code
    return 0


def main() -> int:
    """``python -m poem_registry.orchestration.init``: init the Airflow this environment points at."""
    done = airflow_init(load_settings())
    print(json.dumps(done, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
