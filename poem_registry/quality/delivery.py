"""Delivery validation: one entity file of one batch, checked before it is loaded.

:func:`validate_delivery` takes the adapter's output for one entity (exchange
column names, values as strings), casts it to typed columns, runs the entity's
GX suite (``expectations/delivery_<entity>.yml``) and returns per-check results
(OHDSI DQD style), one row per offending row and check with a message that says
file, row, column, rule and fix, the rows to reject, and a batch-level error
when the file as a whole cannot be trusted.

Identifier columns (``identifier:`` in the contract) arrive in clear text; their
values never appear in results, examples, messages or row failures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from poem_registry.contract import Column, Entity, load_code_sets, load_contract
from poem_registry.quality.catalog import (
    CALENDAR_SUFFIX,
    DERIVED_PREFIX,
    PARENT_PREFIX,
    RAW_SUFFIX,
    ROW_LEVEL_EXPECTATIONS,
    RULE_PREFIX,
    TYPE_LABELS,
    TYPE_PATTERNS,
    CheckSpec,
    Suite,
    delivery_suite,
)
from poem_registry.quality.results import CheckResult
from poem_registry.quality.rules import DERIVED_COLUMNS, ROW_RULES, RuleContext, fmt

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"
ROW_FAILURE_COLUMNS = [
    "source_file", "source_row", "column", "check_id", "rule", "severity", "category", "message", "value",
]  # fmt: skip
MAX_EXAMPLES = 5
WITHHELD = "(identifier withheld)"

#: DuckDB-compatible pandas dtypes of the typed frame, by contract type.
TYPED_DTYPES = {
    "text": "string",
    "code": "string",
    "int": "Int64",
    "decimal": "Float64",
    "bool": "boolean",
    "date": "datetime64[us]",
    "timestamp": "datetime64[us]",
}
# GX's vectorised "between" needs datetime64[ns]; dates outside its range are clipped for
# checking only (they still fail min_date / not_future), the typed frame keeps them.
_NS_MIN = pd.Timestamp("1678-01-01")
_NS_MAX = pd.Timestamp("2261-12-31")


@dataclass
class DeliveryValidation:
    """Everything ingest needs to load, hold or quarantine one entity file."""

    entity: str
    site_id: str
    extract_id: str
    #: Exchange columns cast to nullable dtypes (invalid values -> NA) plus lineage columns.
    typed: pd.DataFrame
    checks: list[CheckResult]
    #: One row per (offending row, check): see ROW_FAILURE_COLUMNS.
    row_failures: pd.DataFrame
    #: True for rows failing any critical row-level check (aligned to the input frame).
    rejected_mask: pd.Series
    #: A structural failure that rejects the whole batch, in words that say what to fix.
    batch_error: str | None = None
    #: With a partition column: partition -> structural failure of that partition (batch).
    batch_errors: dict[str, str] = field(default_factory=dict)
    #: The GX ExpectationSuiteValidationResults, one per chunk of checks (for Data Docs).
    gx_results: list[Any] = field(default_factory=list, repr=False)
    suite_name: str = ""

    @property
    def rows_rejected(self) -> int:
        return int(self.rejected_mask.sum())

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]


# -- casting ------------------------------------------------------------------------
#
# Delivered columns repeat their values heavily (dates, scores, codes), and pandas
# string operations loop in Python, so every column is factorized once and all the
# string work (strip, format check, parse) happens on its distinct values; the
# answers are then broadcast to the rows with a take.


@dataclass(frozen=True)
class CastColumn:
    """One delivered column, worked out per distinct value."""

    column: Column
    #: Row -> index into the distinct values (-1 = missing).
    codes: np.ndarray
    #: Distinct values stripped of blanks (None where empty).
    clean: np.ndarray
    #: Distinct value matches the wire format of its type (always True for text/code).
    conforms: np.ndarray
    #: Distinct values cast to the typed dtype (NA where not conforming or unparseable).
    typed: pd.Series

    def rows(self, values: np.ndarray, fill: Any) -> np.ndarray:
        """Broadcast per-distinct ``values`` to the rows (``fill`` where the cell was missing)."""
        return np.append(values, np.array([fill], dtype=values.dtype))[self.codes]

    def typed_rows(self, index: pd.Index) -> pd.Series:
        return pd.Series(
            self.typed.array.take(self.codes, allow_fill=True), index=index, name=self.column.name
        )

    def raw_rows(self) -> np.ndarray:
        """The delivered strings (stripped), None where empty, as an object array."""
        return self.rows(self.clean, None)


def _strip(value: object) -> str | None:
    text = (value if isinstance(value, str) else str(value)).strip()
    return text or None


def cast_values(clean: pd.Series, col: Column) -> tuple[np.ndarray, pd.Series]:
    """(conforms, typed) for stripped strings: values not in the wire format of the type become NA."""
    if col.type in ("text", "code"):
        return np.ones(len(clean), dtype=bool), clean.astype("string")
    conforms = clean.str.contains(TYPE_PATTERNS[col.type]).fillna(False).to_numpy(dtype=bool)
    valid = clean.where(conforms)
    if col.type == "int":
        typed = pd.to_numeric(valid, errors="coerce").astype("Int64")
    elif col.type == "decimal":
        numbers = pd.to_numeric(valid, errors="coerce").astype("Float64")
        typed = numbers.mask(np.isinf(numbers.fillna(0).to_numpy(dtype=float)))
    elif col.type == "bool":
        typed = valid.str.lower().map({"true": True, "false": False}).astype("boolean")
    elif col.type == "date":
        typed = pd.to_datetime(valid, format="%Y-%m-%d", errors="coerce").astype("datetime64[us]")
    elif col.type == "timestamp":
        stamps = pd.to_datetime(valid, format="ISO8601", errors="coerce", utc=True)
        typed = stamps.dt.tz_convert(None).astype("datetime64[us]")
    else:
        raise ValueError(f"unknown contract type {col.type!r} of {col.name}")
    return conforms, typed


def cast_column(values: pd.Series | None, col: Column, n_rows: int) -> CastColumn:
    if values is None:
        codes = np.full(n_rows, -1, dtype=np.intp)
        uniques: np.ndarray = np.array([], dtype=object)
    else:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    clean = np.array([_strip(u) for u in uniques], dtype=object)
    conforms, typed = cast_values(pd.Series(clean, dtype=object), col)
    return CastColumn(col, codes, clean, conforms, typed.reset_index(drop=True))


def cast_frame(frame: pd.DataFrame, entity: Entity) -> tuple[pd.DataFrame, dict[str, CastColumn]]:
    """Typed frame (all contract columns, missing ones NA, plus ``_`` lineage columns) and the casts."""
    casts = {
        col.name: cast_column(frame[col.name] if col.name in frame.columns else None, col, len(frame))
        for col in entity.columns
    }
    out = pd.DataFrame({name: c.typed_rows(frame.index) for name, c in casts.items()}, index=frame.index)
    for extra in frame.columns:
        if extra.startswith("_"):
            out[extra] = frame[extra]
    return out, casts


# -- the frame GX validates -------------------------------------------------------------


def _gx_object(values: pd.Series) -> np.ndarray:
    """Object array with None for missing values (GX's in-set/regex/not-null are vectorised on it)."""
    arr = values.astype(object).to_numpy(copy=True)
    arr[pd.isna(values).to_numpy()] = None
    return arr


def _gx_column(cast: CastColumn) -> np.ndarray:
    """The typed column in a dtype GX checks vectorised (float64, datetime64[ns], object)."""
    col_type = cast.column.type
    if col_type in ("text", "code"):
        return cast.raw_rows()
    if col_type in ("int", "decimal"):
        return cast.rows(cast.typed.astype("Float64").to_numpy(dtype="float64", na_value=np.nan), np.nan)
    if col_type in ("date", "timestamp"):
        stamps = cast.typed.clip(_NS_MIN, _NS_MAX).astype("datetime64[ns]").to_numpy()
        return cast.rows(stamps, np.datetime64("NaT", "ns"))
    return cast.rows(_gx_object(cast.typed), None)


def build_validation_frame(
    entity: Entity,
    frame: pd.DataFrame,
    typed: pd.DataFrame,
    casts: dict[str, CastColumn],
    ctx: RuleContext,
    known_parent_ids: set[str] | None,
) -> pd.DataFrame:
    """The columns the suite's expectations refer to (see the prefixes in catalog.py), RangeIndex.

    A required column the site did not send is left out, so ``columns_present``
    fails and the checks on it are reported as errors instead of as empty values.
    """
    cols: dict[str, Any] = {}
    for col in entity.columns:
        if col.required is True and col.name not in frame.columns:
            continue
        cast = casts[col.name]
        cols[col.name] = _gx_column(cast)
        if col.type not in ("text", "code"):
            cols[col.name + RAW_SUFFIX] = cast.raw_rows()
            if col.type in ("date", "timestamp"):
                # Only values in the right format are judged here (the rest fail type_format).
                calendar_ok = np.where(cast.conforms, cast.typed.notna().to_numpy(), None).astype(object)
                cols[col.name + CALENDAR_SUFFIX] = cast.rows(calendar_ok, None)
    if entity.parent:
        pcol = entity.parent["column"]
        ids = typed[pcol]
        if known_parent_ids is None and not ctx.parent_dates:
            exists = pd.Series(pd.NA, index=typed.index, dtype="boolean")
        else:
            known = set(known_parent_ids or ()) | set(ctx.parent_dates or ())
            exists = ids.isin(known).astype("boolean").mask(ids.isna())
        cols[PARENT_PREFIX + pcol] = _gx_object(exists)
    for rule in entity.row_rules:
        impl = ROW_RULES[rule.name]
        if impl.needs_parent_dates and not ctx.parent_dates:
            result = pd.Series(pd.NA, index=typed.index, dtype="boolean")
        else:
            result = impl.check(typed, ctx)
        cols[RULE_PREFIX + rule.name] = _gx_object(result)
    for derived in DERIVED_COLUMNS.values():
        if derived.entity == entity.name:
            cols[DERIVED_PREFIX + derived.name] = _gx_object(derived.compute(typed, ctx))
    return pd.DataFrame(cols, index=pd.RangeIndex(len(typed)))


# -- results --------------------------------------------------------------------------


def _gx_columns_of(spec: CheckSpec) -> list[str]:
    kwargs = spec.kwargs
    if "column_list" in kwargs:
        return list(kwargs["column_list"])
    return [c for c in (kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")) if c]


def status_of(spec: CheckSpec, out: Any, n_rows: int) -> tuple[str, str]:
    """DQD status of a check from GX's outcome, applying the check's tolerated-failure threshold.

    A check fails when its failing share exceeds ``threshold_percent`` AND its failing
    rows exceed ``threshold_rows``; a check with nothing to evaluate is not_applicable.
    """
    if out.exception:
        return "error", f"the check could not run: {out.exception}"
    if spec.expectation == "expect_column_to_exist":
        return ("pass", "") if out.success else ("fail", f"column {spec.column} is missing from the file")
    if n_rows == 0:
        return "not_applicable", "the table has no rows"
    if spec.expectation not in ROW_LEVEL_EXPECTATIONS:
        return ("pass", "") if out.success else ("fail", f"observed {out.observed_value}")
    evaluated = (out.element_count or 0) - (0 if spec.counts_missing else (out.missing_count or 0))
    if evaluated <= 0:
        return "not_applicable", "no value to check (the column or rule does not apply to any row)"
    unexpected = out.unexpected_count or 0
    percent = out.unexpected_percent or 0.0
    if unexpected == 0 or percent <= spec.threshold_percent or unexpected <= spec.threshold_rows:
        return "pass", ""
    return "fail", f"{unexpected} of {evaluated} values fail ({percent:.2f}%)"


def check_result(spec: CheckSpec, status: str, **values: Any) -> CheckResult:
    return CheckResult(
        check_id=spec.check_id,
        entity=spec.entity,
        column=spec.column,
        category=spec.category,
        severity=spec.severity,
        status=status,
        threshold_percent=spec.threshold_percent,
        threshold_rows=spec.threshold_rows,
        note=spec.note,
        suite=spec.suite,
        expectation=spec.expectation,
        **values,
    )


def _shown(value: object) -> str | None:
    return None if value is None or pd.isna(value) else fmt(value)


class _Messages:
    """Row messages and example values for one file; identifier values are never shown."""

    def __init__(self, entity: Entity, typed: pd.DataFrame, casts: dict[str, CastColumn], ctx: RuleContext):
        self.entity = entity
        self.typed = typed
        self.casts = casts
        self.ctx = ctx
        self.code_sets = load_code_sets()
        self.identifiers = {c.name for c in entity.columns if c.identifier}

    def _values(self, spec: CheckSpec, rows: pd.Index) -> list[str | None]:
        column = spec.column
        if column is None or column in self.identifiers or spec.kind == "required":
            return [None] * len(rows)
        if spec.kind in ("type_format", "valid_date"):
            positions = self.typed.index.get_indexer(rows)
            return [_shown(v) for v in self.casts[column].raw_rows()[positions]]
        if spec.kind == "custom" and column not in self.typed.columns:
            return [None] * len(rows)
        return [_shown(v) for v in self.typed.loc[rows, column]]

    def body_and_fix(
        self, spec: CheckSpec, rows: pd.Index, values: list[str | None]
    ) -> tuple[list[str], str]:
        col = spec.column or ""
        shown = [WITHHELD if col in self.identifiers else v for v in values]
        contract_col = self.entity.column(col) if col in self.entity.column_names else None
        kind = spec.kind
        if kind == "rule":
            impl = ROW_RULES[spec.rule]
            return impl.explain(self.typed.loc[rows], self.ctx), impl.fix
        if kind == "required":
            return [f"{col} is empty but required"] * len(rows), "fill it in"
        if kind == "type_format" and contract_col is not None:
            label, fix = TYPE_LABELS[contract_col.type]
            return [f"{col} '{v}' is not {label}" for v in shown], fix
        if kind == "valid_date":
            return [f"{col} '{v}' is not a real calendar date" for v in shown], "correct the day or the month"
        if kind == "code_set" and contract_col is not None and contract_col.code_set:
            codes = ", ".join(sorted(self.code_sets[contract_col.code_set]))
            return [
                f"{col} '{v}' is not a code of {contract_col.code_set}" for v in shown
            ], f"use one of {codes}"
        if kind == "range" and contract_col is not None:
            bounds = f"{fmt(contract_col.min) if contract_col.min is not None else ''}..{fmt(contract_col.max) if contract_col.max is not None else ''}"
            return [f"{col} {v} is outside {bounds}" for v in shown], "check the value and its unit"
        if kind == "min_date" and contract_col is not None:
            return [f"{col} {v} is before {contract_col.min}" for v in shown], "check the year"
        if kind == "not_future":
            return [f"{col} {v} is in the future (after {self.ctx.today.isoformat()})" for v in shown], (
                "check the date"
            )
        if kind == "unique_key":
            return [f"{col} '{v}' occurs on more than one row of the file" for v in shown], (
                f"send one row per {col}; a correction replaces the row in a later extract"
            )
        if kind == "parent_exists":
            return [f"{col} '{v}' matches no procedure of this site" for v in shown], (
                "the row is held until its procedure arrives; correct the procedure_id if it is wrong"
            )
        text = spec.message or f"fails check {spec.check_id}"
        return [f"{col} {v} {text}" for v in shown], spec.fix or "check the value"


# -- entry points ----------------------------------------------------------------------


def _row_failures(
    spec: CheckSpec,
    rows: pd.Index,
    typed: pd.DataFrame,
    messages: _Messages,
    partition_column: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    values = messages._values(spec, rows)
    bodies, fix = messages.body_and_fix(spec, rows, values)
    files = typed.loc[rows, SOURCE_FILE].astype(str).tolist()
    source_rows = typed.loc[rows, SOURCE_ROW].tolist()
    text = [
        f"row {r} of {f}: {b} (rule {spec.rule}); {fix}"
        for r, f, b in zip(source_rows, files, bodies, strict=True)
    ]
    failures = pd.DataFrame(
        {
            "source_file": files,
            "source_row": source_rows,
            "column": spec.column,
            "check_id": spec.check_id,
            "rule": spec.rule,
            "severity": spec.severity,
            "category": spec.category,
            "message": text,
            "value": values,
        }
    )
    if partition_column:
        failures["partition"] = typed.loc[rows, partition_column].astype(str).to_numpy()
    examples = bodies if spec.kind == "rule" else [v for v in values if v is not None]
    return failures, list(dict.fromkeys(examples))[:MAX_EXAMPLES]


@dataclass
class PreparedDelivery:
    """One entity file cast and turned into the frame its GX suite checks, ready for a GX pass."""

    entity: Entity
    suite: Suite
    site_id: str
    extract_id: str
    frame: pd.DataFrame
    typed: pd.DataFrame
    casts: dict[str, CastColumn]
    ctx: RuleContext
    gx_frame: pd.DataFrame
    runnable: list[CheckSpec]
    parameters: dict[str, Any]
    partition_column: str | None = None


def prepare_delivery(
    entity: str,
    frame: pd.DataFrame,
    *,
    site_id: str,
    extract_id: str,
    known_parent_ids: set[str] | None = None,
    parent_dates: Mapping[str, object] | None = None,
    today: date | None = None,
    partition_column: str | None = None,
) -> PreparedDelivery:
    """Everything of :func:`validate_delivery` before the GX pass (same arguments)."""
    contract = load_contract()
    if entity not in contract.entities:
        raise ValueError(f"unknown entity {entity!r}; expected one of {sorted(contract.entities)}")
    spec = contract.entities[entity]
    suite = delivery_suite(entity)
    today = today or date.today()
    frame = frame.copy(deep=False)
    if SOURCE_FILE not in frame.columns:
        frame[SOURCE_FILE] = spec.file
    if SOURCE_ROW not in frame.columns:
        frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)

    ctx = RuleContext(today=today, parent_dates=dict(parent_dates) if parent_dates else None)
    typed, casts = cast_frame(frame, spec)
    gx_frame = build_validation_frame(spec, frame, typed, casts, ctx, known_parent_ids)
    checks_to_run = list(suite.checks)
    if partition_column:
        gx_frame[partition_column] = frame[partition_column].astype(str).to_numpy()
        checks_to_run = [
            dataclasses.replace(
                c,
                expectation="expect_compound_columns_to_be_unique",
                kwargs={"column_list": [*spec.key, partition_column]},
            )
            if c.kind == "unique_key"
            else c
            for c in checks_to_run
        ]
    runnable = [c for c in checks_to_run if all(col in gx_frame.columns for col in _gx_columns_of(c))]
    runnable = [c for c in runnable if c.expectation != "expect_column_to_exist"] + [
        c for c in checks_to_run if c.expectation == "expect_column_to_exist"
    ]
    return PreparedDelivery(
        entity=spec, suite=suite, site_id=site_id, extract_id=extract_id, frame=frame, typed=typed,
        casts=casts, ctx=ctx, gx_frame=gx_frame, runnable=runnable,
        parameters={"today": f"{today.isoformat()}T23:59:59"}, partition_column=partition_column,
    )


def validate_delivery(
    entity: str,
    frame: pd.DataFrame,
    *,
    site_id: str,
    extract_id: str,
    known_parent_ids: set[str] | None = None,
    parent_dates: Mapping[str, object] | None = None,
    today: date | None = None,
    partition_column: str | None = None,
) -> DeliveryValidation:
    """Validate one delivered entity file (values as strings) against its GX suite.

    ``partition_column``: validate several files of one site at once (one GX pass
    instead of one per file: GX's cost is mostly per expectation and call, not per
    row). Keys must then be unique within each partition, row failures carry the
    partition, and the share-of-rows rule is applied per partition
    (``DeliveryValidation.batch_errors``).

    ``known_parent_ids``: procedure_ids known at the site (this delivery and earlier
    ones); None means unknown, and the parent check is then not applicable.
    ``parent_dates``: procedure_id -> procedure date, for the rules comparing a
    child's date with its procedure's (the rule is not applicable to rows whose
    procedure date is unknown). ``today`` anchors the not-in-the-future checks.
    """
    prepared = prepare_delivery(
        entity, frame, site_id=site_id, extract_id=extract_id, known_parent_ids=known_parent_ids,
        parent_dates=parent_dates, today=today, partition_column=partition_column,
    )
    return validate_deliveries([prepared])[0]


def finish_delivery(
    prepared: PreparedDelivery, outcomes: Mapping[str, Any], gx_results: list[Any]
) -> DeliveryValidation:
    """Turn GX's outcomes for one prepared delivery into results, row failures and rejections."""
    spec, suite, frame, typed = prepared.entity, prepared.suite, prepared.frame, prepared.typed
    partition_column = prepared.partition_column
    messages = _Messages(spec, typed, prepared.casts, prepared.ctx)
    checks: list[CheckResult] = []
    failures: list[pd.DataFrame] = []
    rejected = np.zeros(len(frame), dtype=bool)
    for check in suite.checks:
        out = outcomes.get(check.check_id)
        if out is None:
            missing = ", ".join(c for c in _gx_columns_of(check) if c not in prepared.gx_frame.columns)
            checks.append(
                check_result(check, "error", message=f"not run: required column {missing} is missing")
            )
            continue
        status, message = status_of(check, out, len(frame))
        examples: list[str] = []
        if check.row_level and out.unexpected_index_list and status != "error":
            positions = np.asarray(out.unexpected_index_list, dtype=int)
            rows = typed.index[positions]
            failed_rows, examples = _row_failures(check, rows, typed, messages, partition_column)
            failures.append(failed_rows)
            if check.severity == "critical":
                rejected[positions] = True
        checks.append(
            check_result(
                check,
                status,
                element_count=out.element_count if out.element_count is not None else len(frame),
                unexpected_count=out.unexpected_count,
                unexpected_percent=out.unexpected_percent,
                examples=examples,
                message=message,
            )
        )
    row_failures = (
        pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=ROW_FAILURE_COLUMNS)
    )
    rejected_mask = pd.Series(rejected, index=frame.index, name="rejected")
    batch_errors: dict[str, str] = {}
    if partition_column:
        parts = frame[partition_column].astype(str)
        for part in parts.unique():
            in_part = (parts == part).to_numpy()
            part_failures = row_failures[row_failures["partition"] == part] if len(row_failures) else row_failures
            error = _batch_error(spec, suite, [], part_failures, rejected_mask[in_part], prepared.site_id)
            if error:
                batch_errors[part] = error
    return DeliveryValidation(
        entity=spec.name,
        site_id=prepared.site_id,
        extract_id=prepared.extract_id,
        typed=typed,
        checks=checks,
        row_failures=row_failures,
        rejected_mask=rejected_mask,
        batch_error=None if partition_column else _batch_error(
            spec, suite, checks, row_failures, rejected_mask, prepared.site_id
        ),
        batch_errors=batch_errors,
        gx_results=gx_results,
        suite_name=suite.name,
    )


#: Most rows one stacked GX pass takes: GX copies the frame per null filter, so memory grows with it.
MAX_ROWS_PER_PASS = 1_000_000


def validate_deliveries(
    prepared: list[PreparedDelivery], *, max_rows_per_pass: int = MAX_ROWS_PER_PASS
) -> list[DeliveryValidation]:
    """Validate prepared files of one entity (e.g. of many sites) in as few GX passes as possible.

    GX's cost is mostly per expectation and pass, not per row, so files whose
    validation frames have the same columns and checks are stacked and checked in
    one pass, and the outcome is split back per file (:func:`_gx.outcome_for_rows`);
    each file gets exactly what its own pass would give. Files that cannot be
    stacked (other columns, a check that is not row-local) get their own pass.
    Results are in the order of ``prepared``.
    """
    from poem_registry.quality._gx import outcome_for_rows, splits_by_rows, validate_frame

    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prepared):
        stackable = p.partition_column is not None and all(
            splits_by_rows(c, p.partition_column) for c in p.runnable
        )
        key = (
            (p.suite.name, tuple(p.gx_frame.columns), tuple(c.check_id for c in p.runnable),
             tuple(repr(c.kwargs) for c in p.runnable), tuple(sorted(p.parameters.items())))
            if stackable else ("alone", i)
        )
        groups.setdefault(key, []).append(i)
    results: dict[int, DeliveryValidation] = {}
    for members in groups.values():
        for batch in _row_batches(members, [len(prepared[i].gx_frame) for i in members], max_rows_per_pass):
            if len(batch) == 1:
                p = prepared[batch[0]]
                outcomes, gx_results = validate_frame(p.gx_frame, p.suite.name, p.runnable, p.parameters)
                results[batch[0]] = finish_delivery(p, outcomes, gx_results)
                continue
            first = prepared[batch[0]]
            stacked = pd.concat([prepared[i].gx_frame for i in batch], ignore_index=True)
            # Partition values are unique per file, not across files: qualify them by file.
            file_number = np.repeat(np.arange(len(batch)), [len(prepared[i].gx_frame) for i in batch])
            part = first.partition_column
            stacked[part] = pd.Series(file_number).astype(str).to_numpy() + "\x1f" + stacked[part].to_numpy()
            outcomes, gx_results = validate_frame(stacked, first.suite.name, first.runnable, first.parameters)
            specs = {c.check_id: c for c in first.runnable}
            start = 0
            for i in batch:
                p = prepared[i]
                rows = p.gx_frame
                split = {cid: outcome_for_rows(specs[cid], out, rows, start) for cid, out in outcomes.items()}
                results[i] = finish_delivery(p, split, gx_results)
                start += len(rows)
    return [results[i] for i in range(len(prepared))]


def _row_batches(members: list[int], sizes: list[int], max_rows: int) -> list[list[int]]:
    """Consecutive runs of ``members`` holding at most ``max_rows`` rows (a larger file goes alone)."""
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for member, size in zip(members, sizes, strict=True):
        if current and total + size > max_rows:
            batches.append(current)
            current, total = [], 0
        current.append(member)
        total += size
    if current:
        batches.append(current)
    return batches


def _batch_error(
    entity: Entity,
    suite: Suite,
    checks: list[CheckResult],
    row_failures: pd.DataFrame,
    rejected: pd.Series,
    site_id: str,
) -> str | None:
    missing = [c.column for c in checks if c.check_id.startswith("columns_present.") and c.status == "fail"]
    if missing:
        return (
            f"{entity.file} lacks the required column(s) {', '.join(str(m) for m in missing)}: add them to the "
            f"export (or map them in sites/{site_id}.yml) and deliver the extract again"
        )
    broken = [
        c
        for c in checks
        if c.severity == "critical" and c.status == "error" and not c.message.startswith("not run")
    ]
    if broken:
        return (
            f"{entity.file}: the critical check(s) {', '.join(c.check_id for c in broken)} could not run "
            f"({broken[0].message}); the batch is held until they can"
        )
    n, total = int(rejected.sum()), len(rejected)
    if total and n and 100 * n / total > suite.batch_max_rejected_percent:
        critical = row_failures[row_failures["severity"] == "critical"]
        top = critical.drop_duplicates(["source_row", "rule"])["rule"].value_counts().head(3)
        common = ", ".join(f"{rule} ({count})" for rule, count in top.items())
        return (
            f"{n} of {total} rows ({100 * n / total:.1f}%) of {entity.file} break a critical rule, more than "
            f"the {suite.batch_max_rejected_percent:g}% a batch may lose; most frequent: {common}. The export or "
            f"the site mapping is probably wrong: fix it and deliver the extract again"
        )
    return None


def not_applicable_results(entity: str, site_id: str, extract_id: str) -> list[CheckResult]:
    """Results for an entity file the site did not send: every check not_applicable, never pass."""
    suite = delivery_suite(entity)
    file = load_contract().entities[entity].file
    message = f"site {site_id} sent no {file} in extract {extract_id}"
    return [check_result(c, "not_applicable", element_count=0, message=message) for c in suite.checks]
