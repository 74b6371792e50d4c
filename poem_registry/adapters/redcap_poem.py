"""Turning a POEM REDCap project export into the exchange format, driven by a site mapping.

A site's REDCap project is its own design: its field names, its choice codes,
its events. The site file (``sites/<site_id>.yml``, key ``redcap:``) says how
that design maps onto the exchange format, so a new REDCap site is a new YAML
file, not new code. This module only *maps*: ranges and code sets are checked
once, for all sites, by the shared validator. What cannot be mapped (unknown
columns, events, instruments, codes) is reported as a finding with file, row
and column, never dropped silently.

Mapping schema (all REDCap names are unique variable/event/instrument names)::

    record_id_field: record_id          # optional; default: first column of the export
    procedures:
      form: poem_procedure              # instrument holding the fields (used by the writer)
      events: [baseline_arm_1]          # event(s) whose non-repeating rows make the procedure row;
                                        # empty/absent for a classic (non-longitudinal) project
      fields: {redcap_field: exchange_column, ...}
      codes: {redcap_field: {redcap_code: exchange_code, ...}, ...}
      booleans: [redcap_field, ...]     # yes/no or true/false fields -> "true"/"false"
      checkboxes: {redcap_checkbox_field: {option_code: exchange_bool_column, ...}}
    followups:                          # one row per (record, event, instance) of these events
      form: followup
      events: [month_3_arm_1, ..., unscheduled_arm_1]
      windows: {month_3_arm_1: [60, 240], ...}   # writer only: days after the procedure
      unscheduled_event: unscheduled_arm_1       # writer only: repeating event for the rest
      fields / codes / booleans / checkboxes: as above
    adverse_events:                     # one row per instance of this repeating instrument
      form: adverse_event
      fields / codes / booleans / checkboxes: as above
    reinterventions:
      form: reintervention
      ...

Identifiers: ``procedure_id`` is the field mapped to it (usually the record
id); child rows take the procedure id of their record. ``assessment_id`` and
``event_id`` come from a mapped field when the project has one, otherwise they
are derived deterministically as ``<record_id>:<event>:<instance>`` (without the
event part in a classic project), so re-exports give the same keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from poem_registry.adapters.base import SOURCE_FILE, SOURCE_ROW, AdapterOutput, Finding
from poem_registry.adapters.redcap import (
    EVENT_COLUMN,
    REPEAT_INSTANCE_COLUMN,
    REPEAT_INSTRUMENT_COLUMN,
    SYSTEM_COLUMNS,
    DataDictionary,
    ExportKind,
    RedcapFormatError,
    RedcapRecords,
    read_records,
)
from poem_registry.contract import load_contract
from poem_registry.ingest.privacy import identifier_kind

__all__ = [
    "ENTITIES",
    "EntityMapping",
    "MappingError",
    "PoemRedcapMapping",
    "exchange_column_types",
    "exchange_columns",
    "to_exchange",
    "to_exchange_records",
]

ENTITIES = ("procedures", "followups", "adverse_events", "reinterventions")
_ID_COLUMN = {"followups": "assessment_id", "adverse_events": "event_id", "reinterventions": "event_id"}
_REPEATING_ENTITIES = ("adverse_events", "reinterventions")
_TRUE = frozenset({"1", "y", "yes", "true", "t", "checked"})
_FALSE = frozenset({"0", "n", "no", "false", "f", "unchecked"})
class MappingError(ValueError):
    """A site mapping that cannot be used; the message names the key to fix."""


def exchange_columns(entity: str) -> list[str]:
    """Exchange-format column names of an entity, in contract order (from the contract YAML)."""
    return list(exchange_column_types(entity))


def exchange_column_types(entity: str) -> dict[str, str]:
    """``{column: exchange type}`` of an entity (text, code, int, decimal, bool, date, timestamp)."""
    return {c.name: c.type for c in load_contract().entities[entity].columns}


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class EntityMapping:
    """How one exchange entity is found in, and mapped from, the REDCap project."""

    entity: str
    form: str = ""
    events: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    codes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    booleans: frozenset[str] = frozenset()
    checkboxes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    windows: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    unscheduled_event: str | None = None

    @property
    def exchange_targets(self) -> dict[str, str]:
        """``{exchange column: where it comes from}`` for every mapped exchange column."""
        targets = {column: name for name, column in self.fields.items()}
        for name, options in self.checkboxes.items():
            targets.update({column: f"{name}___{code}" for code, column in options.items()})
        return targets

    @property
    def source_fields(self) -> set[str]:
        return set(self.fields) | set(self.checkboxes)


_ENTITY_KEYS = {"form", "events", "fields", "codes", "booleans", "checkboxes", "windows", "unscheduled_event"}


def _entity_from_dict(entity: str, raw: object, where: str) -> EntityMapping:
    if not isinstance(raw, Mapping):
        raise MappingError(f"{where}.{entity}: expected a mapping of settings")
    unknown = set(raw) - _ENTITY_KEYS
    if unknown:
        raise MappingError(
            f"{where}.{entity}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTITY_KEYS)}"
        )
    columns = set(exchange_columns(entity))
    fields = {str(k): str(v) for k, v in (raw.get("fields") or {}).items()}
    codes = {str(k): {str(c): str(x) for c, x in v.items()} for k, v in (raw.get("codes") or {}).items()}
    checkboxes = {
        str(k): {str(c): str(x) for c, x in v.items()} for k, v in (raw.get("checkboxes") or {}).items()
    }
    booleans = frozenset(str(b) for b in raw.get("booleans") or ())
    windows = {str(k): (int(v[0]), int(v[1])) for k, v in (raw.get("windows") or {}).items()}
    mapped = list(fields.values()) + [c for options in checkboxes.values() for c in options.values()]
    for column in mapped:
        if column not in columns:
            raise MappingError(
                f"{where}.{entity}: {column!r} is not a column of {entity} in the exchange format"
            )
    duplicates = sorted({c for c in mapped if mapped.count(c) > 1})
    if duplicates:
        raise MappingError(f"{where}.{entity}: exchange column(s) {duplicates} are mapped more than once")
    for key, names in (("codes", codes), ("booleans", booleans)):
        stray = sorted(set(names) - set(fields))
        if stray:
            raise MappingError(f"{where}.{entity}.{key}: {stray} must also be listed under fields")
    both = sorted(set(codes) & booleans)
    if both:
        raise MappingError(f"{where}.{entity}: {both} cannot be both coded and boolean")
    if entity in _REPEATING_ENTITIES and not raw.get("form"):
        raise MappingError(f"{where}.{entity}.form: name the repeating instrument that holds {entity}")
    return EntityMapping(
        entity=entity,
        form=str(raw.get("form") or ""),
        events=tuple(str(e) for e in raw.get("events") or ()),
        fields=fields,
        codes=codes,
        booleans=booleans,
        checkboxes=checkboxes,
        windows=windows,
        unscheduled_event=str(raw["unscheduled_event"]) if raw.get("unscheduled_event") else None,
    )


@dataclass(frozen=True)
class PoemRedcapMapping:
    """A validated site mapping (the ``redcap:`` block of a site file)."""

    entities: Mapping[str, EntityMapping]
    record_id_field: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, object], *, where: str = "redcap") -> PoemRedcapMapping:
        if not isinstance(raw, Mapping):
            raise MappingError(f"{where}: expected a mapping of settings")
        unknown = set(raw) - {"record_id_field", *ENTITIES}
        if unknown:
            raise MappingError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: record_id_field, {ENTITIES}"
            )
        if "procedures" not in raw:
            raise MappingError(f"{where}.procedures is required")
        entities = {e: _entity_from_dict(e, raw[e], where) for e in ENTITIES if e in raw}
        seen: dict[str, str] = {}
        for mapping in entities.values():
            for name in mapping.source_fields:
                if name in seen and seen[name] != mapping.entity:
                    raise MappingError(
                        f"{where}: REDCap field {name!r} is mapped in both {seen[name]} and {mapping.entity}"
                    )
                seen[name] = mapping.entity
        rid = raw.get("record_id_field")
        return cls(entities=entities, record_id_field=str(rid) if rid else None)

    @property
    def longitudinal(self) -> bool:
        return bool(self.entities["procedures"].events)

    @property
    def nonrepeating_events(self) -> dict[str, str]:
        """``{event: entity}`` for the events whose ordinary rows are read."""
        out = {}
        for entity in ("procedures", "followups"):
            if entity in self.entities:
                out.update(dict.fromkeys(self.entities[entity].events, entity))
        return out

    @property
    def repeating_forms(self) -> dict[str, str]:
        return {self.entities[e].form: e for e in _REPEATING_ENTITIES if e in self.entities}


# --------------------------------------------------------------------------- conversion


@dataclass
class _Context:
    records: RedcapRecords
    mapping: PoemRedcapMapping
    dictionary: DataDictionary | None
    findings: list[Finding] = field(default_factory=list)

    def finding(
        self,
        rule: str,
        message: str,
        *,
        column: str | None = None,
        row: int | None = None,
        value: str | None = None,
        category: str = "conformance",
        severity: str = "warning",
    ) -> None:
        self.findings.append(
            Finding(
                rule=rule,
                category=category,
                severity=severity,
                message=f"{self.records.file_name}: {message}",
                file_name=self.records.file_name,
                column_name=column,
                source_row=row,
                value=value,
            )
        )


def to_exchange(
    path: str | Path,
    mapping: Mapping[str, object] | PoemRedcapMapping,
    *,
    dictionary: DataDictionary | None = None,
    kind: ExportKind = "raw",
    events: pd.DataFrame | None = None,
) -> AdapterOutput:
    """Read a REDCap records export and map it onto the exchange format.

    Returns the four entity frames (exactly the exchange columns as strings,
    plus ``_source_file``/``_source_row``) and findings. A file that is not a
    usable export for this mapping raises :class:`RedcapFormatError`.
    """
    path = Path(path)
    records = read_records(path, dictionary, kind, events=events)
    output = to_exchange_records(records, mapping, dictionary=dictionary)
    output.files[path.name] = path.read_bytes()
    return output


def to_exchange_records(
    records: RedcapRecords,
    mapping: Mapping[str, object] | PoemRedcapMapping,
    *,
    dictionary: DataDictionary | None = None,
) -> AdapterOutput:
    """:func:`to_exchange` for records already read (a JSON export, an ODM file, a test frame)."""
    parsed = mapping if isinstance(mapping, PoemRedcapMapping) else PoemRedcapMapping.from_dict(mapping)
    if parsed.record_id_field and parsed.record_id_field != records.record_id_field:
        if parsed.record_id_field not in records.data.columns:
            raise RedcapFormatError(
                f"record id field {parsed.record_id_field!r} named by the mapping is not in the export",
                file=records.source,
                row=0,
                column=parsed.record_id_field,
            )
        records.record_id_field = parsed.record_id_field
    ctx = _Context(records=records, mapping=parsed, dictionary=dictionary)
    _check_required_columns(ctx)
    _report_unknown_columns(ctx)
    _report_unmapped_rows(ctx)
    frames: dict[str, pd.DataFrame] = {}
    procedures = _procedures(ctx)
    frames["procedures"] = procedures
    procedure_of_record = dict(zip(procedures.pop("_record"), procedures["procedure_id"], strict=True))
    for entity in ENTITIES[1:]:
        if entity in parsed.entities:
            frames[entity] = _child_entity(ctx, entity, procedure_of_record)
        else:
            frames[entity] = pd.DataFrame(columns=[*exchange_columns(entity), SOURCE_FILE, SOURCE_ROW])
    return AdapterOutput(frames=frames, findings=ctx.findings)


def _check_required_columns(ctx: _Context) -> None:
    data = ctx.records.data
    if ctx.mapping.longitudinal and EVENT_COLUMN not in data.columns:
        raise RedcapFormatError(
            f"the mapping names events but the export has no {EVENT_COLUMN} column; "
            "export all events of the longitudinal project",
            file=ctx.records.source,
            row=0,
            column=EVENT_COLUMN,
        )
    if ctx.mapping.repeating_forms and REPEAT_INSTRUMENT_COLUMN not in data.columns:
        raise RedcapFormatError(
            f"the mapping reads repeating instruments {sorted(ctx.mapping.repeating_forms)} but the export has "
            f"no {REPEAT_INSTRUMENT_COLUMN} column",
            file=ctx.records.source,
            row=0,
            column=REPEAT_INSTRUMENT_COLUMN,
        )
    for mapping in ctx.mapping.entities.values():
        for name in mapping.fields:
            if name not in data.columns:
                ctx.finding(
                    "mapped_column_missing",
                    f"column {name!r} named in the {mapping.entity} mapping is not in the export; "
                    f"{mapping.fields[name]} will be empty",
                    column=name,
                    row=0,
                    severity="warning",
                    category="completeness",
                )
        for name, options in mapping.checkboxes.items():
            present = {c.partition("___")[2] for c in data.columns if c.startswith(f"{name}___")}
            for code in options:
                if _checkbox_suffix(code) not in present:
                    ctx.finding(
                        "mapped_column_missing",
                        f"checkbox option {code!r} of {name!r} (column {name}___{_checkbox_suffix(code)}) is not "
                        f"in the export; {options[code]} will be empty",
                        column=f"{name}___{_checkbox_suffix(code)}",
                        row=0,
                        category="completeness",
                    )


def _checkbox_suffix(code: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", code.strip().lower())


def _known_columns(ctx: _Context) -> set[str]:
    known = {ctx.records.record_id_field, *SYSTEM_COLUMNS, SOURCE_ROW}
    for mapping in ctx.mapping.entities.values():
        known.update(mapping.fields)
        for name, options in mapping.checkboxes.items():
            known.update(f"{name}___{_checkbox_suffix(c)}" for c in options)
    return known


def _report_unknown_columns(ctx: _Context) -> None:
    """Every column the mapping does not read is reported: it is not loaded."""
    known = _known_columns(ctx)
    checkbox_fields = {name for m in ctx.mapping.entities.values() for name in m.checkboxes}
    for column in ctx.records.data.columns:
        if column in known or column.endswith(("_complete", "_timestamp")):
            continue  # form status and survey timestamps are REDCap bookkeeping
        base, sep, suffix = column.partition("___")
        if sep and base in checkbox_fields:
            message = f"checkbox option {suffix!r} of {base!r} (column {column!r}) is not in the mapping; not loaded"
            rule = "unmapped_checkbox_option"
        elif sep:
            message = f"column {column!r} is a checkbox option of field {base!r}, which the mapping does not know; not loaded"
            rule = "unknown_column"
        else:
            message = f"column {column!r} is not in the mapping; not loaded"
            rule = "unknown_column"
        values = ctx.records.data[column]
        filled = int((values != "").sum())
        if filled:
            first = int(ctx.records.source_row[values != ""].iloc[0])
            message += f" ({filled} row(s) hold a value, first at row {first})"
        flagged = ctx.dictionary is not None and _dictionary_identifier(ctx.dictionary, base)
        if flagged or identifier_kind(base):
            ctx.finding(
                "direct_identifier_column",
                f"column {column!r} looks like a direct identifier; it is never loaded",
                column=column,
                row=0,
                category="privacy",
            )
        else:
            ctx.finding(rule, message, column=column, row=0)


def _dictionary_identifier(dictionary: DataDictionary, name: str) -> bool:
    frame = dictionary.frame
    if frame is None or name not in dictionary.fields:
        return False
    flags = frame.loc[frame["field_name"] == name, "identifier"]
    return bool(len(flags)) and flags.iloc[0].strip().lower() == "y"


def _rows_listing(rows: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _report_unmapped_rows(ctx: _Context) -> None:
    """Rows in events or instruments the mapping does not read would be lost: report them."""
    data = ctx.records.data
    kinds = ctx.records.row_kind
    if ctx.mapping.longitudinal:
        ordinary = kinds != "repeating_instrument"
        stray = ordinary & ~data[EVENT_COLUMN].isin(list(ctx.mapping.nonrepeating_events))
        for event, rows in data.loc[stray].groupby(EVENT_COLUMN, sort=False):
            numbers = [int(r) for r in rows[SOURCE_ROW]]
            ctx.finding(
                "unmapped_event",
                f"event {event!r} is not in the mapping; row(s) {_rows_listing(numbers)} not loaded",
                column=EVENT_COLUMN,
                row=numbers[0],
                value=str(event),
            )
    if REPEAT_INSTRUMENT_COLUMN in data.columns:
        repeating = kinds == "repeating_instrument"
        stray = repeating & ~data[REPEAT_INSTRUMENT_COLUMN].isin(list(ctx.mapping.repeating_forms))
        for form, rows in data.loc[stray].groupby(REPEAT_INSTRUMENT_COLUMN, sort=False):
            numbers = [int(r) for r in rows[SOURCE_ROW]]
            ctx.finding(
                "unmapped_instrument",
                f"repeating instrument {form!r} is not in the mapping; row(s) {_rows_listing(numbers)} not loaded",
                column=REPEAT_INSTRUMENT_COLUMN,
                row=numbers[0],
                value=str(form),
            )


def _map_value(ctx: _Context, mapping: EntityMapping, name: str, value: str, row: int) -> str:
    value = value.strip()
    if value == "":
        return ""
    if name in mapping.codes:
        codes = mapping.codes[name]
        if value in codes:
            return codes[value]
        ctx.finding(
            "unmapped_code",
            f"code {value!r} of {name!r} (row {row}) has no exchange code in the mapping; passed on as is",
            column=name,
            row=row,
            value=value,
        )
        return value
    if name in mapping.booleans:
        lowered = value.lower()
        return "true" if lowered in _TRUE else "false" if lowered in _FALSE else value
    fields = ctx.dictionary.fields if ctx.dictionary is not None else {}
    if name in fields and fields[name].validation.endswith("comma_decimal"):
        return value.replace(",", ".")
    return value


def _map_row(ctx: _Context, mapping: EntityMapping, row: Mapping[str, str]) -> dict[str, str]:
    number = int(row[SOURCE_ROW])
    out = {
        column: _map_value(ctx, mapping, name, row.get(name, ""), number)
        for name, column in mapping.fields.items()
    }
    for name, options in mapping.checkboxes.items():
        cells = {code: row.get(f"{name}___{_checkbox_suffix(code)}", "").strip() for code in options}
        blank = all(v == "" for v in cells.values())
        for code, column in options.items():
            value = cells[code]
            out[column] = (
                "" if blank else "true" if value == "1" else "false" if value in ("0", "") else value
            )
    return out


def _frame(entity: str, rows: list[dict[str, str]], file_name: str) -> pd.DataFrame:
    columns = exchange_columns(entity)
    frame = pd.DataFrame(
        [[r.get(c, "") for c in columns] + [file_name, r[SOURCE_ROW]] for r in rows],
        columns=[*columns, SOURCE_FILE, SOURCE_ROW],
        dtype=object,
    )
    frame[columns] = frame[columns].astype(str)
    frame[SOURCE_ROW] = frame[SOURCE_ROW].astype("int64")
    return frame


def _procedures(ctx: _Context) -> pd.DataFrame:
    """One procedure per record, merged over the procedure event(s)' ordinary rows."""
    mapping = ctx.mapping.entities["procedures"]
    data = ctx.records.data
    kinds = ctx.records.row_kind
    selected = kinds == "non_repeating"
    if ctx.mapping.longitudinal:
        selected &= data[EVENT_COLUMN].isin(list(mapping.events))
    rid = ctx.records.record_id_field
    merged: dict[str, dict[str, str]] = {}
    for row in data.loc[selected].to_dict("records"):
        mapped = _map_row(ctx, mapping, row)
        record = row[rid]
        if record not in merged:
            merged[record] = {**mapped, SOURCE_ROW: row[SOURCE_ROW], "_record": record}
            continue
        target = merged[record]
        for column, value in mapped.items():
            if value and target.get(column) and target[column] != value:
                ctx.finding(
                    "conflicting_values",
                    f"record {record!r}: {column} is {target[column]!r} in one procedure event and {value!r} "
                    f"in row {row[SOURCE_ROW]}; the first is kept",
                    column=column,
                    row=int(row[SOURCE_ROW]),
                    value=value,
                )
            elif value and not target.get(column):
                target[column] = value
    rows = list(merged.values())
    for row in rows:
        if not row.get("procedure_id"):
            row["procedure_id"] = row["_record"]
    frame = _frame("procedures", rows, ctx.records.file_name)
    frame["_record"] = [r["_record"] for r in rows]
    return frame


def _child_entity(ctx: _Context, entity: str, procedure_of_record: Mapping[str, str]) -> pd.DataFrame:
    mapping = ctx.mapping.entities[entity]
    data = ctx.records.data
    kinds = ctx.records.row_kind
    if entity in _REPEATING_ENTITIES:
        selected = (kinds == "repeating_instrument") & (data[REPEAT_INSTRUMENT_COLUMN] == mapping.form)
    else:
        selected = kinds != "repeating_instrument"
        if ctx.mapping.longitudinal:
            selected &= data[EVENT_COLUMN].isin(list(mapping.events))
    rid = ctx.records.record_id_field
    id_column = _ID_COLUMN[entity]
    rows = []
    for row in data.loc[selected].to_dict("records"):
        mapped = _map_row(ctx, mapping, row)
        if not any(mapped.values()):
            continue  # an event or instance with nothing but bookkeeping
        record = row[rid]
        if record not in procedure_of_record:
            ctx.finding(
                "orphan_row",
                f"record {record!r} has {entity} data but no procedure row; procedure_id set to the record id",
                column=rid,
                row=int(row[SOURCE_ROW]),
                value=record,
            )
        mapped["procedure_id"] = procedure_of_record.get(record, record)
        if not mapped.get(id_column):
            mapped[id_column] = _derived_id(ctx, row)
        mapped[SOURCE_ROW] = row[SOURCE_ROW]
        rows.append(mapped)
    return _frame(entity, rows, ctx.records.file_name)


def _derived_id(ctx: _Context, row: Mapping[str, str]) -> str:
    """``<record_id>:<event>:<instance>``; stable across re-exports of the same project."""
    parts = [row[ctx.records.record_id_field]]
    if ctx.mapping.longitudinal:
        parts.append(row[EVENT_COLUMN])
    parts.append(row.get(REPEAT_INSTANCE_COLUMN, "") or "1")
    return ":".join(parts)
