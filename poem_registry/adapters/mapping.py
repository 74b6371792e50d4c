"""The forward mapping from a site's own layout onto exchange-format strings.

Shared by the ``csv_layout``, ``xlsx`` and ``sql`` adapters so that a site's
``mapping:`` section (``docs/site-config.md``) means the same thing whatever
container the data arrives in. The readers only turn their container into a
frame of *site* column names and *text* values (plus ``_source_file`` and
``_source_row``); everything about spellings happens here, once:

* column renames (``mapping.columns``), after checking that every mapped site
  column is still in the header (schema drift is a :class:`DeliveryError`);
* code maps (``mapping.codes``), matched ignoring case and runs of spaces;
  a value that is already a valid exchange code is accepted in any case;
* boolean spellings (``mapping.booleans`` on top of true/false, 1/0, y/n, yes/no, t/f);
* dates and timestamps (``mapping.date_format`` / ``timestamp_format``,
  strptime syntax; ISO 8601 is always accepted too, which is how spreadsheet
  date cells and database values arrive);
* decimal comma (``mapping.decimal``) and unit factors (``mapping.units``),
  computed in :class:`~decimal.Decimal` so ``125 mm * 0.1`` is ``12.5``, never
  ``12.500000000000002``.

What this module deliberately does NOT do is validate: ranges, required
columns and code sets are checked once by the shared validator in
``poem_registry.ingest`` for every site. The two decisions that follow:

* **A value that cannot be converted is passed through as its raw text.** An
  impossible date such as ``02/30/2025`` stays ``"02/30/2025"`` in the output,
  so the validator rejects exactly that row with a message quoting what the
  site sent. Nothing is turned into a silent missing value, and no row is dropped.
* **A code the site's map does not know is passed through unchanged** and
  reported once per (file, column, value) as a ``unmapped_code`` warning with
  the first row and the number of rows, so the site can add it to
  ``mapping.codes``. The validator then rejects the rows if it is not a valid
  exchange code. Unknown boolean spellings are handled the same way (the fix is
  an entry in ``mapping.booleans``).

Conversions run on the *distinct* values of a column and are mapped back with a
dictionary lookup: clinical columns have few distinct values, so 100k-row
deliveries map in well under a second without per-cell Python loops.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import pandas as pd

from poem_registry.adapters.base import SOURCE_FILE, SOURCE_ROW, DeliveryError, Finding
from poem_registry.contract import Entity, load_code_sets, load_contract
from poem_registry.sites import SiteConfig, SiteConfigError

#: Boolean spellings every site may use, whatever its ``mapping.booleans`` says.
DEFAULT_TRUE = ("true", "t", "1", "y", "yes")
DEFAULT_FALSE = ("false", "f", "0", "n", "no")

#: Encodings a site may declare (docs/site-config.md) -> Python codec. UTF-8 tolerates a BOM.
ENCODINGS = {
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "utf-8-sig": "utf-8-sig",
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
}

#: At most this many distinct unmapped values are reported per file and column; the rest are summarised.
MAX_UNMAPPED_FINDINGS = 50

_SPACES = re.compile(r"\s+")


def normalize_code_key(value: str) -> str:
    """How site values are matched against ``mapping.codes``: case-folded, spaces collapsed and trimmed."""
    return _SPACES.sub(" ", value).strip().casefold()


def _yaml_scalar_spellings(value: object) -> list[str]:
    """Spellings a YAML scalar stands for.

    PyYAML turns unquoted ``Yes``/``No``/``true``/``on`` into Python booleans and
    ``1`` into an int, so ``booleans: {true: [Yes, 1]}`` arrives as ``[True, 1]``.
    A boolean stands for every spelling YAML would have read that way.
    """
    if value is True:
        return ["true", "yes", "on"]
    if value is False:
        return ["false", "no", "off"]
    return [str(value)]


def _yaml_bool_value(value: object) -> str:
    """A code-map *target* that YAML read as a boolean becomes the exchange spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_decimal(value: Decimal) -> str:
    """Plain decimal notation without exponent or trailing zeros (``1.2E+2`` -> ``120``, ``12.50`` -> ``12.5``)."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def render_number(value: float | int | Decimal) -> str:
    """A spreadsheet or database number as exchange text: integers without ``.0``, no float noise.

    Floats are rounded to 15 significant digits, the precision a spreadsheet shows,
    so a cell holding ``0.1 + 0.2`` is delivered as ``0.3``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # NaN / inf: keep visible, never silent
            return str(value)
        value = Decimal(f"{value:.15g}")
    return render_decimal(value)


def render_datetime(value: datetime | date, *, date_only_when_midnight: bool = True) -> str:
    """ISO text for a date or datetime cell; a datetime at exactly midnight is a date (spreadsheet dates)."""
    if isinstance(value, datetime):
        if date_only_when_midnight and value.tzinfo is None and value.time() == datetime.min.time():
            return value.date().isoformat()
        return value.isoformat()
    return value.isoformat()


@dataclass(frozen=True)
class MappingSpec:
    """A site's mapping section, parsed and checked once (bad configuration fails before any data is read)."""

    site_id: str
    columns: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # entity -> {site column: exchange column}
    codes: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # exchange column -> {normalized key: code}
    booleans: dict[str, str] = field(default_factory=dict)  # casefolded spelling -> "true" | "false"
    date_format: str | None = None
    timestamp_format: str | None = None
    decimal: str = "."
    units: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # entity -> {exchange column: factor}
    encoding: str = "utf-8-sig"  # Python codec (see ENCODINGS)
    delimiter: str = ","
    config_name: str = ""  # for messages: the site file

    @classmethod
    def from_site(
        cls, site: SiteConfig, *, columns: Mapping[str, Mapping[str, str]] | None = None
    ) -> MappingSpec:
        """Parse ``site.mapping``; ``columns`` replaces ``mapping.columns`` (the SQL adapter's ``sql.tables``).

        Raises :class:`SiteConfigError` naming the key to fix.
        """
        where = str(site.source_file or f"sites/{site.site_id}.yml")
        m = site.mapping or {}
        if not isinstance(m, dict):
            raise SiteConfigError(f"{where}: `mapping` must be a mapping of settings")
        contract = load_contract()
        code_sets = load_code_sets()

        def fail(key: str, problem: str) -> SiteConfigError:
            return SiteConfigError(f"{where}: mapping.{key} {problem}")

        raw_columns = (m.get("columns") or {}) if columns is None else columns
        parsed_columns: dict[str, dict[str, str]] = {}
        for entity_name, renames in (raw_columns or {}).items():
            if entity_name not in contract.entities:
                raise fail(
                    f"columns.{entity_name}", f"is not an entity; use one of {', '.join(contract.entities)}"
                )
            entity = contract.entities[entity_name]
            if not isinstance(renames, dict):
                raise fail(f"columns.{entity_name}", "must map site column names to exchange column names")
            targets: dict[str, str] = {}
            for site_col, target in renames.items():
                target = str(target)
                if target not in entity.column_names:
                    close = difflib.get_close_matches(target, entity.column_names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise fail(
                        f"columns.{entity_name}",
                        f"maps {site_col!r} to {target!r}, which is not a {entity_name} column{hint}",
                    )
                if target in targets.values():
                    raise fail(f"columns.{entity_name}", f"maps two site columns to {target!r}")
                targets[str(site_col).strip()] = target
            parsed_columns[entity_name] = targets

        all_columns = {c.name: c for e in contract.entities.values() for c in e.columns}
        parsed_codes: dict[str, dict[str, str]] = {}
        for column, spellings in (m.get("codes") or {}).items():
            if column not in all_columns:
                raise fail(f"codes.{column}", "is not an exchange-format column")
            if all_columns[column].type not in ("code", "bool"):
                raise fail(
                    f"codes.{column}", f"is a {all_columns[column].type} column; codes apply to code columns"
                )
            if not isinstance(spellings, dict):
                raise fail(f"codes.{column}", "must map site values to exchange codes")
            lookup: dict[str, str] = {}
            allowed = code_sets.get(all_columns[column].code_set or "", frozenset())
            for site_value, code in spellings.items():
                code_text = _yaml_bool_value(code)
                if all_columns[column].type == "bool":
                    allowed = frozenset({"true", "false"})
                if allowed and code_text not in allowed:
                    raise fail(
                        f"codes.{column}",
                        f"maps {site_value!r} to {code_text!r}, which is not a code of {column} "
                        f"({', '.join(sorted(allowed))})",
                    )
                for spelling in _yaml_scalar_spellings(site_value):
                    lookup[normalize_code_key(spelling)] = code_text
            parsed_codes[column] = lookup

        booleans = {s: "true" for s in DEFAULT_TRUE} | {s: "false" for s in DEFAULT_FALSE}
        raw_bools = m.get("booleans") or {}
        if not isinstance(raw_bools, dict):
            raise fail("booleans", "must be {true: [...], false: [...]}")
        for key, values in raw_bools.items():
            if str(key).lower() not in ("true", "false"):
                raise fail("booleans", f"has key {key!r}; only true and false are allowed")
            if not isinstance(values, list):
                values = [values]
            for v in values:
                for spelling in _yaml_scalar_spellings(v):
                    booleans[normalize_code_key(spelling)] = str(key).lower()

        units: dict[str, dict[str, Decimal]] = {}
        for entity_name, factors in (m.get("units") or {}).items():
            if entity_name not in contract.entities:
                raise fail(
                    f"units.{entity_name}", f"is not an entity; use one of {', '.join(contract.entities)}"
                )
            entity = contract.entities[entity_name]
            units[entity_name] = {}
            for column, factor in (factors or {}).items():
                if column not in entity.column_names or entity.column(column).type not in ("int", "decimal"):
                    raise fail(
                        f"units.{entity_name}.{column}", "is not a numeric column of the exchange format"
                    )
                try:
                    value = Decimal(str(factor))
                except InvalidOperation:
                    value = Decimal("NaN")
                if isinstance(factor, bool) or not value.is_finite() or value == 0:
                    raise fail(f"units.{entity_name}.{column}", f"must be a non-zero number (got {factor!r})")
                units[entity_name][column] = value

        for key in ("date_format", "timestamp_format"):
            fmt = m.get(key)
            if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
                raise fail(key, f"must be a strptime format such as '%m/%d/%Y' (got {fmt!r})")
        decimal = str(m.get("decimal", "."))
        if decimal not in (".", ","):
            raise fail("decimal", f"must be '.' or ',' (got {decimal!r})")
        encoding_name = str(m.get("encoding", "utf-8")).lower()
        if encoding_name not in ENCODINGS:
            raise fail("encoding", f"{encoding_name!r} is not supported; use utf-8, cp1252 or latin-1")
        delimiter = m.get("delimiter", ",")
        if delimiter == "\\t":
            delimiter = "\t"
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise fail("delimiter", f"must be a single character such as ',' or ';' (got {delimiter!r})")
        return cls(
            site_id=site.site_id,
            columns=parsed_columns,
            codes=parsed_codes,
            booleans=booleans,
            date_format=m.get("date_format"),
            timestamp_format=m.get("timestamp_format"),
            decimal=decimal,
            units=units,
            encoding=ENCODINGS[encoding_name],
            delimiter=delimiter,
            config_name=where,
        )


def spec_for_site(site: SiteConfig, *, columns: Mapping[str, Mapping[str, str]] | None = None) -> MappingSpec:
    """:meth:`MappingSpec.from_site`, with a configuration problem reported as a quarantining DeliveryError."""
    try:
        return MappingSpec.from_site(site, columns=columns)
    except SiteConfigError as exc:
        raise DeliveryError(
            f"site {site.site_id}: the site configuration cannot be used ({exc}); fix the site file and run again",
            rule="site_config",
        ) from exc


@dataclass
class MappedFrame:
    """One mapped file: exchange columns (plus unknown site columns, kept) and what was noticed on the way."""

    frame: pd.DataFrame
    findings: list[Finding]
    extra_columns: list[str]


def check_header(
    header: Iterable[str], *, entity: str, spec: MappingSpec, file_name: str, what: str = "the header"
) -> None:
    """Schema drift check: every mapped site column must be present, and a rename must not collide.

    Raises a DeliveryError that names the column, the file and what the header
    actually contains, because a silently missing column would turn every row
    into a "required value missing" rejection with no hint of the real cause.
    """
    header = [str(h) for h in header if h not in (SOURCE_FILE, SOURCE_ROW)]
    present = set(header)
    seen: set[str] = set()
    dupes = sorted({h for h in header if h in seen or seen.add(h)})
    if dupes:
        raise DeliveryError(
            f"site {spec.site_id}: {file_name} has duplicate column name(s) {dupes}; each column must have "
            "a distinct header so it can be mapped",
            file_name=file_name,
            rule="header_unique",
        )
    renames = spec.columns.get(entity, {})
    missing = [c for c in renames if c not in present]
    if missing:
        parts = []
        for col in missing:
            close = difflib.get_close_matches(col, header, n=1, cutoff=0.6)
            hint = f" (a similar column {close[0]!r} is there)" if close else ""
            parts.append(f"column {col!r} mapped to {renames[col]} is missing from {file_name}{hint}")
        shown = ", ".join(repr(h) for h in header[:60]) + (" ..." if len(header) > 60 else "")
        raise DeliveryError(
            f"site {spec.site_id}: {'; '.join(parts)}; {what} has: {shown}; did the export layout change? "
            f"Restore the column(s) in the export or update mapping for {entity} in {spec.config_name}",
            file_name=file_name,
            rule="schema_drift",
        )
    mapped_targets = set(renames.values())
    clashes = sorted(h for h in header if h in mapped_targets and h not in renames)
    if clashes:
        raise DeliveryError(
            f"site {spec.site_id}: {file_name} has column(s) {clashes} and also site columns mapped onto them "
            f"({', '.join(f'{s!r}' for s, t in renames.items() if t in clashes)}); remove one of each pair from "
            f"the export or from the mapping in {spec.config_name}",
            file_name=file_name,
            rule="schema_drift",
        )


def _via_distinct(series: pd.Series, convert: Callable[[list[str]], list[str | None]]) -> pd.Series:
    """Apply ``convert`` to the distinct non-missing values only and map the results back."""
    present = series.dropna()
    if present.empty:
        return series
    distinct = list(pd.unique(present))
    lookup = dict(zip(distinct, convert(distinct), strict=True))
    return series.map(lookup).astype("string")


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _convert_temporal(values: list[str], fmt: str | None, kind: str) -> list[str | None]:
    """Dates/timestamps to ISO text; anything unparseable is returned as the raw text (see module docstring)."""
    parsed: list[datetime | None] = [None] * len(values)
    if fmt:
        try:
            stamps = pd.to_datetime(pd.Series(values, dtype="string"), format=fmt, errors="coerce")
            parsed = [None if pd.isna(ts) else ts.to_pydatetime() for ts in stamps]
        except (ValueError, TypeError, OverflowError):  # e.g. mixed UTC offsets: fall back to the slow path
            for i, v in enumerate(values):
                try:
                    parsed[i] = datetime.strptime(v, fmt)
                except ValueError:
                    parsed[i] = None
    out: list[str | None] = []
    for raw, dt in zip(values, parsed, strict=True):
        if dt is None:
            dt = _parse_iso(raw)
        if dt is None:
            out.append(raw)
        elif kind == "date":
            out.append(dt.date().isoformat())
        elif dt.tzinfo is None and dt.microsecond == 0:
            out.append(dt.strftime("%Y-%m-%dT%H:%M:%S"))
        else:
            out.append(dt.isoformat())
    return out


def _scale(values: list[str], factor: Decimal) -> list[str | None]:
    out: list[str | None] = []
    for raw in values:
        try:
            number = Decimal(raw)
        except InvalidOperation:
            out.append(raw)  # not a number: the validator rejects the row quoting this text
            continue
        out.append(render_decimal(number * factor) if number.is_finite() else raw)
    return out


def _unmapped_findings(
    frame: pd.DataFrame, column: str, unmapped: pd.Series, *, file_name: str, hint: str
) -> list[Finding]:
    """One warning per distinct unmapped value, with its first row and the number of rows."""
    rows = frame.loc[unmapped, [column, SOURCE_ROW]]
    summary = rows.groupby(column, sort=True, observed=True)[SOURCE_ROW].agg(["min", "size"])
    findings: list[Finding] = []
    for value, (first_row, count) in summary.head(MAX_UNMAPPED_FINDINGS).iterrows():
        findings.append(
            Finding(
                rule="unmapped_code",
                category="conformance",
                severity="warning",
                message=(
                    f"{column} value {value!r} in {file_name} is not in the site's map ({count} row(s), first "
                    f"at row {first_row}); it was passed through unchanged. {hint}"
                ),
                file_name=file_name,
                column_name=column,
                source_row=int(first_row),
                value=str(value),
            )
        )
    if len(summary) > MAX_UNMAPPED_FINDINGS:
        rest = summary.iloc[MAX_UNMAPPED_FINDINGS:]
        findings.append(
            Finding(
                rule="unmapped_code",
                category="conformance",
                severity="warning",
                message=(
                    f"{column} in {file_name} has {len(rest)} more distinct unmapped value(s) in "
                    f"{int(rest['size'].sum())} row(s) (not listed one by one). {hint}"
                ),
                file_name=file_name,
                column_name=column,
            )
        )
    return findings


def map_frame(raw: pd.DataFrame, *, entity: str, spec: MappingSpec, file_name: str) -> MappedFrame:
    """Map one site frame (site column names, text values, ``_source_file``/``_source_row``) to exchange text.

    ``raw`` values must be strings or missing; readers convert their native
    cells (spreadsheet dates, database numbers) to text first with
    :func:`render_number` / :func:`render_datetime`. Row count and order are
    preserved exactly: no row is ever dropped here.
    """
    contract_entity: Entity = load_contract().entities[entity]
    check_header(raw.columns, entity=entity, spec=spec, file_name=file_name)
    frame = raw.rename(columns=spec.columns.get(entity, {}))
    findings: list[Finding] = []
    data_columns = [c for c in frame.columns if c not in (SOURCE_FILE, SOURCE_ROW)]
    for col in data_columns:
        s = frame[col].astype("string").str.strip()
        frame[col] = s.mask(s == "")
    known = set(contract_entity.column_names)
    code_sets = load_code_sets()
    for col in data_columns:
        if col not in known:
            continue
        column = contract_entity.column(col)
        s: pd.Series = frame[col]
        if s.isna().all():
            continue
        if column.type in ("int", "decimal"):
            if spec.decimal == ",":
                s = s.str.replace(",", ".", regex=False)
            factor = spec.units.get(entity, {}).get(col)
            if factor is not None:
                s = _via_distinct(s, lambda vals, f=factor: _scale(vals, f))
        elif column.type in ("date", "timestamp"):
            fmt = spec.date_format if column.type == "date" else (spec.timestamp_format or spec.date_format)
            s = _via_distinct(s, lambda vals, f=fmt, k=column.type: _convert_temporal(vals, f, k))
        elif column.type in ("bool", "code"):
            if column.type == "bool":
                lookup = dict(spec.booleans)
                hint = f"Add its spelling to mapping.booleans in {spec.config_name}."
            else:
                allowed = code_sets.get(column.code_set or "", frozenset())
                lookup = {normalize_code_key(c): c for c in allowed}
                hint = f"Add it to mapping.codes.{col} in {spec.config_name} if it means an exchange code."
            lookup.update(spec.codes.get(col, {}))
            keys = s.str.replace(_SPACES.pattern, " ", regex=True).str.strip().str.casefold()
            mapped = keys.map(lookup).astype("string")
            unmapped = s.notna() & mapped.isna()
            if unmapped.any():
                frame[col] = s
                findings += _unmapped_findings(frame, col, unmapped, file_name=file_name, hint=hint)
            s = mapped.fillna(s)
        frame[col] = s
    frame[SOURCE_ROW] = frame[SOURCE_ROW].astype("int64")
    frame[SOURCE_FILE] = frame[SOURCE_FILE].astype("string")
    extra = [c for c in data_columns if c not in known]
    return MappedFrame(frame=frame, findings=findings, extra_columns=extra)


def empty_row_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows where every data cell is missing or blank (a trailing or blank line, not a record)."""
    data = frame.drop(columns=[c for c in (SOURCE_FILE, SOURCE_ROW) if c in frame.columns])
    if data.shape[1] == 0:
        return pd.Series(True, index=frame.index)
    blank = data.apply(lambda s: s.isna() | (s.astype("string").str.strip() == "")).astype(bool)
    return blank.all(axis=1)


def drop_empty_rows(frame: pd.DataFrame, *, file_name: str) -> tuple[pd.DataFrame, list[Finding]]:
    """Drop blank records but say so: row numbers keep counting them, so later rows still match the file."""
    mask = empty_row_mask(frame)
    if not mask.any():
        return frame, []
    n = int(mask.sum())
    rows = frame.loc[mask, SOURCE_ROW].head(10).tolist()
    finding = Finding(
        rule="empty_row",
        category="completeness",
        severity="info",
        message=f"{file_name} has {n} empty row(s) (rows {', '.join(map(str, rows))}{' ...' if n > 10 else ''}); "
        "they hold no data and were skipped",
        file_name=file_name,
        source_row=int(rows[0]),
    )
    return frame.loc[~mask].reset_index(drop=True), [finding]
