"""Sites whose registry lives in their own SQL database, pulled incrementally with SQLAlchemy.

Configuration (``sql:`` in the site file, docs/site-config.md)::

    sql:
      url_setting: POEM_SITE_NORTHBAY_DB_URL      # environment variable holding the SQLAlchemy URL
      incremental_column: record_updated_at       # default; per table override allowed
      connect_timeout_seconds: 10                 # optional
      tables:
        procedures: {table: poem.poem_procedure, columns: {case_no: procedure_id}}
        followups:  {query: "select * from poem_followup where not deleted", columns: {...}}

Security decisions, because the configuration is text in a repository and the
database belongs to someone else:

* The URL (with its password) is never in the repository: only the *name* of the
  environment variable is. A missing variable is a DeliveryError naming it.
* Table, schema and column names are checked against a strict identifier
  pattern and rendered by SQLAlchemy's identifier quoting, never formatted
  into SQL text. Values (watermarks) are always bound parameters.
* A configured ``query`` must be one plain SELECT: no ``;``, no comments, no
  data-changing or locking keywords. On PostgreSQL the pull also runs in a
  READ ONLY transaction with a statement timeout, as a second fence.
* Connections use a connect timeout and no pool, so an unreachable site fails
  fast with a clear message and other sites continue.

Incremental pulls and idempotency: :func:`discover` asks each source for the
maximum of its incremental column and returns one :class:`Delivery` whose
``extracted_at`` is that maximum (ISO text) and whose ``extract_id`` is derived
from it (``sql_20250301T101500``). :func:`read` then pulls rows with
``since < incremental <= extracted_at``: a row changed between discover and
read waits for the next pull instead of being delivered twice, and passing the
previous delivery's ``extracted_at`` as ``since`` yields zero rows when nothing
changed; :func:`discover` then returns no delivery at all. Rows whose
incremental value is NULL are only pulled by a full pull (``since=None``); a
warning says how many there are.

Values are converted to exchange text (ISO dates, ``true``/``false``, plain
decimals) and then go through the same forward mapping as the file adapters
(``mapping.codes``, ``mapping.booleans``, ``mapping.units`` and formats for
dates stored as text apply; renames come from ``sql.tables.<entity>.columns``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from poem_registry.adapters.base import (
    SOURCE_FILE,
    SOURCE_ROW,
    AdapterOutput,
    Delivery,
    DeliveryError,
    Finding,
)
from poem_registry.adapters.mapping import (
    check_header,
    map_frame,
    render_datetime,
    render_number,
    spec_for_site,
)
from poem_registry.contract import load_contract
from poem_registry.sites import SiteConfig

#: Plain SQL identifiers only: no quotes, spaces, dots (schema is given as ``schema.table``) or punctuation.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_SELECT_START = re.compile(r"^\s*select\b", re.IGNORECASE)
_FORBIDDEN_SQL = re.compile(
    r"\b(insert|update|delete|merge|upsert|replace|drop|alter|create|truncate|grant|revoke|into|copy|call|"
    r"exec|execute|do|lock|vacuum|analyze|attach|detach|pragma|set|reset|begin|commit|rollback|savepoint|"
    r"listen|notify|load|import|export|shutdown|pg_sleep|pg_read_file|pg_terminate_backend|lo_import|"
    r"lo_export|dblink\w*)\b",
    re.IGNORECASE,
)
DEFAULT_INCREMENTAL = "record_updated_at"
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_STATEMENT_TIMEOUT = 600


@dataclass(frozen=True)
class Source:
    """Where one entity comes from in the site's database."""

    entity: str
    table: str | None = None
    schema: str | None = None
    query: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    incremental_column: str = DEFAULT_INCREMENTAL

    @property
    def name(self) -> str:
        """``_source_file`` of the pulled rows: the table name, or ``query:<entity>``."""
        if self.table:
            return f"{self.schema}.{self.table}" if self.schema else self.table
        return f"query:{self.entity}"


@dataclass(frozen=True)
class SqlConfig:
    url_setting: str
    sources: dict[str, Source]
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT


def _config_error(site: SiteConfig, problem: str) -> DeliveryError:
    where = site.source_file or f"sites/{site.site_id}.yml"
    return DeliveryError(f"site {site.site_id}: {where}: {problem}", rule="site_config")


def _identifier(site: SiteConfig, value: object, key: str) -> str:
    text = str(value)
    if not IDENTIFIER.match(text):
        raise _config_error(
            site,
            f"{key} {text!r} is not a plain SQL identifier (letters, digits and _, starting with a letter or _); "
            "names are never pasted into SQL, so quotes, spaces and punctuation are refused",
        )
    return text


def check_select(query: str) -> str:
    """Accept one plain SELECT statement, or raise ValueError saying why not."""
    q = query.strip()
    if ";" in q:
        raise ValueError("contains ';' (only one statement is allowed, without a trailing ';')")
    if "--" in q or "/*" in q:
        raise ValueError("contains a comment ('--' or '/*'); remove it")
    if not _SELECT_START.match(q):
        raise ValueError("must start with SELECT")
    bad = _FORBIDDEN_SQL.search(q)
    if bad:
        raise ValueError(f"contains the keyword {bad.group(0)!r}; only reading with SELECT is allowed")
    return q


def parse_config(site: SiteConfig) -> SqlConfig:
    """Check the ``sql:`` section; every problem is a DeliveryError naming the key to fix."""
    cfg = site.sql or {}
    if not isinstance(cfg, dict) or not cfg:
        raise _config_error(site, "adapter sql needs an `sql:` section (url_setting and tables)")
    url_setting = str(cfg.get("url_setting") or "")
    if "://" in url_setting or ":" in url_setting:
        raise _config_error(
            site,
            "sql.url_setting must be the NAME of an environment variable (e.g. POEM_SITE_X_DB_URL), never the "
            "URL itself: database passwords do not go into the repository",
        )
    if not ENV_NAME.match(url_setting):
        raise _config_error(
            site, f"sql.url_setting {url_setting!r} must be an environment variable name (A-Z, 0-9, _)"
        )
    default_incr = _identifier(
        site, cfg.get("incremental_column", DEFAULT_INCREMENTAL), "sql.incremental_column"
    )
    contract = load_contract()
    tables = cfg.get("tables") or {}
    if not isinstance(tables, dict):
        raise _config_error(site, "sql.tables must map entity names to {table: ...} or {query: ...}")
    sources: dict[str, Source] = {}
    for entity, spec in tables.items():
        key = f"sql.tables.{entity}"
        if entity not in contract.entities:
            raise _config_error(site, f"{key} is not an entity; use one of {', '.join(contract.entities)}")
        if isinstance(spec, str):
            spec = {"table": spec}
        if not isinstance(spec, dict) or ("table" in spec) == ("query" in spec):
            raise _config_error(site, f"{key} needs exactly one of `table` or `query`")
        columns = spec.get("columns") or {}
        if not isinstance(columns, dict):
            raise _config_error(site, f"{key}.columns must map database columns to exchange columns")
        for col in columns:
            _identifier(site, col, f"{key}.columns")
        incr = _identifier(site, spec.get("incremental_column", default_incr), f"{key}.incremental_column")
        table = schema = query = None
        if "table" in spec:
            parts = str(spec["table"]).split(".")
            if len(parts) > 2:
                raise _config_error(site, f"{key}.table {spec['table']!r} must be `table` or `schema.table`")
            names = [_identifier(site, p, f"{key}.table") for p in parts]
            schema, table = (names[0], names[1]) if len(names) == 2 else (None, names[0])
        else:
            try:
                query = check_select(str(spec["query"]))
            except ValueError as exc:
                raise _config_error(site, f"{key}.query {exc}") from None
        sources[entity] = Source(
            entity=entity,
            table=table,
            schema=schema,
            query=query,
            columns={str(k): str(v) for k, v in columns.items()},
            incremental_column=incr,
        )
    if "procedures" not in sources:
        raise _config_error(site, "sql.tables must include procedures (required in every delivery)")
    try:
        timeout = float(cfg.get("connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT))
        statement_timeout = int(cfg.get("statement_timeout_seconds", DEFAULT_STATEMENT_TIMEOUT))
    except (TypeError, ValueError):
        raise _config_error(
            site, "sql.connect_timeout_seconds and statement_timeout_seconds must be numbers"
        ) from None
    return SqlConfig(url_setting, sources, timeout, statement_timeout)


# ---------------------------------------------------------------------------- connection


def _unreachable(site: SiteConfig, cfg: SqlConfig, reason: str) -> DeliveryError:
    reason = " ".join(reason.split())[:300]
    return DeliveryError(
        f"site {site.site_id} database unreachable: {reason}; check the URL in ${cfg.url_setting} and the "
        "network; other sites continue",
        file_name=cfg.url_setting,
        rule="database_reachable",
    )


def make_engine(site: SiteConfig, cfg: SqlConfig) -> Engine:
    """Engine for the URL in the configured environment variable, with a connect timeout and no pool."""
    url_text = os.environ.get(cfg.url_setting, "").strip()
    if not url_text:
        raise DeliveryError(
            f"site {site.site_id}: environment variable {cfg.url_setting} is not set; set it to the SQLAlchemy URL "
            "of the site's database (for example postgresql+psycopg2://reader@host:5432/registry) in the "
            "environment of the pipeline, not in the repository",
            file_name=cfg.url_setting,
            rule="database_url",
        )
    try:
        url = sa.make_url(url_text)
    except ArgumentError:
        raise DeliveryError(
            f"site {site.site_id}: the value of ${cfg.url_setting} is not a valid SQLAlchemy URL "
            "(expected dialect+driver://user@host:port/database)",
            file_name=cfg.url_setting,
            rule="database_url",
        ) from None
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql" or backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, int(cfg.connect_timeout))
    elif backend == "sqlite":
        connect_args["timeout"] = cfg.connect_timeout
        database = url.database or ""
        if (
            database
            and database != ":memory:"
            and not database.startswith("file:")
            and not Path(database).is_file()
        ):
            raise _unreachable(site, cfg, f"SQLite file {database} does not exist")
    try:
        return sa.create_engine(url, connect_args=connect_args, poolclass=NullPool)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise DeliveryError(
            f"site {site.site_id}: the database driver for ${cfg.url_setting} is not available ({exc}); "
            "install the driver or fix the dialect in the URL",
            file_name=cfg.url_setting,
            rule="database_url",
        ) from exc


def _connect(engine: Engine, site: SiteConfig, cfg: SqlConfig) -> Connection:
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise _unreachable(site, cfg, str(exc.orig) if exc.orig is not None else str(exc)) from exc
    except SQLAlchemyError as exc:
        raise _unreachable(site, cfg, str(exc)) from exc
    if engine.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(cfg.statement_timeout) * 1000}")
    return conn


# ---------------------------------------------------------------------------- statements


@dataclass
class _Resolved:
    """A source bound to a live database: its selectable, its columns and the incremental column."""

    source: Source
    selectable: sa.FromClause
    columns: list[str]
    incremental: sa.ColumnElement
    incremental_name: str
    order: list[sa.ColumnElement]


def _resolve(conn: Connection, site: SiteConfig, source: Source) -> _Resolved:
    """Look the source up (reflect the table or probe the query) and check the mapped columns exist."""
    if source.table:
        inspector = sa.inspect(conn)
        try:
            reflected = inspector.get_columns(source.table, schema=source.schema)
        except NoSuchTableError:
            reflected = []
        if not reflected:
            try:
                available = inspector.get_table_names(schema=source.schema)
            except SQLAlchemyError:
                available = []
            raise DeliveryError(
                f"site {site.site_id}: table {source.name} (sql.tables.{source.entity}) does not exist in the "
                f"site's database or cannot be read by this user; tables visible: {', '.join(available) or 'none'}",
                file_name=source.name,
                rule="schema_drift",
            )
        selectable: sa.FromClause = sa.table(
            source.table, *[sa.column(c["name"], c["type"]) for c in reflected], schema=source.schema
        )
        columns = [c["name"] for c in reflected]
    else:
        selectable = sa.text(source.query or "").columns().subquery("src")
        try:
            probe = conn.execute(sa.select(sa.text("*")).select_from(selectable).limit(0))
        except DBAPIError as exc:
            raise DeliveryError(
                f"site {site.site_id}: the query of sql.tables.{source.entity} fails in the site's database "
                f"({' '.join(str(exc.orig).split())[:300]}); fix the query",
                file_name=source.name,
                rule="schema_drift",
            ) from exc
        columns = list(probe.keys())
        probe.close()
    spec = spec_for_site(site, columns={source.entity: source.columns})
    check_header(columns, entity=source.entity, spec=spec, file_name=source.name, what=f"{source.name}")
    incr_name = source.incremental_column
    if incr_name not in columns:
        renamed = [site_col for site_col, target in source.columns.items() if target == incr_name]
        if not renamed:
            raise DeliveryError(
                f"site {site.site_id}: {source.name} has no incremental column {incr_name!r} (needed to pull only "
                f"new and changed rows); add it to the table/query or set sql.tables.{source.entity}."
                f"incremental_column; columns there: {', '.join(columns)}",
                file_name=source.name,
                rule="schema_drift",
            )
        incr_name = renamed[0]

    def col(name: str) -> sa.ColumnElement:
        if source.table:
            return selectable.c[name]
        return sa.column(name)  # quoted by the dialect like any identifier

    reverse = {target: site_col for site_col, target in source.columns.items()}
    key_cols = [reverse.get(k, k) for k in load_contract().entities[source.entity].key]
    order = [sa.nulls_first(col(incr_name).asc())] + [col(k).asc() for k in key_cols if k in columns]
    return _Resolved(source, selectable, columns, col(incr_name), incr_name, order)


def _python_type(resolved: _Resolved) -> type | None:
    """Python type of the incremental column (None for query sources, whose types are unknown)."""
    try:
        return resolved.incremental.type.python_type
    except NotImplementedError:
        return None


def _bind_value(site: SiteConfig, resolved: _Resolved, value: str) -> Any:
    """A watermark string as the Python value the incremental column compares with."""
    python_type = _python_type(resolved)
    try:
        if python_type is datetime:
            return datetime.fromisoformat(value)
        if python_type is date:
            return datetime.fromisoformat(value).date()
        if python_type in (int, float, Decimal):
            return python_type(value)
        if python_type is str:
            return value
        # untyped (query sources): infer from the text
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    except (ValueError, ArithmeticError) as exc:
        raise DeliveryError(
            f"site {site.site_id}: watermark {value!r} cannot be compared with {resolved.source.name}."
            f"{resolved.incremental_name} ({exc}); pull without a watermark once to reset it",
            file_name=resolved.source.name,
            rule="watermark",
        ) from exc


def _window(
    site: SiteConfig, resolved: _Resolved, since: str | None, upper: str | None
) -> list[sa.ColumnElement]:
    """WHERE conditions for ``since < incremental <= upper`` (NULLs only in a full pull)."""
    incr = resolved.incremental
    # Untyped (query) columns: let SQLAlchemy pick the type from the Python value, so a datetime is
    # rendered the way the dialect stores datetimes (SQLite keeps them as text).
    col_type = None if isinstance(incr.type, sa.types.NullType) else incr.type
    conditions: list[sa.ColumnElement] = []
    if since is not None:
        conditions.append(incr > sa.bindparam("since", _bind_value(site, resolved, since), type_=col_type))
    if upper is not None:
        bound = incr <= sa.bindparam("upper", _bind_value(site, resolved, upper), type_=col_type)
        conditions.append(bound if since is not None else sa.or_(bound, incr.is_(None)))
    return conditions


# ---------------------------------------------------------------------------- values


def db_text(value: Any) -> str | None:
    """A database value as exchange text (ISO dates, true/false, plain numbers)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | Decimal):
        return render_number(value)
    if isinstance(value, datetime | date):
        return render_datetime(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _column_text(values: list[Any]) -> pd.Series:
    """One pulled column as a string Series; conversion runs once per distinct value."""
    s = pd.Series(values, dtype=object)
    present = s.dropna()
    if present.empty:
        return s.astype("string")
    kinds = set(map(type, present))
    if kinds <= {str}:
        return s.astype("string")
    if kinds <= {int}:
        return s.astype("Int64").astype("string")
    distinct = pd.unique(present)
    return s.map(dict(zip(distinct, map(db_text, distinct), strict=True))).astype("string")


def watermark_text(value: Any, *, normalize_text: bool = True) -> str | None:
    """The maximum incremental value as the watermark string (ISO for dates/timestamps).

    Untyped sources (a configured query on SQLite) return timestamps as text such
    as ``2025-06-02 00:00:00.000000``; those are normalised to ISO so
    ``extracted_at`` is always ISO. A column declared as text keeps its exact
    value (``normalize_text=False``) because it is compared as text.
    """
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and normalize_text:
        try:
            return datetime.fromisoformat(value).isoformat()
        except ValueError:
            return value
    return db_text(value)


def _sort_key(text: str) -> tuple[int, Any]:
    """Order watermarks by meaning, not spelling: timestamps (UTC), then integers (row versions), then text."""
    if re.fullmatch(r"-?\d+", text):
        return (1, int(text))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return (2, text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return (0, dt)


def extract_id_for(watermark: str | None) -> str:
    """Deterministic extract id from the watermark: the same data state always gets the same id."""
    if watermark is None:
        return "sql_empty"
    try:
        dt = datetime.fromisoformat(watermark)
    except ValueError:
        return "sql_" + (re.sub(r"[^0-9A-Za-z]+", "", watermark)[:40] or "x")
    suffix = ""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
        suffix = "Z"
    text = dt.strftime("%Y%m%dT%H%M%S") + (f"{dt.microsecond:06d}" if dt.microsecond else "")
    return f"sql_{text}{suffix}"


# ---------------------------------------------------------------------------- public API


def discover(site: SiteConfig, since: str | None = None, landing_dir: Path | None = None) -> list[Delivery]:
    """One delivery describing the database's current state, or none when nothing changed.

    The delivery's ``extract_id`` is derived from the maximum incremental value
    over every source, so the same data state always gets the same id. When
    ``since`` (the watermark of the last successful pull) is given and no
    source has a value after it, the list is empty: an unchanged database is
    not a new delivery, and a re-run creates no empty batch. ``landing_dir`` is
    accepted (and ignored) so every adapter can be called the same way.
    """
    cfg = parse_config(site)
    engine = make_engine(site, cfg)
    try:
        with _connect(engine, site, cfg) as conn:
            maxima: list[str] = []
            for source in cfg.sources.values():
                resolved = _resolve(conn, site, source)
                top = conn.execute(
                    sa.select(sa.func.max(resolved.incremental)).select_from(resolved.selectable)
                )
                text = watermark_text(top.scalar(), normalize_text=_python_type(resolved) is not str)
                if text is not None:
                    maxima.append(text)
    finally:
        engine.dispose()
    watermark = max(maxima, key=_sort_key) if maxima else None
    if since is not None and (watermark is None or _sort_key(watermark) <= _sort_key(since)):
        return []
    return [
        Delivery(
            site_id=site.site_id,
            extract_id=extract_id_for(watermark),
            path=Path(cfg.url_setting),
            extracted_at=watermark,
        )
    ]


def read(delivery: Delivery, site: SiteConfig, since: str | None = None) -> AdapterOutput:
    """Pull rows with ``since < incremental <= delivery.extracted_at`` from every configured source."""
    cfg = parse_config(site)
    engine = make_engine(site, cfg)
    upper = delivery.extracted_at
    frames: dict[str, pd.DataFrame] = {}
    findings: list[Finding] = []
    files: dict[str, bytes | None] = {}
    extra: dict[str, list[str]] = {}
    try:
        with _connect(engine, site, cfg) as conn:
            for entity, source in cfg.sources.items():
                resolved = _resolve(conn, site, source)
                stmt = sa.select(sa.text("*")) if not source.table else sa.select(resolved.selectable)
                stmt = stmt.select_from(resolved.selectable)
                for condition in _window(site, resolved, since, upper):
                    stmt = stmt.where(condition)
                stmt = stmt.order_by(*resolved.order)
                try:
                    result = conn.execute(stmt)
                    keys = list(result.keys())
                    rows = result.fetchall()
                    nulls = 0
                    if since is not None:
                        nulls = conn.execute(
                            sa.select(sa.func.count())
                            .select_from(resolved.selectable)
                            .where(resolved.incremental.is_(None))
                        ).scalar_one()
                except DBAPIError as exc:
                    raise DeliveryError(
                        f"site {site.site_id}: pulling {source.name} failed "
                        f"({' '.join(str(exc.orig).split())[:300]}); other sites continue",
                        file_name=source.name,
                        rule="database_read",
                    ) from exc
                if nulls:
                    findings.append(
                        Finding(
                            rule="incremental_value_missing",
                            category="completeness",
                            severity="warning",
                            message=(
                                f"{nulls} row(s) of {source.name} have no {resolved.incremental_name}; an "
                                "incremental pull cannot see their changes. Fill the column at the site, or "
                                "run a full pull"
                            ),
                            file_name=source.name,
                            column_name=resolved.incremental_name,
                        )
                    )
                columns = list(zip(*rows, strict=True)) if rows else [() for _ in keys]
                raw = pd.DataFrame(
                    {k: _column_text(list(v)) for k, v in zip(keys, columns, strict=True)},
                    index=pd.RangeIndex(len(rows)),
                )
                files[source.name] = raw.to_csv(index=False).encode("utf-8")
                raw[SOURCE_FILE] = source.name
                raw[SOURCE_ROW] = pd.RangeIndex(1, len(rows) + 1)
                spec = spec_for_site(site, columns={entity: source.columns})
                mapped = map_frame(raw, entity=entity, spec=spec, file_name=source.name)
                findings += mapped.findings
                if mapped.extra_columns:
                    extra[entity] = mapped.extra_columns
                frames[entity] = mapped.frame
    finally:
        engine.dispose()
    return AdapterOutput(
        frames=frames, findings=findings, files=files, extracted_at=upper, extra_columns=extra
    )
