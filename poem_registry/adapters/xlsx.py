"""Sites that send an Excel workbook: one ``.xlsx`` per extract, one sheet per entity.

The workbook is found with ``mapping.workbook`` (default ``*.xlsx``) inside the
extract folder or zip, or is itself dropped into the landing folder. Sheets are
named by ``mapping.sheets`` (entity -> sheet name, matched ignoring case and
surrounding spaces; default: the entity name). Cells are read with openpyxl in
read-only mode and turned into text the same way for every site:

* date cells (real Excel dates) -> ISO ``YYYY-MM-DD`` (or an ISO timestamp when
  the cell has a time of day); dates typed as text go through
  ``mapping.date_format`` like a CSV would;
* numbers -> plain text, integers without ``.0`` (a case number ``1001`` must
  not become ``1001.0``), floats at spreadsheet precision;
* booleans -> ``true``/``false``.

The mapping itself is shared with the CSV adapter (:mod:`.mapping`).
``_source_file`` is ``<workbook>#<sheet>`` and ``_source_row`` is the data row
(spreadsheet row number minus one, header row 0), so a reported row can be
found directly in Excel.
"""

from __future__ import annotations

import fnmatch
import io
import zipfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from poem_registry.adapters.base import (
    SOURCE_FILE,
    SOURCE_ROW,
    AdapterOutput,
    Delivery,
    DeliveryError,
    Finding,
)
from poem_registry.adapters.csv_layout import discover as _discover_extracts
from poem_registry.adapters.csv_layout import extract_id_date, load_members
from poem_registry.adapters.mapping import (
    MappingSpec,
    drop_empty_rows,
    map_frame,
    render_datetime,
    render_number,
    spec_for_site,
)
from poem_registry.contract import load_contract
from poem_registry.sites import SiteConfig

#: A workbook that expands beyond this (all parts, uncompressed) is refused before openpyxl parses it.
MAX_WORKBOOK_UNCOMPRESSED = 1024**3
MAX_WORKBOOK_RATIO = 200


def discover(site: SiteConfig, landing_dir: Path) -> list[Delivery]:
    """Extract folders, zips and workbooks dropped directly in the site's landing folder, by extract id."""
    return _discover_extracts(site, landing_dir, bare_suffixes=(".xlsx",))


def cell_text(value: Any) -> str | None:
    """One cell as exchange text (see the module docstring); ``None`` stays missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return render_number(value)
    if isinstance(value, datetime | date):
        return render_datetime(value)
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _check_workbook_bytes(data: bytes, *, site_id: str, name: str) -> None:
    """Refuse what openpyxl would choke on or should never be asked to parse, with a message a site understands."""
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise DeliveryError(
            f"site {site_id}: {name} is a legacy .xls workbook or a password-protected file, not an .xlsx; "
            "save it as 'Excel Workbook (.xlsx)' without a password and deliver it again",
            file_name=name,
            rule="delivery_readable",
        )
    if not data.startswith(b"PK\x03\x04"):
        head = data[:200].lstrip().lower()
        looks = "HTML" if head.startswith((b"<html", b"<!doctype", b"<?xml")) else "text such as CSV"
        if not data.strip():
            looks = "nothing (the file is empty)"
        raise DeliveryError(
            f"site {site_id}: {name} is not an Excel .xlsx workbook (it contains {looks}); export the data with "
            "'Save As > Excel Workbook (.xlsx)', or configure the site with adapter: csv_layout if it sends CSV",
            file_name=name,
            rule="delivery_readable",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise DeliveryError(
            f"site {site_id}: {name} is a damaged .xlsx workbook ({exc}); open it in Excel, save it again and "
            "deliver it again",
            file_name=name,
            rule="delivery_readable",
        ) from exc
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if total > MAX_WORKBOOK_UNCOMPRESSED or total / packed > MAX_WORKBOOK_RATIO:
        raise DeliveryError(
            f"site {site_id}: {name} expands to {total} bytes from {packed}; refused as a possible zip bomb",
            file_name=name,
            rule="zip_safety",
        )


def _sheet_frame(rows: list[tuple[Any, ...]], source: str) -> pd.DataFrame:
    """Rows of cell values (first row = header) -> frame of site columns as text, with source columns."""
    header_cells = list(rows[0]) if rows else []
    width = max((len(r) for r in rows), default=0)
    header = [("" if h is None else str(cell_text(h))).strip() for h in header_cells]
    header += [""] * (width - len(header))
    body = [tuple(r) + (None,) * (width - len(r)) for r in rows[1:]]
    grid = pd.DataFrame(body, columns=range(width), dtype=object)
    columns: dict[str, pd.Series] = {}
    for i, name in enumerate(header):
        col = grid[i].map(cell_text) if len(grid) else pd.Series([], dtype=object)
        if not name:
            if col.isna().all() or (col.dropna().astype(str).str.strip() == "").all():
                continue  # formatting-only column to the right of the data
            name = f"column_{i + 1}"
        columns[name] = col
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(body))).astype("string")
    frame[SOURCE_FILE] = source
    frame[SOURCE_ROW] = pd.RangeIndex(1, len(body) + 1)
    return frame


def _find_sheet(sheet_names: list[str], wanted: str) -> str | None:
    by_key = {s.strip().casefold(): s for s in sheet_names}
    return by_key.get(str(wanted).strip().casefold())


def read(delivery: Delivery, site: SiteConfig) -> AdapterOutput:
    """Read one workbook extract of an ``xlsx`` site into exchange-format frames."""
    spec: MappingSpec = spec_for_site(site)
    contract = load_contract()
    mapping = site.mapping or {}
    members = load_members(delivery, site)
    pattern = str(mapping.get("workbook", "*.xlsx"))
    books = sorted(
        n for n in members if fnmatch.fnmatchcase(n.lower(), pattern.lower()) and not n.startswith("~$")
    )
    if not books:
        raise DeliveryError(
            f"site {site.site_id}: extract {delivery.extract_id} has no workbook matching {pattern!r} "
            f"(files found: {', '.join(sorted(members)) or 'none'}); deliver the .xlsx or fix mapping.workbook",
            file_name=pattern,
            rule="required_file",
        )
    if len(books) > 1:
        raise DeliveryError(
            f"site {site.site_id}: extract {delivery.extract_id} has {len(books)} workbooks matching {pattern!r} "
            f"({', '.join(books)}); deliver one workbook per extract or make mapping.workbook more specific",
            file_name=books[0],
            rule="required_file",
        )
    book = books[0]
    data = members[book]
    _check_workbook_bytes(data, site_id=site.site_id, name=book)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise DeliveryError(
            f"site {site.site_id}: {book} cannot be opened as an .xlsx workbook ({type(exc).__name__}: {exc}); "
            "open it in Excel, save it as .xlsx again and deliver it again",
            file_name=book,
            rule="delivery_readable",
        ) from exc
    sheets_config = mapping.get("sheets") or {}
    unknown = sorted(set(sheets_config) - set(contract.entities))
    if unknown:
        raise DeliveryError(
            f"site {site.site_id}: mapping.sheets has unknown entit(y/ies) {unknown}; use "
            f"{', '.join(contract.entities)}",
            rule="site_config",
        )
    frames: dict[str, pd.DataFrame] = {}
    findings: list[Finding] = []
    extra: dict[str, list[str]] = {}
    used: set[str] = set()
    try:
        for entity_name, entity in contract.entities.items():
            wanted = str(sheets_config.get(entity_name, entity_name))
            sheet = _find_sheet(workbook.sheetnames, wanted)
            if sheet is None:
                if entity.required_file:
                    raise DeliveryError(
                        f"site {site.site_id}: {book} has no sheet {wanted!r} for {entity_name} (required in every "
                        f"delivery); the workbook has sheets {workbook.sheetnames}. Rename the sheet or set "
                        f"mapping.sheets.{entity_name} in {spec.config_name}",
                        file_name=book,
                        rule="required_file",
                    )
                continue
            used.add(sheet)
            source = f"{book}#{sheet}"
            try:
                rows = list(workbook[sheet].iter_rows(values_only=True))
            except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
                raise DeliveryError(
                    f"site {site.site_id}: sheet {sheet!r} of {book} is damaged ({exc}); save the workbook again",
                    file_name=book,
                    rule="delivery_readable",
                ) from exc
            while rows and all(v is None or (isinstance(v, str) and not v.strip()) for v in rows[-1]):
                rows.pop()  # formatted but empty rows at the bottom are not records
            if not rows:
                if entity.required_file:
                    raise DeliveryError(
                        f"site {site.site_id}: sheet {sheet!r} of {book} is empty; it needs a header row",
                        file_name=book,
                        rule="header_present",
                    )
                findings.append(
                    Finding(
                        rule="empty_sheet",
                        category="completeness",
                        severity="info",
                        message=f"sheet {sheet!r} of {book} is empty; no {entity_name} were read",
                        file_name=source,
                    )
                )
                continue
            raw = _sheet_frame(rows, source)
            raw, empty = drop_empty_rows(raw, file_name=source)
            mapped = map_frame(raw, entity=entity_name, spec=spec, file_name=source)
            findings += empty + mapped.findings
            if mapped.extra_columns:
                extra[entity_name] = mapped.extra_columns
            frames[entity_name] = mapped.frame
        for sheet in workbook.sheetnames:
            if sheet not in used:
                findings.append(
                    Finding(
                        rule="unknown_sheet",
                        category="conformance",
                        severity="info",
                        message=f"sheet {sheet!r} of {book} is not mapped to an entity; it was not loaded",
                        file_name=book,
                    )
                )
    finally:
        workbook.close()
    return AdapterOutput(
        frames=frames,
        findings=findings,
        files={book: data},
        extracted_at=delivery.extracted_at or extract_id_date(delivery.extract_id),
        extra_columns=extra,
    )
