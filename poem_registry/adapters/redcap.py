"""Reading REDCap exports: data dictionaries, records, events/arms and Project XML.

REDCap writes the same project in many shapes (Data Export Tool CSV in raw or
label form, API CSV/JSON, dictionary downloads with two header styles, CDISC ODM
"Project XML"). Everything here turns those shapes into one small set of objects
so that a site mapping (see :mod:`poem_registry.adapters.redcap_poem`) never has
to care which button a site coordinator pressed.

Principles:

* Every value stays text. REDCap is a text store; a cast here would drop
  leading zeros (``00123456``), turn ``"2,0"`` into garbage and hide what the
  site actually typed. Casting belongs to the shared validator.
* An empty cell is ``""``; REDCap does not distinguish blank from missing.
* Rows are numbered as data rows of the export file (header = row 0), so every
  later finding can point a site at the row to fix.
* Anything that cannot be read raises :class:`RedcapFormatError` naming file,
  row and column where possible.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

__all__ = [
    "COMPLETE_CHOICES",
    "EVENT_COLUMN",
    "REPEAT_INSTANCE_COLUMN",
    "REPEAT_INSTRUMENT_COLUMN",
    "DataDictionary",
    "Field",
    "RedcapFormatError",
    "RedcapProject",
    "RedcapRecords",
    "checkbox_column",
    "checked_codes",
    "decode_records",
    "normalise_checkbox_code",
    "parse_choices",
    "read_arms",
    "read_data_dictionary",
    "read_events",
    "read_form_event_mapping",
    "read_instruments",
    "read_project_xml",
    "read_records",
    "split_by_form",
]

EVENT_COLUMN = "redcap_event_name"
REPEAT_INSTRUMENT_COLUMN = "redcap_repeat_instrument"
REPEAT_INSTANCE_COLUMN = "redcap_repeat_instance"
DAG_COLUMN = "redcap_data_access_group"
SURVEY_IDENTIFIER_COLUMN = "redcap_survey_identifier"
SYSTEM_COLUMNS = (
    EVENT_COLUMN,
    REPEAT_INSTRUMENT_COLUMN,
    REPEAT_INSTANCE_COLUMN,
    DAG_COLUMN,
    SURVEY_IDENTIFIER_COLUMN,
)
# Header text of the system columns in a "CSV (labels)" export.
SYSTEM_COLUMN_LABELS = {
    EVENT_COLUMN: "Event Name",
    REPEAT_INSTRUMENT_COLUMN: "Repeat Instrument",
    REPEAT_INSTANCE_COLUMN: "Repeat Instance",
    DAG_COLUMN: "Data Access Group",
    SURVEY_IDENTIFIER_COLUMN: "Survey Identifier",
}
COMPLETE_CHOICES = {"0": "Incomplete", "1": "Unverified", "2": "Complete"}
CHECKBOX_LABELS = {"1": "Checked", "0": "Unchecked"}
FIXED_CHOICES = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}
CODED_FIELD_TYPES = frozenset({"radio", "dropdown", "checkbox", "yesno", "truefalse"})
# Types that hold no value in the records export.
NON_DATA_FIELD_TYPES = frozenset({"descriptive"})

RowKind = Literal["non_repeating", "repeating_instrument", "repeating_event"]
ExportKind = Literal["raw", "labels", "auto"]

# UI download header -> API metadata name. Compared case-insensitively after
# collapsing whitespace, because spreadsheet programs re-save these headers.
_UI_TO_API_HEADER = {
    "variable / field name": "field_name",
    "form name": "form_name",
    "section header": "section_header",
    "field type": "field_type",
    "field label": "field_label",
    "choices, calculations, or slider labels": "select_choices_or_calculations",
    "field note": "field_note",
    "text validation type or show slider number": "text_validation_type_or_show_slider_number",
    "text validation min": "text_validation_min",
    "text validation max": "text_validation_max",
    "identifier?": "identifier",
    "branching logic (show field only if...)": "branching_logic",
    "required field?": "required_field",
    "custom alignment": "custom_alignment",
    "question number (surveys only)": "question_number",
    "matrix group name": "matrix_group_name",
    "matrix ranking?": "matrix_ranking",
    "field annotation": "field_annotation",
}
DICTIONARY_COLUMNS = tuple(_UI_TO_API_HEADER.values())
_REQUIRED_DICTIONARY_COLUMNS = ("field_name", "form_name", "field_type")
_VARIABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RedcapFormatError(ValueError):
    """An export that cannot be read as REDCap wrote it.

    The message always names the file and, when known, the 1-based data row
    (header = row 0) and the column, so a site can fix the export without
    reading Python.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = message
        self.file = Path(file).name if file is not None else None
        self.row = row
        self.column = column
        where = []
        if self.file is not None:
            where.append(self.file)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


# --------------------------------------------------------------------------- choices


def normalise_checkbox_code(code: str) -> str:
    """Return the suffix REDCap uses for a checkbox option in export column names.

    Observed in real exports: codes are lower-cased and ``-`` becomes ``_``
    (``-99`` -> ``_99``, giving ``field____99``; ``B1b`` -> ``b1b``). Other
    characters REDCap does not allow in variable names are mapped to ``_`` too.
    """
    return re.sub(r"[^a-z0-9_]", "_", code.strip().lower())


def checkbox_column(field_name: str, code: str) -> str:
    """Name of the export column holding one checkbox option."""
    return f"{field_name}___{normalise_checkbox_code(code)}"


def parse_choices(text: str, field_type: str = "radio") -> dict[str, str]:
    """Parse a ``select_choices_or_calculations`` cell into ``{code: label}``.

    Items are separated by ``|`` (with or without spaces); the code is what
    precedes the *first* comma, so labels may contain commas
    (``1, Hispanic (Mexican, Cuban)``). Negative and text codes are kept as
    written. Slider labels and calculations are not choices and give ``{}``;
    yes/no and true/false have REDCap's fixed codes.
    """
    if field_type in FIXED_CHOICES:
        return dict(FIXED_CHOICES[field_type])
    if field_type not in CODED_FIELD_TYPES or not text or not text.strip():
        return {}
    choices: dict[str, str] = {}
    for item in text.split("|"):
        item = item.strip()
        if not item:
            continue
        code, sep, label = item.partition(",")
        code = code.strip()
        choices[code] = label.strip() if sep else code
    return choices


# --------------------------------------------------------------------------- dictionary


@dataclass(frozen=True)
class Field:
    """One REDCap field (a row of the data dictionary)."""

    name: str
    form: str
    field_type: str
    label: str = ""
    choices: Mapping[str, str] = field(default_factory=dict)
    validation: str = ""
    calculation: str = ""

    @property
    def checkbox_columns(self) -> dict[str, str]:
        """``{export column: original code}`` for a checkbox field, else ``{}``."""
        if self.field_type != "checkbox":
            return {}
        return {checkbox_column(self.name, code): code for code in self.choices}

    @property
    def export_columns(self) -> list[str]:
        """Columns this field occupies in a records export."""
        if self.field_type in NON_DATA_FIELD_TYPES:
            return []
        if self.field_type == "checkbox":
            return list(self.checkbox_columns)
        return [self.name]


@dataclass
class DataDictionary:
    """A project's fields, in dictionary order, with everything derived from them.

    ``frame`` keeps the normalised dictionary table (API column names) for
    callers who need columns this class does not model (branching logic,
    annotations, ...).
    """

    fields: dict[str, Field]
    source: str = ""
    form_labels: dict[str, str] = field(default_factory=dict)
    frame: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if not self.fields:
            raise RedcapFormatError("the data dictionary defines no field", file=self.source or None)
        for form in self.forms:
            self.form_labels.setdefault(form, form.replace("_", " ").title())

    @property
    def record_id_field(self) -> str:
        """REDCap's record id is by definition the first field of the dictionary."""
        return next(iter(self.fields))

    @property
    def forms(self) -> list[str]:
        return list(dict.fromkeys(f.form for f in self.fields.values()))

    def form_fields(self, form: str) -> list[Field]:
        return [f for f in self.fields.values() if f.form == form]

    def choices(self, field_name: str) -> dict[str, str]:
        return dict(self.fields[field_name].choices)

    @property
    def checkbox_fields(self) -> dict[str, dict[str, str]]:
        """``{checkbox field: {export column: original code}}``."""
        return {f.name: f.checkbox_columns for f in self.fields.values() if f.field_type == "checkbox"}

    def checkbox_column_owner(self, column: str) -> tuple[str, str] | None:
        """``(field, original code)`` of a checkbox export column, or ``None``.

        Falls back to comparing suffixes without punctuation, because some
        REDCap versions dropped underscores inside codes (``a_b`` -> ``___ab``).
        """
        name, sep, suffix = column.partition("___")
        fld = self.fields.get(name) if sep else None
        if fld is None or fld.field_type != "checkbox":
            return None
        columns = fld.checkbox_columns
        if column in columns:
            return fld.name, columns[column]
        squeezed = re.sub(r"[^a-z0-9]", "", suffix)
        for candidate, code in columns.items():
            if re.sub(r"[^a-z0-9]", "", candidate.partition("___")[2]) == squeezed:
                return fld.name, code
        return None

    def form_of_column(self, column: str) -> str | None:
        """The form an export column belongs to (fields, checkbox options, ``_complete``, ``_timestamp``)."""
        if column in self.fields:
            return self.fields[column].form
        owner = self.checkbox_column_owner(column)
        if owner is not None:
            return self.fields[owner[0]].form
        for suffix in ("_complete", "_timestamp"):
            if column.endswith(suffix) and column[: -len(suffix)] in self.form_labels:
                return column[: -len(suffix)]
        return None

    def export_columns(self, *, timestamps: Iterable[str] = ()) -> list[str]:
        """Field columns of a full records export, in REDCap's order.

        ``timestamps`` names the survey forms, whose ``<form>_timestamp``
        column precedes their fields.
        """
        surveys = set(timestamps)
        columns: list[str] = []
        for form in self.forms:
            if form in surveys:
                columns.append(f"{form}_timestamp")
            columns.extend(c for f in self.form_fields(form) for c in f.export_columns)
            columns.append(f"{form}_complete")
        return columns


def _normalise_dictionary_header(name: str) -> str:
    key = " ".join(name.replace("\ufeff", "").split()).lower()
    return _UI_TO_API_HEADER.get(key, key)


def _dictionary_from_rows(rows: Sequence[Mapping[str, str]], source: Path) -> DataDictionary:
    fields: dict[str, Field] = {}
    records = []
    for number, row in enumerate(rows, start=1):
        values = {k: ("" if v is None else str(v)) for k, v in row.items()}
        if not any(v.strip() for v in values.values()):
            continue  # spreadsheet programs leave empty rows behind
        name = values.get("field_name", "").strip()
        if not name:
            raise RedcapFormatError(
                "row has content but no field name", file=source, row=number, column="field_name"
            )
        if name in fields:
            raise RedcapFormatError(
                f"field {name!r} is defined twice", file=source, row=number, column="field_name"
            )
        field_type = values.get("field_type", "").strip().lower()
        if not field_type:
            raise RedcapFormatError(
                f"field {name!r} has no field type", file=source, row=number, column="field_type"
            )
        raw_choices = values.get("select_choices_or_calculations", "")
        fields[name] = Field(
            name=name,
            form=values.get("form_name", "").strip(),
            field_type=field_type,
            label=values.get("field_label", ""),
            choices=parse_choices(raw_choices, field_type),
            validation=values.get("text_validation_type_or_show_slider_number", "").strip(),
            calculation=raw_choices if field_type == "calc" else "",
        )
        records.append({c: values.get(c, "") for c in DICTIONARY_COLUMNS})
    frame = pd.DataFrame(records, columns=list(DICTIONARY_COLUMNS))
    return DataDictionary(fields=fields, source=str(source), frame=frame)


def read_data_dictionary(path: str | Path) -> DataDictionary:
    """Read a data dictionary: UI CSV download, API CSV, API metadata JSON or Project XML.

    Both CSV header styles are normalised to the API names, empty rows
    (``,,,,`` left by spreadsheet programs) are ignored.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_project_xml(path).dictionary
    if suffix == ".json":
        payload = _load_json(path)
        if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
            raise RedcapFormatError("metadata JSON must be a list of objects", file=path)
        rows: list[dict[str, str]] = [
            {_normalise_dictionary_header(k): v for k, v in r.items()} for r in payload
        ]
        header = list(rows[0]) if rows else []
    else:
        header, data = _read_csv_rows(path)
        header = [_normalise_dictionary_header(h) for h in header]
        rows = [dict(zip(header, values, strict=True)) for values in data]
    missing = [c for c in _REQUIRED_DICTIONARY_COLUMNS if c not in header]
    if missing:
        raise RedcapFormatError(
            f"not a REDCap data dictionary: missing column(s) {', '.join(missing)}", file=path, row=0
        )
    return _dictionary_from_rows(rows, path)


# --------------------------------------------------------------------------- low-level readers


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RedcapFormatError(f"not valid UTF-8 JSON ({exc})", file=path) from exc


def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a CSV written by REDCap (or re-saved by a spreadsheet).

    The csv module rather than pandas: label exports repeat header names
    (``Name``, ``Complete?``) and pandas would silently rename them.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            text = handle.read()  # newline="" keeps CRLF inside quoted values as written
    except UnicodeDecodeError as exc:
        raise RedcapFormatError(f"not UTF-8 text ({exc})", file=path) from exc
    except OSError as exc:
        raise RedcapFormatError(f"cannot be read ({exc.strerror})", file=path) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = [r for r in reader if r]
    except csv.Error as exc:
        raise RedcapFormatError(f"malformed CSV ({exc})", file=path, row=max(reader.line_num - 1, 0)) from exc
    if not rows:
        raise RedcapFormatError("file is empty", file=path)
    header, data = rows[0], rows[1:]
    for number, values in enumerate(data, start=1):
        if len(values) != len(header):
            raise RedcapFormatError(
                f"has {len(values)} cells but the header has {len(header)}", file=path, row=number
            )
    return header, data


def _read_table(path: str | Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """A small metadata export (events, arms, mapping) as text, CSV or JSON."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        payload = _load_json(path)
        if not isinstance(payload, list):
            raise RedcapFormatError(f"{what} JSON must be a list of objects", file=path)
        frame = pd.DataFrame([{k: _text(v) for k, v in r.items()} for r in payload])
    else:
        header, data = _read_csv_rows(path)
        frame = pd.DataFrame(data, columns=[h.strip() for h in header])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RedcapFormatError(
            f"not a REDCap {what} export: missing column(s) {', '.join(missing)}", file=path
        )
    return frame.astype(str)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def read_events(path: str | Path) -> pd.DataFrame:
    """Events export (``event_name, arm_num, unique_event_name, ...``); ``event_id`` only in newer versions."""
    return _read_table(path, ("event_name", "arm_num", "unique_event_name"), "events")


def read_arms(path: str | Path) -> pd.DataFrame:
    """Arms export (``arm_num, name``)."""
    return _read_table(path, ("arm_num", "name"), "arms")


def read_form_event_mapping(path: str | Path) -> pd.DataFrame:
    """Instrument-event mapping export (``arm_num, unique_event_name, form``)."""
    return _read_table(path, ("arm_num", "unique_event_name", "form"), "instrument-event mapping")


def read_instruments(path: str | Path) -> dict[str, str]:
    """Instruments export as ``{form name: form label}``; used to read label exports."""
    frame = _read_table(path, ("instrument_name", "instrument_label"), "instruments")
    return dict(zip(frame["instrument_name"], frame["instrument_label"], strict=True))


# --------------------------------------------------------------------------- records


@dataclass
class RedcapRecords:
    """A flat records export, every cell as text, with REDCap's structure identified.

    ``data`` has the raw (variable-name) header even when a label export was
    read; ``source_row`` gives each row's 1-based data row number in the file.
    """

    data: pd.DataFrame
    source: str
    kind: Literal["raw", "labels"]
    record_id_field: str
    label_header: list[str] | None = None
    unmapped_labels: list[str] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return Path(self.source).name

    @property
    def source_row(self) -> pd.Series:
        return self.data["_source_row"]

    @property
    def is_longitudinal(self) -> bool:
        return EVENT_COLUMN in self.data.columns

    @property
    def has_repeating(self) -> bool:
        return REPEAT_INSTRUMENT_COLUMN in self.data.columns or REPEAT_INSTANCE_COLUMN in self.data.columns

    @property
    def system_columns(self) -> list[str]:
        """REDCap's own columns present in this export (record id first)."""
        present = [c for c in SYSTEM_COLUMNS if c in self.data.columns]
        return [self.record_id_field, *present]

    @property
    def survey_timestamp_columns(self) -> list[str]:
        return [c for c in self.data.columns if c.endswith("_timestamp")]

    @property
    def field_columns(self) -> list[str]:
        """Every column that is not a system column or lineage."""
        system = set(self.system_columns)
        return [c for c in self.data.columns if c not in system and c != "_source_row"]

    @property
    def row_kind(self) -> pd.Series:
        """Each row as ``non_repeating``, ``repeating_instrument`` or ``repeating_event``.

        REDCap leaves both repeat columns blank for ordinary rows, names the
        instrument for repeating instruments and leaves it blank (instance
        set) for repeating events.
        """
        blank = pd.Series("", index=self.data.index)
        instrument = self.data.get(REPEAT_INSTRUMENT_COLUMN, blank)
        instance = self.data.get(REPEAT_INSTANCE_COLUMN, blank)
        kinds = pd.Series("non_repeating", index=self.data.index, dtype=object)
        kinds[(instrument == "") & (instance != "")] = "repeating_event"
        kinds[instrument != ""] = "repeating_instrument"
        return kinds

    @property
    def repeating_instruments(self) -> set[tuple[str, str]]:
        """``(event, instrument)`` pairs seen repeating (event ``""`` in classic projects)."""
        if REPEAT_INSTRUMENT_COLUMN not in self.data.columns:
            return set()
        rows = self.data[self.row_kind == "repeating_instrument"]
        events = rows[EVENT_COLUMN] if self.is_longitudinal else pd.Series("", index=rows.index)
        return set(zip(events, rows[REPEAT_INSTRUMENT_COLUMN], strict=True))

    @property
    def repeating_events(self) -> set[str]:
        if not self.is_longitudinal:
            return set()
        return set(self.data.loc[self.row_kind == "repeating_event", EVENT_COLUMN])

    @property
    def record_ids(self) -> list[str]:
        return list(dict.fromkeys(self.data[self.record_id_field]))


def _looks_like_label_header(header: Sequence[str]) -> bool:
    if SYSTEM_COLUMN_LABELS[EVENT_COLUMN] in header or "Record ID" in header:
        return True
    if len(set(header)) != len(header):
        return True
    return not all(_VARIABLE_NAME.match(h) for h in header)


def read_records(
    path: str | Path,
    dictionary: DataDictionary | None = None,
    kind: ExportKind = "auto",
    *,
    events: pd.DataFrame | None = None,
    arms: pd.DataFrame | None = None,
) -> RedcapRecords:
    """Read a flat records export (CSV from the Data Export Tool or API, or API JSON).

    ``kind="labels"`` (or ``"auto"`` detecting a label header) needs the
    dictionary to rebuild the variable-name header and turns choice labels
    back into codes; ``events`` (+ ``arms``) lets event labels such as
    ``"Event 1 (Arm 1: Arm 1)"`` become unique event names. Labels that cannot
    be mapped are kept as they are and listed in ``unmapped_labels``.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        header, data = _json_records(path)
    else:
        header, data = _read_csv_rows(path)
    auto = "labels" if _looks_like_label_header(header) else "raw"
    detected: Literal["raw", "labels"] = auto if kind == "auto" else kind
    if detected == "raw":
        header = [h.strip() for h in header]
    label_header = None
    unmapped: list[str] = []
    if detected == "labels":
        if dictionary is None:
            raise RedcapFormatError(
                "a label export can only be read with its data dictionary", file=path, row=0
            )
        label_header = list(header)
        header = _align_label_header(header, dictionary, path)
    elif len(set(header)) != len(header):
        duplicate = next(h for h in header if header.count(h) > 1)
        raise RedcapFormatError("column appears twice in the header", file=path, row=0, column=duplicate)
    frame = (
        pd.DataFrame(data, columns=header, dtype=object)
        if data
        else pd.DataFrame(columns=header, dtype=object)
    )
    frame = frame.astype(str)
    frame["_source_row"] = range(1, len(frame) + 1)
    record_id_field = dictionary.record_id_field if dictionary is not None else header[0]
    if record_id_field not in frame.columns:
        raise RedcapFormatError(
            f"record id column {record_id_field!r} (first field of the dictionary) is missing",
            file=path,
            row=0,
        )
    if detected == "labels":
        assert dictionary is not None
        unmapped = _labels_to_codes(frame, dictionary, events, arms)
    records = RedcapRecords(
        data=frame,
        source=str(path),
        kind=detected,
        record_id_field=record_id_field,
        label_header=label_header,
        unmapped_labels=unmapped,
    )
    _check_structure(records)
    return records


def _json_records(path: Path) -> tuple[list[str], list[list[str]]]:
    payload = _load_json(path)
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise RedcapFormatError("records JSON must be a list of objects (flat export)", file=path)
    header = list(dict.fromkeys(k for r in payload for k in r))
    if not header:
        raise RedcapFormatError("records JSON holds no record", file=path)
    return header, [[_text(r.get(k)) for k in header] for r in payload]


def _check_structure(records: RedcapRecords) -> None:
    data = records.data
    empty_ids = data.index[data[records.record_id_field].str.strip() == ""]
    if len(empty_ids):
        raise RedcapFormatError(
            "record id is empty",
            file=records.source,
            row=int(data.at[empty_ids[0], "_source_row"]),
            column=records.record_id_field,
        )
    if REPEAT_INSTRUMENT_COLUMN in data.columns:
        if REPEAT_INSTANCE_COLUMN not in data.columns:
            raise RedcapFormatError(
                f"{REPEAT_INSTRUMENT_COLUMN} without {REPEAT_INSTANCE_COLUMN}", file=records.source, row=0
            )
        bad = data.index[(data[REPEAT_INSTRUMENT_COLUMN] != "") & (data[REPEAT_INSTANCE_COLUMN] == "")]
        if len(bad):
            raise RedcapFormatError(
                "repeating instrument row without an instance number",
                file=records.source,
                row=int(data.at[bad[0], "_source_row"]),
                column=REPEAT_INSTANCE_COLUMN,
            )
    if REPEAT_INSTANCE_COLUMN in data.columns:
        instances = data[REPEAT_INSTANCE_COLUMN]
        bad = data.index[(instances != "") & ~instances.str.fullmatch(r"[1-9][0-9]*")]
        if len(bad):
            raise RedcapFormatError(
                f"repeat instance {instances[bad[0]]!r} is not a positive whole number",
                file=records.source,
                row=int(data.at[bad[0], "_source_row"]),
                column=REPEAT_INSTANCE_COLUMN,
            )


# --------------------------------------------------------------------------- label exports


def _expected_label_columns(dictionary: DataDictionary) -> list[tuple[str, str]]:
    """``(variable, header label)`` for every column a label export may hold, in order."""
    rid = dictionary.fields[dictionary.record_id_field]
    expected = [(rid.name, rid.label)]
    expected += [(c, SYSTEM_COLUMN_LABELS[c]) for c in SYSTEM_COLUMNS]
    for form in dictionary.forms:
        expected.append((f"{form}_timestamp", "Survey Timestamp"))
        for fld in dictionary.form_fields(form):
            if fld.name == rid.name:
                continue
            if fld.field_type == "checkbox":
                expected += [
                    (column, f"{fld.label} (choice={fld.choices[code]})")
                    for column, code in fld.checkbox_columns.items()
                ]
            else:
                expected += [(c, fld.label) for c in fld.export_columns]
        expected.append((f"{form}_complete", "Complete?"))
    return expected


def _align_label_header(header: Sequence[str], dictionary: DataDictionary, path: Path) -> list[str]:
    """Map a label header back to variable names.

    Labels are not unique (``Name`` twice, ``Complete?`` once per form), so
    they are matched in order: the export's columns are a subsequence of the
    full column list the dictionary implies.
    """
    expected = _expected_label_columns(dictionary)
    names: list[str] = []
    cursor = 0
    for position, label in enumerate(header):
        for strict in (True, False):
            match = next(
                (
                    j
                    for j in range(cursor, len(expected))
                    if (expected[j][1] == label if strict else expected[j][1].strip() == label.strip())
                ),
                None,
            )
            if match is not None:
                break
        if match is None:
            raise RedcapFormatError(
                f"label header {label!r} (position {position + 1}) matches no remaining field of the dictionary",
                file=path,
                row=0,
                column=label,
            )
        names.append(expected[match][0])
        cursor = match + 1
    return names


def _event_label_map(events: pd.DataFrame | None, arms: pd.DataFrame | None) -> dict[str, str]:
    if events is None:
        return {}
    arm_names = dict(zip(arms["arm_num"], arms["name"], strict=True)) if arms is not None else {}
    mapping: dict[str, str] = {}
    names = list(events["event_name"])
    for _, event in events.iterrows():
        arm = event["arm_num"]
        arm_name = event.get("arm_name") or arm_names.get(arm, f"Arm {arm}")
        label = event.get("custom_event_label") or event["event_name"]
        mapping[f"{event['event_name']} (Arm {arm}: {arm_name})"] = event["unique_event_name"]
        if label != event["event_name"]:
            mapping[f"{label} (Arm {arm}: {arm_name})"] = event["unique_event_name"]
        if names.count(event["event_name"]) == 1:
            mapping[event["event_name"]] = event["unique_event_name"]
    return mapping


def _reverse_unique(choices: Mapping[str, str]) -> dict[str, str]:
    """``{label: code}`` for labels naming exactly one code (duplicate labels stay labels)."""
    labels = list(choices.values())
    return {label: code for code, label in choices.items() if labels.count(label) == 1}


def _labels_to_codes(
    frame: pd.DataFrame,
    dictionary: DataDictionary,
    events: pd.DataFrame | None,
    arms: pd.DataFrame | None,
) -> list[str]:
    unmapped: set[str] = set()

    def recode(column: str, reverse: Mapping[str, str]) -> None:
        values = frame[column]
        known = values.isin(list(reverse)) | (values == "")
        unmapped.update(f"{column}={v}" for v in values[~known].unique())
        frame[column] = values.map(lambda v: reverse.get(v, v))

    if EVENT_COLUMN in frame.columns:
        recode(EVENT_COLUMN, _event_label_map(events, arms))
    if REPEAT_INSTRUMENT_COLUMN in frame.columns:
        recode(REPEAT_INSTRUMENT_COLUMN, _reverse_unique(dictionary.form_labels))
    reverse_checkbox = _reverse_unique(CHECKBOX_LABELS)
    for column in list(frame.columns):
        if column.endswith("_complete") and column[: -len("_complete")] in dictionary.form_labels:
            recode(column, _reverse_unique(COMPLETE_CHOICES))
        elif dictionary.checkbox_column_owner(column) is not None:
            recode(column, reverse_checkbox)
        elif column in dictionary.fields and dictionary.fields[column].choices:
            recode(column, _reverse_unique(dictionary.fields[column].choices))
    return sorted(unmapped)


# --------------------------------------------------------------------------- decoding


def checked_codes(row: Mapping[str, str], fld: Field) -> frozenset[str] | None:
    """Original codes ticked in one row for a checkbox field; ``None`` when the form is blank there."""
    values = {code: row.get(column, "") for column, code in fld.checkbox_columns.items()}
    if all(v == "" for v in values.values()):
        return None
    return frozenset(code for code, v in values.items() if v == "1")


def decode_records(records: RedcapRecords, dictionary: DataDictionary) -> pd.DataFrame:
    """One column per coded field with labels instead of codes; checkboxes as sets of codes.

    Only fields present in the export are decoded; unknown codes are kept as
    they are, because the validator, not the reader, decides what is wrong.
    Non-coded columns are copied unchanged.
    """
    data = records.data
    out = data[records.system_columns].copy()
    for fld in dictionary.fields.values():
        if fld.field_type == "checkbox":
            if not any(c in data.columns for c in fld.checkbox_columns):
                continue
            out[fld.name] = [checked_codes(row, fld) for row in data.to_dict("records")]
        elif fld.name in data.columns and fld.name != records.record_id_field:
            choices = fld.choices
            out[fld.name] = (
                data[fld.name].map(lambda v, c=choices: c.get(v, v)) if choices else data[fld.name]
            )
    out["_source_row"] = data["_source_row"]
    return out


def split_by_form(
    records: RedcapRecords,
    dictionary: DataDictionary,
    mapping: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """A tidy view: per form, only that form's columns with record id, event and instance.

    A row belongs to a form when it holds at least one non-blank value of the
    form's columns, and, for repeating instrument rows, when the form is that
    instrument. With an instrument-event ``mapping`` a form is only taken from
    events it is designated in, which drops the blank columns REDCap writes
    for forms of other events.
    """
    data = records.data
    kinds = records.row_kind
    keys = [records.record_id_field] + [
        c for c in (EVENT_COLUMN, REPEAT_INSTRUMENT_COLUMN, REPEAT_INSTANCE_COLUMN) if c in data.columns
    ]
    designated: dict[str, set[str]] | None = None
    if mapping is not None:
        designated = {}
        for event, form in zip(mapping["unique_event_name"], mapping["form"], strict=True):
            designated.setdefault(form, set()).add(event)
    tables: dict[str, pd.DataFrame] = {}
    for form in dictionary.forms:
        columns = [c for c in data.columns if dictionary.form_of_column(c) == form and c not in keys]
        if not columns:
            continue
        has_value = (data[columns] != "").any(axis=1)
        own_row = (kinds != "repeating_instrument") | (data.get(REPEAT_INSTRUMENT_COLUMN) == form)
        selected = has_value & own_row
        if designated is not None and records.is_longitudinal:
            selected &= data[EVENT_COLUMN].isin(designated.get(form, set()))
        table = data.loc[selected, [*keys, *columns, "_source_row"]].reset_index(drop=True)
        tables[form] = table
    return tables


# --------------------------------------------------------------------------- Project XML (ODM)

_ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
_RC = "{https://projectredcap.org}"
_ODM_FIELD_TYPES = {"select": "dropdown", "textarea": "notes"}
_ODM_VALIDATIONS = {"int": "integer", "float": "number"}


@dataclass
class RedcapProject:
    """What a Project XML (CDISC ODM) export says about a project."""

    dictionary: DataDictionary
    arms: pd.DataFrame
    events: pd.DataFrame
    form_event_mapping: pd.DataFrame
    repeating_instruments: set[tuple[str, str]]
    repeating_events: set[str]
    data_access_groups: list[str]
    survey_forms: list[str]
    records: RedcapRecords

    @property
    def record_id_field(self) -> str:
        return self.dictionary.record_id_field


def _parse_xml_safely(path: Path) -> ET.Element:
    """Parse ODM with the stdlib, refusing DTDs so entity expansion cannot be abused."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RedcapFormatError(f"cannot be read ({exc.strerror})", file=path) from exc
    if re.search(rb"<!DOCTYPE|<!ENTITY", raw, flags=re.IGNORECASE):
        raise RedcapFormatError("XML with a DOCTYPE/ENTITY declaration is refused", file=path)
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        raise RedcapFormatError(f"not well-formed XML ({exc})", file=path) from exc


def _translated(element: ET.Element | None, child: str) -> str:
    if element is None:
        return ""
    node = element.find(f"{_ODM}{child}/{_ODM}TranslatedText")
    return node.text or "" if node is not None else ""


def read_project_xml(path: str | Path) -> RedcapProject:
    """Read a REDCap Project XML export: metadata, arms, events, mapping, repeating setup and data."""
    path = Path(path)
    root = _parse_xml_safely(path)
    if root.tag != f"{_ODM}ODM":
        raise RedcapFormatError("root element is not a CDISC ODM <ODM>", file=path)
    study = root.find(f"{_ODM}Study")
    metadata = study.find(f"{_ODM}MetaDataVersion") if study is not None else None
    if study is None or metadata is None:
        raise RedcapFormatError("no <Study>/<MetaDataVersion> in the ODM file", file=path)
    globals_ = study.find(f"{_ODM}GlobalVariables")

    item_defs = {d.get("OID", ""): d for d in metadata.iter(f"{_ODM}ItemDef")}
    code_lists = {c.get("OID", ""): c for c in metadata.iter(f"{_ODM}CodeList")}
    group_defs = {g.get("OID", ""): g for g in metadata.iter(f"{_ODM}ItemGroupDef")}

    fields: dict[str, Field] = {}
    form_labels: dict[str, str] = {}
    item_order: list[str] = []
    for form_def in metadata.iter(f"{_ODM}FormDef"):
        form = form_def.get(f"{_RC}FormName", "")
        form_labels[form] = form_def.get("Name", form)
        for group_ref in form_def.iter(f"{_ODM}ItemGroupRef"):
            group = group_defs.get(group_ref.get("ItemGroupOID", ""))
            if group is None:
                raise RedcapFormatError(
                    f"ItemGroupRef {group_ref.get('ItemGroupOID')!r} has no definition", file=path
                )
            for item_ref in group.iter(f"{_ODM}ItemRef"):
                item = item_defs.get(item_ref.get("ItemOID", ""))
                if item is None:
                    raise RedcapFormatError(f"ItemRef {item_ref.get('ItemOID')!r} has no ItemDef", file=path)
                item_order.append(item.get("Name", ""))
                _add_odm_field(fields, item, form, code_lists)

    dictionary = DataDictionary(fields=fields, source=str(path), form_labels=form_labels)
    events_rows, mapping_rows, arms_seen = [], [], {}
    for event in metadata.iter(f"{_ODM}StudyEventDef"):
        unique = event.get(f"{_RC}UniqueEventName", "")
        arm = event.get(f"{_RC}ArmNum", "")
        arms_seen.setdefault(arm, event.get(f"{_RC}ArmName", ""))
        events_rows.append(
            {
                "event_name": event.get(f"{_RC}EventName", ""),
                "arm_num": arm,
                "unique_event_name": unique,
                "custom_event_label": event.get(f"{_RC}CustomEventLabel", ""),
                "day_offset": event.get(f"{_RC}DayOffset", ""),
                "arm_name": event.get(f"{_RC}ArmName", ""),
            }
        )
        mapping_rows += [
            {"arm_num": arm, "unique_event_name": unique, "form": ref.get(f"{_RC}FormName", "")}
            for ref in event.iter(f"{_ODM}FormRef")
        ]
    repeating_instruments: set[tuple[str, str]] = set()
    repeating_events: set[str] = set()
    dags: list[str] = []
    surveys: list[str] = []
    if globals_ is not None:
        for node in globals_.iter(f"{_RC}RepeatingInstrument"):
            repeating_instruments.add(
                (node.get(f"{_RC}UniqueEventName", ""), node.get(f"{_RC}RepeatInstrument", ""))
            )
        repeating_events = {n.get(f"{_RC}UniqueEventName", "") for n in globals_.iter(f"{_RC}RepeatingEvent")}
        dags = [n.get("group_name", "") for n in globals_.iter(f"{_RC}DataAccessGroups")]
        surveys = [n.get("form_name", "") for n in globals_.iter(f"{_RC}Surveys")]

    events = pd.DataFrame(
        events_rows,
        columns=[
            "event_name",
            "arm_num",
            "unique_event_name",
            "custom_event_label",
            "day_offset",
            "arm_name",
        ],
    )
    records = _odm_records(
        root, path, dictionary, item_order, bool(events_rows), repeating_instruments, repeating_events
    )
    return RedcapProject(
        dictionary=dictionary,
        arms=pd.DataFrame({"arm_num": list(arms_seen), "name": list(arms_seen.values())}),
        events=events,
        form_event_mapping=pd.DataFrame(mapping_rows, columns=["arm_num", "unique_event_name", "form"]),
        repeating_instruments=repeating_instruments,
        repeating_events=repeating_events,
        data_access_groups=dags,
        survey_forms=surveys,
        records=records,
    )


def _add_odm_field(
    fields: dict[str, Field], item: ET.Element, form: str, code_lists: Mapping[str, ET.Element]
) -> None:
    """Turn one ODM ItemDef into a dictionary field (checkbox options collapse into one field)."""
    field_type = item.get(f"{_RC}FieldType")
    name = item.get(f"{_RC}Variable", item.get("Name", ""))
    if field_type is None or name in fields:
        return  # _timestamp, DAG, survey identifier, or a further checkbox option
    if item.get(f"{_RC}SectionHeader") == "Form Status" and name == f"{form}_complete":
        return
    field_type = _ODM_FIELD_TYPES.get(field_type, field_type)
    ref = item.find(f"{_ODM}CodeListRef")
    code_list = code_lists.get(ref.get("CodeListOID", "")) if ref is not None else None
    if field_type == "checkbox":
        choices = parse_choices(
            code_list.get(f"{_RC}CheckboxChoices", "") if code_list is not None else "", "checkbox"
        )
    elif code_list is not None:
        choices = {
            c.get("CodedValue", ""): _translated(c, "Decode") for c in code_list.iter(f"{_ODM}CodeListItem")
        }
    else:
        choices = parse_choices("", field_type)
    validation = item.get(f"{_RC}TextValidationType", "")
    fields[name] = Field(
        name=name,
        form=form,
        field_type=field_type,
        label=_translated(item, "Question"),
        choices=choices,
        validation=_ODM_VALIDATIONS.get(validation, validation),
        calculation=item.get(f"{_RC}Calculation", ""),
    )


def _odm_records(
    root: ET.Element,
    path: Path,
    dictionary: DataDictionary,
    item_order: list[str],
    longitudinal: bool,
    repeating_instruments: set[tuple[str, str]],
    repeating_events: set[str],
) -> RedcapRecords:
    """Flatten <ClinicalData> into the rows a CSV export of the same project has."""
    rid = dictionary.record_id_field
    repeating = bool(repeating_instruments or repeating_events)
    system = [EVENT_COLUMN] * longitudinal + [REPEAT_INSTRUMENT_COLUMN, REPEAT_INSTANCE_COLUMN] * repeating
    descriptive = {n for n, f in dictionary.fields.items() if f.field_type in NON_DATA_FIELD_TYPES}
    columns = [rid, *system, *(c for c in dict.fromkeys(item_order) if c != rid and c not in descriptive)]
    rows: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for subject in root.iter(f"{_ODM}SubjectData"):
        record = subject.get("SubjectKey", "")
        for event_data in subject.iter(f"{_ODM}StudyEventData"):
            event = event_data.get(f"{_RC}UniqueEventName", "") if longitudinal else ""
            for form_data in event_data.iter(f"{_ODM}FormData"):
                form = form_data.get("FormOID", "").removeprefix("Form.")
                if (event, form) in repeating_instruments:
                    key = (record, event, form, form_data.get("FormRepeatKey", "1"))
                elif event in repeating_events:
                    key = (record, event, "", event_data.get("StudyEventRepeatKey", "1"))
                else:
                    key = (record, event, "", "")
                row = rows.setdefault(key, dict.fromkeys(columns, ""))
                row[rid] = record
                if longitudinal:
                    row[EVENT_COLUMN] = event
                if repeating:
                    row[REPEAT_INSTRUMENT_COLUMN], row[REPEAT_INSTANCE_COLUMN] = key[2], key[3]
                for item in form_data.iter(f"{_ODM}ItemData"):
                    name = item.get("ItemOID", "")
                    if name not in row:
                        raise RedcapFormatError(
                            f"ItemData for undefined item {name!r}", file=path, column=name
                        )
                    row[name] = item.get("Value", "")
    frame = pd.DataFrame(list(rows.values()), columns=columns, dtype=object).astype(str)
    frame["_source_row"] = range(1, len(frame) + 1)
    return RedcapRecords(data=frame, source=str(path), kind="raw", record_id_field=rid)
