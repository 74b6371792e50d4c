"""Run the dbt project in-process and keep its results in the warehouse.

One call of :func:`run_dbt` is one dbt invocation (``dbt build`` builds seeds,
models, data tests and unit tests in dependency order). dbt reads its profile
from ``dbt_project/profiles.yml``; the warehouse path reaches it through the
``POEM_WAREHOUSE`` environment variable, taken from the settings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poem_registry.faults import fault_point
from poem_registry.settings import Settings, load_settings

#: Commands that take --target/--vars and write run_results.json.
_RUN_COMMANDS = {"build", "run", "test", "seed", "compile", "show", "parse", "snapshot", "list", "ls", "docs"}
#: Commands whose incremental models must be rebuilt when as_of moves back in time.
_MODEL_COMMANDS = {"build", "run"}
#: dbt reads env vars from the process environment; serialize in-process runs that change it.
_ENV_LOCK = threading.Lock()

RUN_RESULTS_DDL = """
create schema if not exists ops;
create table if not exists ops.dbt_run_results (
    run_id varchar not null,
    invocation_id varchar,
    node_id varchar not null,
    resource_type varchar,
    status varchar not null,
    execution_time double,
    rows_affected bigint,
    failures bigint,
    message varchar,
    recorded_at timestamp not null
)
"""


@dataclass(frozen=True)
class NodeResult:
    """The outcome of one dbt node (model, seed, data test or unit test)."""

    node_id: str
    status: str
    execution_time: float
    rows_affected: int | None = None
    failures: int | None = None
    message: str | None = None

    @property
    def resource_type(self) -> str:
        return self.node_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The node's name (last part of the unique id), e.g. ``fct_procedure``."""
        return self.node_id.rsplit(".", 1)[-1]

    @property
    def ok(self) -> bool:
        return self.status in {"success", "pass", "skipped", "warn"}


@dataclass(frozen=True)
class DbtResult:
    """What one dbt invocation did: overall success and one row per node."""

    success: bool
    args: list[str]
    nodes: list[NodeResult] = field(default_factory=list)
    invocation_id: str | None = None
    error: str | None = None
    #: Where dbt wrote run_results.json (and the compiled SQL, under compiled/).
    run_results_path: Path | None = None
    #: The parsed project (a dbt ``Manifest``) of a successful ``parse``: pass it to
    #: ``run_dbt(..., manifest=...)`` so later invocations skip parsing.
    manifest: Any = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if not n.ok]

    def summary_line(self) -> str:
        """One line: node counts by status, e.g. ``169 nodes: 150 pass, 19 success``."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        line = f"{len(self.nodes)} nodes: {parts}" if self.nodes else "no nodes ran"
        return line + (f" ({self.error})" if self.error and not self.success else "")

    def summary(self) -> str:
        if self.success:
            return f"dbt {' '.join(self.args[:1])}: {len(self.nodes)} nodes OK"
        lines = [f"dbt {' '.join(self.args[:1])} failed" + (f": {self.error}" if self.error else "")]
        lines += [f"  {n.node_id}: {n.status}: {n.message}" for n in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class ParseCheck:
    """Result of :func:`dbt_parse_check`: parse success and any deprecation warnings."""

    success: bool
    deprecations: list[str]
    error: str | None = None


@contextlib.contextmanager
def _dbt_environment(settings: Settings, extra: dict[str, str] | None = None) -> Iterator[None]:
    from poem_registry.warehouse import duckdb_config

    values = {
        "DBT_PROFILES_DIR": str(settings.dbt_project_dir),
        "DBT_PROJECT_DIR": str(settings.dbt_project_dir),
        "POEM_WAREHOUSE": str(settings.warehouse_path),
        "POEM_DUCKDB_MEMORY_LIMIT": duckdb_config()["memory_limit"],
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **(extra or {}),
    }
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _as_of_text(as_of: dt.date | str | None) -> str | None:
    if as_of is None:
        return None
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    text = as_of.isoformat() if isinstance(as_of, dt.date) else str(as_of)
    dt.date.fromisoformat(text)  # a clear ValueError for a malformed date
    return text


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the life of the process.

    Without this the warehouse file stays locked after an in-process run, and other
    processes (or a read-only connection in this one) cannot open it.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # dbt-duckdb not installed: nothing to release
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if environment is not None:
        environment.close()
    gc.collect()  # drop cursors still referencing the database instance


def _fault_after_node(event) -> None:
    """Fault point ``build.mid_dbt``: reached after each dbt model finishes (tests kill dbt mid-build here)."""
    if event.info.name == "NodeFinished" and getattr(event.data.node_info, "unique_id", "").startswith("model."):
        fault_point("build.mid_dbt")


def parse_run_results(path: Path) -> tuple[str | None, list[NodeResult]]:
    """Nodes of a dbt ``run_results.json``: (invocation_id, results)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    nodes = []
    for r in data.get("results", []):
        adapter_response = r.get("adapter_response") or {}
        nodes.append(
            NodeResult(
                node_id=r["unique_id"],
                status=str(r["status"]),
                execution_time=float(r.get("execution_time") or 0.0),
                rows_affected=adapter_response.get("rows_affected"),
                failures=r.get("failures"),
                message=r.get("message"),
            )
        )
    return data.get("metadata", {}).get("invocation_id"), nodes


def run_dbt(
    args: list[str],
    settings: Settings | None = None,
    as_of: dt.date | str | None = None,
    target: str = "duckdb",
    *,
    full_refresh: bool | None = None,
    extra_vars: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    target_path: Path | None = None,
    manifest: Any = None,
) -> DbtResult:
    """Run one dbt command in-process, e.g. ``run_dbt(["build"], settings, as_of=date(2025, 6, 30))``.

    ``as_of`` is passed as ``--vars {as_of: ...}`` (default: today). A past ``as_of``
    cannot be applied incrementally to the latest-version models, so for ``build``
    and ``run`` it implies ``--full-refresh`` unless ``full_refresh=False`` is given.
    ``env`` adds environment variables for this run (for example ``POEM_PG_SCHEMA``).
    ``manifest`` is the ``.manifest`` of an earlier ``run_dbt(["parse"], ...)`` with the
    same settings, vars and target: dbt then skips parsing the project again (several
    invocations in a row parse once; see :func:`poem_registry.pipeline.run_build`).
    """
    from dbt.cli.main import dbtRunner  # heavy import, only when dbt actually runs

    settings = settings or load_settings()
    project_dir = settings.dbt_project_dir
    target_path = Path(target_path or settings.home / "dbt" / "target")
    log_path = settings.logs_dir / "dbt"
    command = args[0] if args else "build"
    cli = list(args) or ["build"]
    as_of_text = _as_of_text(as_of)
    if command in _RUN_COMMANDS:
        variables = dict(extra_vars or {})
        if as_of_text:
            variables["as_of"] = as_of_text
        cli += ["--project-dir", str(project_dir), "--profiles-dir", str(project_dir), "--target", target]
        cli += ["--target-path", str(target_path), "--log-path", str(log_path)]
        if variables:
            cli += ["--vars", json.dumps(variables)]
    if full_refresh is None:
        full_refresh = bool(as_of_text) and dt.date.fromisoformat(as_of_text) < dt.date.today()
    if full_refresh and command in _MODEL_COMMANDS and "--full-refresh" not in cli:
        cli.append("--full-refresh")

    run_results = target_path / "run_results.json"
    run_results.unlink(missing_ok=True)
    with _dbt_environment(settings, env):
        try:
            outcome = dbtRunner(manifest=manifest, callbacks=[_fault_after_node]).invoke(cli)
        finally:
            _release_duckdb()
    if command != "parse":  # a parse only prepares the run that follows it
        fault_point("build.after_dbt")
    invocation_id, nodes = (None, [])
    if run_results.exists():
        invocation_id, nodes = parse_run_results(run_results)
    error = str(outcome.exception) if outcome.exception else None
    return DbtResult(
        success=bool(outcome.success),
        args=cli,
        nodes=nodes,
        invocation_id=invocation_id,
        error=error,
        run_results_path=run_results if run_results.exists() else None,
        manifest=outcome.result if command == "parse" and outcome.success else None,
    )


def store_run_results(con, results: DbtResult | Iterable[NodeResult], run_id: str) -> int:
    """Append the node results of one run to ``ops.dbt_run_results``; returns the row count."""
    invocation_id = results.invocation_id if isinstance(results, DbtResult) else None
    nodes = results.nodes if isinstance(results, DbtResult) else list(results)
    con.execute(RUN_RESULTS_DDL)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [
        (
            run_id,
            invocation_id,
            n.node_id,
            n.resource_type,
            n.status,
            n.execution_time,
            n.rows_affected,
            n.failures,
            n.message,
            now,
        )
        for n in nodes
    ]
    if rows:
        con.executemany("insert into ops.dbt_run_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def dbt_parse_check(settings: Settings | None = None) -> ParseCheck:
    """Run ``dbt parse`` with deprecations promoted to errors and collect any deprecation events."""
    from dbt.cli.main import dbtRunner

    settings = settings or load_settings()
    deprecations: list[str] = []

    def collect(event) -> None:
        # Event codes D### are dbt's deprecation events (dbt/events/types.py).
        if event.info.code.startswith("D"):
            deprecations.append(f"{event.info.name}: {event.info.msg}")

    project_dir = settings.dbt_project_dir
    cli = [
        "parse",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target-path",
        str(settings.home / "dbt" / "parse-target"),
        "--log-path",
        str(settings.logs_dir / "dbt"),
        "--warn-error-options",
        json.dumps({"error": ["Deprecations"]}),
        "--no-partial-parse",
    ]
    with _dbt_environment(settings):
        outcome = dbtRunner(callbacks=[collect]).invoke(cli)
    error = str(outcome.exception) if outcome.exception else None
    if error and "Deprecat" in error:  # promoted to an error, so it never reached the callback
        deprecations.append(error)
    return ParseCheck(success=bool(outcome.success), deprecations=deprecations, error=error)


def static_docs_path(settings) -> Path:
    """Where `dbt docs generate --static` leaves its single-file documentation (published with each edition)."""
    return Path(settings.home) / "dbt" / "target" / "static_index.html"
