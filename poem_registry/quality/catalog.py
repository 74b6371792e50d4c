"""The check catalog: ``expectations/*.yml`` loaded, validated and expanded.

A delivery suite file (``expectations/delivery_<entity>.yml``) has two parts:

``derived``
    One entry per *kind* of contract-driven check (type format, required,
    code set, range, ...). Each entry carries the category, severity,
    tolerated-failure threshold and note of its kind, and is expanded here into
    one check per contract column or row rule it applies to. Columns, ranges,
    code sets and rules are never re-typed in the suite: they come from
    ``exchange_v1.yml`` and ``code_sets.csv``.
``checks``
    Hand-written checks: judgement (completeness of what the measures need,
    plausibility beyond hard ranges), each with its GX expectation and arguments.

``overrides`` (optional) changes the severity, threshold or note of an expanded
check by ``check_id``. The loader rejects unknown keys, categories, severities,
expectation types, columns and check ids, so a typo fails at load, not silently.

This module never imports Great Expectations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from poem_registry.contract import REPO_ROOT, Entity, load_code_sets, load_contract
from poem_registry.quality.rules import DERIVED_COLUMNS, ROW_RULES, check_rules_match_contract

EXPECTATIONS_DIR = REPO_ROOT / "expectations"

CATEGORIES = ("conformance", "completeness", "plausibility")
SEVERITIES = ("critical", "warning", "info")
STATUSES = ("pass", "fail", "error", "not_applicable")

#: GX expectation types a suite may use (snake_case, as GX names them in suites).
SUPPORTED_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_match_regex_by_distinct",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_distinct_values_to_contain_set",
        "expect_table_row_count_to_be_between",
    }
)

#: Expectations evaluated per row (their failures can be traced to rows; ``mostly`` applies).
ROW_LEVEL_EXPECTATIONS = frozenset(
    {
        "expect_column_values_to_match_regex",
        "expect_column_values_to_match_regex_by_distinct",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_pair_values_a_to_be_greater_than_b",
    }
)

#: Derived kinds, in the order they appear in a suite, and the column types they apply to.
DERIVED_KINDS = (
    "columns_present",
    "required",
    "type_format",
    "valid_date",
    "code_set",
    "range",
    "min_date",
    "not_future",
    "unique_key",
    "parent_exists",
    "row_rules",
)

#: Regular expressions of the exchange format's wire types (checked on the delivered strings).
TYPE_PATTERNS = {
    "int": r"^[+-]?\d{1,9}$",  # at most 9 digits: fits DuckDB INTEGER
    "decimal": r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$",
    "bool": r"^(?i:true|false)$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
    "timestamp": r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$",
}
TYPE_LABELS = {
    "int": ("a whole number", "write digits only, for example 12"),
    "decimal": ("a number", "write it with a dot as decimal separator, for example 12.5"),
    "bool": ("true or false", "write true or false"),
    "date": ("an ISO date", "write it as YYYY-MM-DD"),
    "timestamp": ("an ISO 8601 timestamp", "write it as YYYY-MM-DDTHH:MM:SS"),
}

#: Suffixes of helper columns in the frame GX validates (see ``delivery.build_validation_frame``).
RAW_SUFFIX = "__raw"
CALENDAR_SUFFIX = "__calendar_ok"
PARENT_PREFIX = "parent_exists__"
RULE_PREFIX = "rule__"
DERIVED_PREFIX = "derived__"


class CatalogError(ValueError):
    """A suite file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class CheckSpec:
    """One check of a suite, fully expanded: what GX runs and how a failure is reported."""

    check_id: str
    suite: str
    entity: str
    expectation: str
    kwargs: dict[str, Any]
    category: str
    severity: str
    threshold_percent: float = 0.0
    threshold_rows: int = 0
    note: str = ""
    #: Column reported in results and messages (a contract column; None for table-level checks).
    column: str | None = None
    #: Kind of check ("required", "range", a derived kind, "rule" or "custom"), used for messages.
    kind: str = "custom"
    #: Rule name in row failures and quarantine reports (the row rule's name, else the kind).
    rule: str = ""
    row_level: bool = True
    #: For hand-written checks: a human sentence used in row messages ("{column} {value} ...").
    message: str = ""
    fix: str = ""
    #: Whether the check is not-null-like (an empty value is a failure, not "not applicable").
    counts_missing: bool = False
    #: The column holds identifiers: its values never leave the validation (results, docs).
    identifier: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    stage: str
    entity: str | None
    checks: tuple[CheckSpec, ...]
    path: Path
    batch_max_rejected_percent: float = 100.0
    batch_note: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def check(self, check_id: str) -> CheckSpec:
        for c in self.checks:
            if c.check_id == check_id:
                return c
        raise KeyError(f"{self.name} has no check {check_id!r}")


def _require(cond: bool, path: Path, where: str, message: str) -> None:
    if not cond:
        raise CatalogError(f"{path.name}: {where}: {message}")


def _common_fields(entry: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    category = entry.get("category")
    severity = entry.get("severity")
    _require(category in CATEGORIES, path, where, f"category must be one of {CATEGORIES}, not {category!r}")
    _require(severity in SEVERITIES, path, where, f"severity must be one of {SEVERITIES}, not {severity!r}")
    threshold_percent = float(entry.get("threshold_percent", 0))
    threshold_rows = int(entry.get("threshold_rows", 0))
    _require(0 <= threshold_percent <= 100, path, where, "threshold_percent must be within 0..100")
    _require(threshold_rows >= 0, path, where, "threshold_rows must be >= 0")
    note = str(entry.get("note", "")).strip()
    _require(
        bool(note) or (threshold_percent == 0 and threshold_rows == 0),
        path,
        where,
        "a tolerated-failure threshold above 0 needs a note explaining it",
    )
    return {
        "category": category,
        "severity": severity,
        "threshold_percent": threshold_percent,
        "threshold_rows": threshold_rows,
        "note": note,
    }


def _expand_derived(kind: str, entity: Entity, suite: str, base: dict[str, Any]) -> list[CheckSpec]:
    """One derived entry -> one CheckSpec per contract column (or rule) it applies to."""
    code_sets = load_code_sets()
    specs: list[CheckSpec] = []
    identifiers = {c.name for c in entity.columns if c.identifier}

    def add(
        check_id: str, expectation: str, kwargs: dict[str, Any], column: str | None, **extra: Any
    ) -> None:
        fields = {**base, "kind": kind, "rule": kind, "identifier": column in identifiers, **extra}
        specs.append(
            CheckSpec(
                check_id=check_id,
                suite=suite,
                entity=entity.name,
                expectation=expectation,
                kwargs=kwargs,
                column=column,
                **fields,
            )
        )

    for col in entity.columns:
        typed = col.type not in ("text", "code")
        raw_column = col.name + RAW_SUFFIX if typed else col.name
        if kind == "columns_present" and col.required is True:
            add(
                f"columns_present.{col.name}",
                "expect_column_to_exist",
                {"column": col.name},
                col.name,
                row_level=False,
            )
        elif kind == "required" and col.required is True:
            add(
                f"required.{col.name}",
                "expect_column_values_to_not_be_null",
                {"column": raw_column},
                col.name,
                counts_missing=True,
            )
        elif kind == "type_format" and typed:
            add(
                f"type_format.{col.name}",
                "expect_column_values_to_match_regex_by_distinct",
                {"column": raw_column, "regex": TYPE_PATTERNS[col.type]},
                col.name,
            )
        elif kind == "valid_date" and col.type in ("date", "timestamp"):
            add(
                f"valid_date.{col.name}",
                "expect_column_values_to_be_in_set",
                {"column": col.name + CALENDAR_SUFFIX, "value_set": [True]},
                col.name,
            )
        elif kind == "code_set" and col.code_set:
            if col.code_set not in code_sets:
                raise CatalogError(
                    f"{entity.name}.{col.name}: code set {col.code_set!r} is not in code_sets.csv"
                )
            add(
                f"code_set.{col.name}",
                "expect_column_values_to_be_in_set",
                {"column": col.name, "value_set": sorted(code_sets[col.code_set])},
                col.name,
            )
        elif (
            kind == "range"
            and col.type in ("int", "decimal")
            and (col.min is not None or col.max is not None)
        ):
            add(
                f"range.{col.name}",
                "expect_column_values_to_be_between",
                {"column": col.name, "min_value": col.min, "max_value": col.max},
                col.name,
            )
        # Datetime bounds are written with a time: GX would turn a bare date into a datetime.date,
        # which pandas refuses to compare with datetime64 values.
        elif kind == "min_date" and col.type in ("date", "timestamp") and col.min is not None:
            add(
                f"min_date.{col.name}",
                "expect_column_values_to_be_between",
                {"column": col.name, "min_value": f"{col.min}T00:00:00"},
                col.name,
            )
        elif kind == "not_future" and col.not_future:
            add(
                f"not_future.{col.name}",
                "expect_column_values_to_be_between",
                {"column": col.name, "max_value": {"$PARAMETER": "today"}},
                col.name,
            )
    if kind == "unique_key":
        if len(entity.key) == 1:
            add(
                f"unique_key.{entity.key[0]}",
                "expect_column_values_to_be_unique",
                {"column": entity.key[0]},
                entity.key[0],
            )
        else:
            add(
                f"unique_key.{'+'.join(entity.key)}",
                "expect_compound_columns_to_be_unique",
                {"column_list": list(entity.key)},
                entity.key[0],
            )
    elif kind == "parent_exists" and entity.parent:
        column = entity.parent["column"]
        add(
            f"parent_exists.{column}",
            "expect_column_values_to_be_in_set",
            {"column": PARENT_PREFIX + column, "value_set": [True]},
            column,
        )
    elif kind == "row_rules":
        for rule in entity.row_rules:
            impl = ROW_RULES[rule.name]
            # The severity is the contract's (one place); the suite entry gives category and note.
            add(
                f"rule.{rule.name}",
                "expect_column_values_to_be_in_set",
                {"column": RULE_PREFIX + rule.name, "value_set": [True]},
                impl.columns[0],
                kind="rule",
                rule=rule.name,
                fix=impl.fix,
                severity=rule.severity,
            )
    return specs


def _custom_check(
    entry: dict[str, Any], entity: Entity | None, suite: str, path: Path, known_columns: set[str] | None
) -> CheckSpec:
    allowed = {
        "check_id",
        "expectation",
        "column",
        "kwargs",
        "category",
        "severity",
        "threshold_percent",
        "threshold_rows",
        "note",
        "row_level",
        "message",
        "fix",
        "report_column",
    }
    where = f"check {entry.get('check_id', '?')}"
    _require(not set(entry) - allowed, path, where, f"unknown keys {sorted(set(entry) - allowed)}")
    _require(bool(entry.get("check_id")), path, where, "check_id is required")
    expectation = entry.get("expectation")
    _require(
        expectation in SUPPORTED_EXPECTATIONS,
        path,
        where,
        f"expectation {expectation!r} is not one of {sorted(SUPPORTED_EXPECTATIONS)}",
    )
    kwargs = dict(entry.get("kwargs") or {})
    column = entry.get("column")
    gx_column = column
    report_column = entry.get("report_column", column)
    if column is not None and known_columns is not None:
        if column in DERIVED_COLUMNS:
            derived = DERIVED_COLUMNS[column]
            _require(
                entity is not None and derived.entity == entity.name,
                path,
                where,
                f"derived column {column!r} belongs to {derived.entity}",
            )
            gx_column = DERIVED_PREFIX + column
            report_column = entry.get("report_column", derived.columns[0] if derived.columns else column)
        else:
            _require(column in known_columns, path, where, f"unknown column {column!r}")
    if gx_column is not None:
        kwargs["column"] = gx_column
    row_level = bool(entry.get("row_level", expectation in ROW_LEVEL_EXPECTATIONS))
    return CheckSpec(
        check_id=str(entry["check_id"]),
        suite=suite,
        entity=entity.name if entity else "",
        expectation=expectation,
        kwargs=kwargs,
        column=report_column,
        kind="custom",
        rule=str(entry["check_id"]),
        row_level=row_level and expectation in ROW_LEVEL_EXPECTATIONS,
        message=str(entry.get("message", "")),
        fix=str(entry.get("fix", "")),
        counts_missing=expectation == "expect_column_values_to_not_be_null",
        **_common_fields(entry, path, where),
    )


def load_suite(path: Path) -> Suite:
    """Load one suite file, validate it and expand its derived entries."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    top = {"suite", "stage", "entity", "batch", "derived", "checks", "overrides", "tables", "drift", "gate"}
    _require(not set(spec) - top, path, "top level", f"unknown keys {sorted(set(spec) - top)}")
    name = spec.get("suite")
    _require(name == path.stem, path, "suite", f"suite name {name!r} must equal the file name {path.stem!r}")
    stage = spec.get("stage")
    _require(stage in ("delivery", "mart"), path, "stage", "stage must be delivery or mart")
    entity: Entity | None = None
    known_columns: set[str] | None = None
    if stage == "delivery":
        check_rules_match_contract()
        entities = load_contract().entities
        _require(spec.get("entity") in entities, path, "entity", f"unknown entity {spec.get('entity')!r}")
        entity = entities[spec["entity"]]
        known_columns = set(entity.column_names)
    checks: list[CheckSpec] = []
    for i, entry in enumerate(spec.get("derived") or []):
        where = f"derived[{i}]"
        _require(stage == "delivery", path, where, "derived entries exist only in delivery suites")
        kind = entry.get("from")
        _require(kind in DERIVED_KINDS, path, where, f"from must be one of {DERIVED_KINDS}, not {kind!r}")
        extra = set(entry) - {"from", "category", "severity", "threshold_percent", "threshold_rows", "note"}
        _require(not extra, path, where, f"unknown keys {sorted(extra)}")
        assert entity is not None
        checks += _expand_derived(kind, entity, name, _common_fields(entry, path, where))
    for entry in spec.get("checks") or []:
        checks.append(_custom_check(entry, entity, name, path, known_columns))
    ids = [c.check_id for c in checks]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    _require(not duplicates, path, "checks", f"duplicate check_id {duplicates}")
    by_id = {c.check_id: c for c in checks}
    for check_id, change in (spec.get("overrides") or {}).items():
        _require(check_id in by_id, path, f"overrides.{check_id}", "no such check")
        merged = {
            "category": by_id[check_id].category,
            "severity": by_id[check_id].severity,
            "threshold_percent": by_id[check_id].threshold_percent,
            "threshold_rows": by_id[check_id].threshold_rows,
            "note": by_id[check_id].note,
            **change,
        }
        by_id[check_id] = replace(by_id[check_id], **_common_fields(merged, path, f"overrides.{check_id}"))
    batch = spec.get("batch") or {}
    return Suite(
        name=name,
        stage=stage,
        entity=entity.name if entity else None,
        checks=tuple(by_id[i] for i in ids),
        path=path,
        batch_max_rejected_percent=float(batch.get("max_rejected_percent", 100)),
        batch_note=str(batch.get("note", "")).strip(),
        config={k: spec[k] for k in ("tables", "drift", "gate") if k in spec},
    )


@cache
def delivery_suite(entity: str, directory: Path = EXPECTATIONS_DIR) -> Suite:
    """The delivery suite of an entity (``expectations/delivery_<entity>.yml``), cached per process."""
    path = Path(directory) / f"delivery_{entity}.yml"
    if not path.exists():
        raise CatalogError(f"no delivery suite for {entity!r}: {path} does not exist")
    suite = load_suite(path)
    if suite.entity != entity:
        raise CatalogError(f"{path.name}: entity is {suite.entity!r}, expected {entity!r}")
    return suite


def load_all(directory: Path = EXPECTATIONS_DIR) -> dict[str, Suite]:
    """Every suite in the folder, validated (used by tests and ``make lint``-style checks)."""
    return {p.stem: load_suite(p) for p in sorted(Path(directory).glob("*.yml"))}


def catalog_table(directory: Path = EXPECTATIONS_DIR) -> str:
    """The expanded catalog as a Markdown table (``python -m poem_registry.quality.catalog``)."""
    lines = [
        "| suite | check_id | expectation | category | severity | tolerated % | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite in load_all(directory).values():
        for c in suite.checks:
            note = c.note.replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {suite.name} | {c.check_id} | {c.expectation} | {c.category} | {c.severity} "
                f"| {c.threshold_percent:g} | {note} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(catalog_table())
