"""The exchange format as data, and the code sets shared with dbt.

Everything that validates or describes delivered data reads it from here, so a
column, a range or a code is defined once (``exchange_v1.yml`` and the dbt seed
``code_sets.csv``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

CONTRACT_FILE = Path(__file__).with_name("exchange_v1.yml")
REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_SETS_FILE = REPO_ROOT / "dbt_project" / "seeds" / "code_sets.csv"

DUCKDB_TYPES = {
    "text": "VARCHAR",
    "code": "VARCHAR",
    "int": "INTEGER",
    "decimal": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}

#: Raw-table name of a pseudonymized identifier column.
PSEUDONYM_COLUMN = {"patient": "patient_key", "operator": "operator_key"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool | str = False
    code_set: str | None = None
    min: float | str | None = None
    max: float | str | None = None
    not_future: bool = False
    identifier: str | None = None

    @property
    def raw_name(self) -> str:
        """Column name in the warehouse (identifiers become keyed pseudonyms)."""
        return PSEUDONYM_COLUMN[self.identifier] if self.identifier else self.name


@dataclass(frozen=True)
class RowRule:
    name: str
    severity: str


@dataclass(frozen=True)
class Entity:
    name: str
    file: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    required_file: bool = False
    parent: dict | None = None
    row_rules: tuple[RowRule, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required is True]

    @property
    def required_groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for c in self.columns:
            if isinstance(c.required, str):
                groups.setdefault(c.required, []).append(c.name)
        return groups


@dataclass(frozen=True)
class Contract:
    format_version: int
    entities: dict[str, Entity]

    def entity_for_file(self, file_name: str) -> Entity | None:
        for e in self.entities.values():
            if e.file == file_name:
                return e
        return None


@cache
def load_contract(path: Path = CONTRACT_FILE) -> Contract:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = spec.get("row_rules", {})
    entities = {}
    for name, e in spec["entities"].items():
        entities[name] = Entity(
            name=name,
            file=e["file"],
            key=tuple(e["key"]),
            columns=tuple(Column(**c) for c in e["columns"]),
            required_file=e.get("required_file", False),
            parent=e.get("parent"),
            row_rules=tuple(RowRule(**r) for r in rules.get(name, [])),
        )
    return Contract(format_version=spec["format_version"], entities=entities)


@cache
def load_code_sets(path: Path = CODE_SETS_FILE) -> dict[str, frozenset[str]]:
    """Code set name -> allowed codes, from the dbt seed (the one place codes live)."""
    sets: dict[str, set[str]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            sets.setdefault(row["code_set"], set()).add(row["code"])
    return {k: frozenset(v) for k, v in sets.items()}
