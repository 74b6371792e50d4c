"""Incremental statistics: reuse the previous run's rows of units whose inputs are unchanged.

A *unit* is the grain at which a statistic depends on its own rows only: an operator for
``learning_curve`` (kind ``learning_curve``), a site (or ``ALL``) for ``durability`` and
``km_curve`` (kind ``durability``). For each unit the caller hashes every input its rows
depend on (the unit's input rows in a fixed order, plus anything registry-wide they use,
such as the case-mix predicted risks and the RA-CUSUM limit) together with a *salt*:
the statistics configuration, the source code of :mod:`poem_registry.analytics` and
:mod:`poem_registry.stats` and the versions of the numeric libraries. Any change of code,
seed parameters or library versions therefore recomputes everything.

The fingerprints are written to ``analytics._fingerprints`` (``unit_kind``, ``unit``,
``fingerprint``, ``row_count``) in the same transaction as the tables. On the next run a
unit is reused only when its fingerprint is unchanged *and* the previous tables still
hold exactly ``row_count`` rows for it; its rows are then read back from the warehouse
instead of being computed. Registry-wide tables (funnels, pooling, O/E, parameters) are
always recomputed. ``full=True`` ignores the stored fingerprints (a full refresh). The
result equals a full recompute because every input of a reused unit is in its hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .config import StatisticsConfig
from .marts import table_columns

FINGERPRINT_TABLE = "_fingerprints"
FINGERPRINT_COLUMNS: dict[str, str] = {
    "unit_kind": "varchar",
    "unit": "varchar",
    "fingerprint": "varchar",
    "row_count": "bigint",
}
_LIBRARIES = ("numpy", "pandas", "scipy", "statsmodels", "duckdb")


@cache
def code_fingerprint() -> str:
    """Hash of the statistics source code and the numeric libraries' versions."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for folder in ("analytics", "stats"):
        for path in sorted((package / folder).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for lib in _LIBRARIES:
        try:
            digest.update(f"{lib}={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{lib}=absent".encode())
    return digest.hexdigest()


def config_fingerprint(cfg: StatisticsConfig) -> str:
    """Hash of every typed seed value (the provenance columns do not change a result)."""
    return hashlib.sha256(repr(dataclasses.replace(cfg, parameters=())).encode()).hexdigest()


def unit_fingerprints(frame: pd.DataFrame, unit: str, columns: list[str], salt: str) -> pd.Series:
    """One SHA-256 per distinct ``frame[unit]`` over the unit's rows of ``columns``, in frame order.

    Row hashes are :func:`pandas.util.hash_pandas_object` (fixed key, deterministic); the
    caller orders the rows deterministically.
    """
    if frame.empty:
        return pd.Series(dtype=object)
    rows = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    codes, uniques = pd.factorize(frame[unit].astype(str), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    prefix = salt.encode() + b"\0" + ",".join(columns).encode() + b"\0"
    out = {
        str(key): hashlib.sha256(prefix + str(key).encode() + b"\0" + chunk.tobytes()).hexdigest()
        for key, chunk in zip(uniques, np.split(rows[order], bounds), strict=True)
    }
    return pd.Series(out, dtype=object)


@dataclass(frozen=True)
class UnitTable:
    """An analytics table whose rows belong to units (``unit_column``) of one kind."""

    name: str
    columns: dict[str, str]
    unit_column: str


class Incremental:
    """The previous run's fingerprints and rows (read-only) and this run's fingerprints."""

    def __init__(self, con: duckdb.DuckDBPyConnection, schema: str, salt: str, full: bool = False):
        self.con = con
        self.schema = schema
        self.salt = salt
        self.full = full
        self.stored: dict[tuple[str, str], tuple[str, int]] = {}
        self._new: list[pd.DataFrame] = []
        self.reused: dict[str, int] = {}
        self.computed: dict[str, int] = {}
        if not full and table_columns(con, schema, FINGERPRINT_TABLE) == [
            *FINGERPRINT_COLUMNS,
            "as_of",
            "computed_at",
        ]:
            rows = con.execute(
                f"select unit_kind, unit, fingerprint, row_count from {schema}.{FINGERPRINT_TABLE}"
            ).fetchall()
            self.stored = {(k, u): (f, int(n)) for k, u, f, n in rows}

    def fingerprints(
        self, kind: str, frame: pd.DataFrame, unit: str, columns: list[str], extra: str = ""
    ) -> pd.Series:
        """Fingerprints of ``kind``'s units (see :func:`unit_fingerprints`); ``extra``: registry-wide inputs."""
        return unit_fingerprints(frame, unit, columns, f"{self.salt}\0{kind}\0{extra}")

    def assemble(
        self,
        kind: str,
        fingerprints: pd.Series,
        tables: Iterable[UnitTable],
        compute: Callable[[list[str]], dict[str, pd.DataFrame]],
    ) -> dict[str, pd.DataFrame]:
        """Rows of ``tables`` for every unit of ``fingerprints``: stored rows where reusable, else ``compute(units)``."""
        tables = list(tables)
        reused, stored_rows = self._reusable(kind, fingerprints, tables)
        todo = [str(u) for u in fingerprints.index if u not in reused]
        fresh = compute(todo) if todo else {}
        out: dict[str, pd.DataFrame] = {}
        counts = pd.Series(0, index=fingerprints.index.astype(str), dtype="int64")
        for t in tables:
            parts = [f for f in (fresh.get(t.name), stored_rows.get(t.name)) if f is not None and len(f)]
            df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(t.columns))
            out[t.name] = df.reindex(columns=list(t.columns))
            counts = counts.add(_count_units(out[t.name], t.unit_column), fill_value=0)
        self._new.append(
            pd.DataFrame(
                {
                    "unit_kind": kind,
                    "unit": counts.index,
                    "fingerprint": fingerprints.to_numpy(),
                    "row_count": counts.astype("int64").to_numpy(),
                }
            )
        )
        self.reused[kind] = len(reused)
        self.computed[kind] = len(todo)
        return out

    def _reusable(
        self, kind: str, fingerprints: pd.Series, tables: list[UnitTable]
    ) -> tuple[set[str], dict[str, pd.DataFrame]]:
        """Units whose stored fingerprint matches and whose stored rows are all there, and those rows."""
        same = [str(u) for u, f in fingerprints.items() if self.stored.get((kind, str(u)), ("", 0))[0] == f]
        if not same or not all(self._has_table(t) for t in tables):
            return set(), {}
        self.con.register("_incremental_units", pd.DataFrame({"unit": same}))
        try:
            rows = {
                t.name: self.con.execute(
                    f"select {_column_list(t.columns)} from {self.schema}.{t.name} "
                    f'where cast("{t.unit_column}" as varchar) in (select unit from _incremental_units)'
                ).df()
                for t in tables
            }
        finally:
            self.con.unregister("_incremental_units")
        found = pd.Series(0, index=same, dtype="int64")
        for t in tables:
            found = found.add(_count_units(rows[t.name], t.unit_column), fill_value=0)
        complete = {u for u in same if found[u] == self.stored[(kind, u)][1]}
        return complete, {
            t.name: rows[t.name][rows[t.name][t.unit_column].astype(str).isin(complete)] for t in tables
        }

    def _has_table(self, t: UnitTable) -> bool:
        return set(t.columns) <= set(table_columns(self.con, self.schema, t.name))

    def fingerprint_frame(self) -> pd.DataFrame:
        """This run's fingerprints (the ``analytics._fingerprints`` rows)."""
        if not self._new:
            return pd.DataFrame(columns=list(FINGERPRINT_COLUMNS))
        return pd.concat(self._new, ignore_index=True)


def _count_units(df: pd.DataFrame, unit_column: str) -> pd.Series:
    return df[unit_column].astype(str).value_counts()


def _column_list(columns: Iterable[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)
