"""Sites that send their own CSV layout: a folder (or ``.zip``) of CSV files per extract.

The files are found with ``mapping.files`` globs, decoded with the declared
``mapping.encoding`` and split with ``mapping.delimiter``; the shared forward
mapping (:mod:`poem_registry.adapters.mapping`) then renames columns and
rewrites codes, booleans, dates, decimals and units into exchange-format text.

Reading is strict about the *container* (a file in the wrong encoding, a binary
file named ``.csv``, a row with more fields than the header, a renamed column)
because those would otherwise become thousands of confusing row-level
rejections; such a delivery raises :class:`DeliveryError` telling the site what
to change. Everything about *values* is left to the shared validator.

Row numbers: ``_source_row`` is the 1-based record number after the header, so
a quoted value spanning several lines still counts as one row, and a blank line
counts as a row (as a spreadsheet shows it) but is skipped with an ``empty_row``
info finding.
"""

from __future__ import annotations

import fnmatch
import io
import json
import re
from pathlib import Path

import pandas as pd

from poem_registry.adapters.base import (
    SOURCE_FILE,
    SOURCE_ROW,
    AdapterOutput,
    Delivery,
    DeliveryError,
    Finding,
)
from poem_registry.adapters.files import read_folder_files, read_zip_members, sha256_bytes
from poem_registry.adapters.mapping import MappingSpec, drop_empty_rows, map_frame, spec_for_site
from poem_registry.contract import load_contract
from poem_registry.sites import SiteConfig

_DATE_ID = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls / encrypted Office files
MANIFEST = "manifest.json"


# ---------------------------------------------------------------------------- discovery and containers


def extract_id_date(extract_id: str) -> str | None:
    """``2025-03-01_monthly`` -> ``2025-03-01``: the extract date when the folder name starts with one."""
    m = _DATE_ID.match(extract_id)
    return m.group(1) if m else None


def discover(site: SiteConfig, landing_dir: Path, *, bare_suffixes: tuple[str, ...] = ()) -> list[Delivery]:
    """Every extract folder or ``.zip`` in the site's landing folder, sorted by extract id.

    Hidden and ``_``-prefixed entries are ignored (work areas of the transfer
    tooling). When both ``X/`` and ``X.zip`` exist the folder is used: it is the
    unpacked form of the same extract. ``bare_suffixes`` lets the spreadsheet
    adapter also accept a workbook dropped directly into the landing folder.
    """
    root = Path(landing_dir) / site.landing_name
    if not root.is_dir():
        return []
    found: dict[str, Path] = {}
    for p in root.iterdir():
        if p.name.startswith((".", "_", "~$")):
            continue
        suffix = p.suffix.lower()
        if p.is_dir():
            found[p.name] = p
        elif p.is_file() and (suffix == ".zip" or suffix in bare_suffixes):
            found.setdefault(p.stem, p)
    return [
        Delivery(site_id=site.site_id, extract_id=eid, path=found[eid], extracted_at=extract_id_date(eid))
        for eid in sorted(found)
    ]


def load_members(delivery: Delivery, site: SiteConfig) -> dict[str, bytes]:
    """File name -> bytes of an extract folder or zip (zip checked for unsafe paths, links and bombs)."""
    path = Path(delivery.path)
    if path.is_dir():
        return read_folder_files(path, site.site_id)
    if path.is_file() and path.suffix.lower() == ".zip":
        return read_zip_members(path, site.site_id)
    if path.is_file():
        return {path.name: path.read_bytes()}
    raise DeliveryError(
        f"site {site.site_id}: extract {delivery.extract_id} is gone ({path} does not exist); was it moved "
        "while the run was in progress?",
        file_name=path.name,
        rule="delivery_readable",
    )


def match_files(
    names: list[str], globs: dict[str, str], site: SiteConfig
) -> tuple[dict[str, list[str]], list[str]]:
    """Entity -> matching file names (sorted), plus the names no glob matched.

    Matching is on the file name, ignoring case (``POEM_CASES.CSV`` is the same
    export on another machine). A file matched by two entities' globs is an
    error: guessing would load follow-ups as procedures.
    """
    matches: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for name in sorted(names):
        hits = [e for e, g in globs.items() if fnmatch.fnmatchcase(name.lower(), g.lower())]
        if len(hits) > 1:
            raise DeliveryError(
                f"site {site.site_id}: {name} matches the file patterns of {' and '.join(hits)} "
                f"({', '.join(repr(globs[h]) for h in hits)}); make mapping.files more specific",
                file_name=name,
                rule="site_config",
            )
        if hits:
            matches.setdefault(hits[0], []).append(name)
        else:
            unmatched.append(name)
    return matches, unmatched


# ---------------------------------------------------------------------------- decoding and parsing


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode_text(data: bytes, *, spec: MappingSpec, file_name: str) -> str:
    """Decode with the declared encoding, refusing files that are clearly in another one.

    A UTF-8 file declared as cp1252 would decode "successfully" into mojibake
    (``Ã©`` for ``é``) and load wrong text into the registry, so non-ASCII bytes
    that form valid UTF-8 under a cp1252/latin-1 declaration are rejected too.
    """
    site_id = spec.site_id
    if not data.strip():
        raise DeliveryError(
            f"site {site_id}: {file_name} is empty; it needs at least the header row",
            file_name=file_name,
            rule="header_present",
        )
    if data.startswith((_ZIP_MAGIC, _OLE_MAGIC)) or b"\x00" in data[:4096]:
        kind = (
            "an Excel workbook or zip archive" if data.startswith((_ZIP_MAGIC, _OLE_MAGIC)) else "binary data"
        )
        raise DeliveryError(
            f"site {site_id}: {file_name} is not a CSV text file (it contains {kind}); export it as CSV "
            "(File > Save As > CSV) or configure the site with adapter: xlsx",
            file_name=file_name,
            rule="delivery_readable",
        )
    declared = spec.encoding.replace("-sig", "")
    if spec.encoding != "utf-8-sig" and (data.startswith(b"\xef\xbb\xbf") or not data.isascii()):
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
        else:
            raise DeliveryError(
                f"site {site_id}: {file_name} is UTF-8 text but mapping.encoding says {declared}; "
                f"decoding it as {declared} would garble accented letters. Set `encoding: utf-8` in "
                f"{spec.config_name} or export the file as {declared}",
                file_name=file_name,
                rule="encoding",
            )
    try:
        return data.decode(spec.encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        guess = ""
        if spec.encoding == "utf-8-sig":
            snippet = data[max(0, exc.start - 20) : exc.start + 20].decode("cp1252", errors="replace")
            guess = f" (read as cp1252 it says {snippet.strip()!r}: the file looks like Windows-1252)"
        raise DeliveryError(
            f"site {site_id}: {file_name} is not valid {declared} text: byte 0x{bad} at line "
            f"{_line_of(data, exc.start)}{guess}; export the file as {declared} or set mapping.encoding "
            f"in {spec.config_name} to the encoding the export really uses (utf-8, cp1252 or latin-1)",
            file_name=file_name,
            rule="encoding",
        ) from exc


def parse_delimited(text: str, *, spec: MappingSpec, file_name: str) -> pd.DataFrame:
    """CSV text -> frame of site column names and string cells, with ``_source_file``/``_source_row``.

    Uses the pandas C parser (RFC 4180 quoting, quoted newlines, CRLF) with no
    type inference at all: every cell stays the exact text the site sent.
    """
    if "\r" in text:  # CRLF (and old Mac CR) line ends, also inside quoted values: one newline convention
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        grid = pd.read_csv(
            io.StringIO(text),
            sep=spec.delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
            quotechar='"',
            doublequote=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise DeliveryError(
            f"site {spec.site_id}: {file_name} has no header row", file_name=file_name, rule="header_present"
        ) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DeliveryError(
            f"site {spec.site_id}: {file_name} is not a well-formed CSV with delimiter {spec.delimiter!r} ({' '.join(str(exc).split())}); "
            "a value containing the delimiter or a line break must be in double quotes, and every row needs "
            "the same number of fields as the header",
            file_name=file_name,
            rule="csv_well_formed",
        ) from exc
    header = ["" if pd.isna(h) else str(h).strip().lstrip("\ufeff") for h in grid.iloc[0]]
    first_line = text.split("\n", 1)[0]
    others = [d for d in (";", ",", "\t", "|") if d != spec.delimiter and d in first_line]
    if len(header) == 1 and others:
        raise DeliveryError(
            f"site {spec.site_id}: the header of {file_name} has no {spec.delimiter!r} but contains "
            f"{others[0]!r}; the file seems to use {others[0]!r} as delimiter. Set mapping.delimiter in "
            f"{spec.config_name} or export with the agreed delimiter",
            file_name=file_name,
            rule="csv_well_formed",
        )
    data = grid.iloc[1:].reset_index(drop=True)
    keep: list[int] = []
    names: list[str] = []
    for i, name in enumerate(header):
        col = data.iloc[:, i]
        if not name:
            if (col.isna() | (col.astype("string").str.strip() == "")).all():
                continue  # trailing delimiter: an empty column without a name carries nothing
            name = f"column_{i + 1}"
        keep.append(i)
        names.append(name)
    frame = data.iloc[:, keep].copy()
    frame.columns = names
    frame = frame.astype("string")
    frame[SOURCE_FILE] = file_name
    frame[SOURCE_ROW] = pd.RangeIndex(1, len(frame) + 1)
    return frame


# ---------------------------------------------------------------------------- manifest


def _read_manifest(
    members: dict[str, bytes], record_counts: dict[str, int], site: SiteConfig
) -> tuple[str | None, list[Finding]]:
    """Check an optional manifest.json (hashes and row counts of the files it lists) and return extracted_at."""
    if MANIFEST not in members:
        return None, []
    try:
        manifest = json.loads(members[MANIFEST].decode("utf-8-sig"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        return None, [
            Finding(
                rule="manifest_valid",
                category="conformance",
                severity="warning",
                message=f"manifest.json could not be read ({exc}); the files were read without it",
                file_name=MANIFEST,
            )
        ]
    if manifest.get("site_id") not in (None, site.site_id):
        raise DeliveryError(
            f"site {site.site_id}: manifest.json says site_id {manifest.get('site_id')!r}; this delivery is in the "
            f"landing folder of {site.site_id}. Was it put in the wrong folder?",
            file_name=MANIFEST,
            rule="manifest_site",
        )
    for name, meta in (manifest.get("files") or {}).items():
        meta = meta if isinstance(meta, dict) else {}
        if name not in members:
            raise DeliveryError(
                f"site {site.site_id}: manifest.json lists {name} but the delivery has no such file",
                file_name=name,
                rule="manifest_files",
            )
        if meta.get("sha256") and str(meta["sha256"]).lower() != sha256_bytes(members[name]):
            raise DeliveryError(
                f"site {site.site_id}: {name} does not match its SHA-256 in manifest.json; the file changed or "
                "was truncated in transfer. Deliver it again.",
                file_name=name,
                rule="manifest_hash",
            )
        if (
            meta.get("rows") is not None
            and name in record_counts
            and int(meta["rows"]) != record_counts[name]
        ):
            raise DeliveryError(
                f"site {site.site_id}: {name} has {record_counts[name]} data rows but manifest.json says "
                f"{meta['rows']}; the file may be truncated. Deliver it again.",
                file_name=name,
                rule="manifest_rows",
            )
    extracted = manifest.get("extracted_at")
    return (str(extracted) if extracted else None), []


# ---------------------------------------------------------------------------- read


def read(delivery: Delivery, site: SiteConfig) -> AdapterOutput:
    """Read one extract of a ``csv_layout`` site into exchange-format frames."""
    spec = spec_for_site(site)
    contract = load_contract()
    members = load_members(delivery, site)
    configured = (site.mapping or {}).get("files") or {}
    unknown = sorted(set(configured) - set(contract.entities))
    if unknown:
        raise DeliveryError(
            f"site {site.site_id}: mapping.files has unknown entit(y/ies) {unknown}; use "
            f"{', '.join(contract.entities)}",
            rule="site_config",
        )
    globs = {name: str(configured.get(name, e.file)) for name, e in contract.entities.items()}
    data_names = [n for n in members if n != MANIFEST]
    matches, unmatched = match_files(data_names, globs, site)
    if "procedures" not in matches:
        raise DeliveryError(
            f"site {site.site_id}: extract {delivery.extract_id} has no procedures file matching "
            f"{globs['procedures']!r} (required in every delivery; files found: "
            f"{', '.join(sorted(members)) or 'none'}); check the file name or mapping.files.procedures",
            file_name=globs["procedures"],
            rule="required_file",
        )
    findings: list[Finding] = [
        Finding(
            rule="unknown_file",
            category="conformance",
            severity="warning",
            message=f"{name} matches no pattern in mapping.files; it was not loaded",
            file_name=name,
        )
        for name in unmatched
    ]
    frames: dict[str, pd.DataFrame] = {}
    extra: dict[str, list[str]] = {}
    files: dict[str, bytes | None] = {}
    record_counts: dict[str, int] = {}
    for entity in contract.entities:
        parts = []
        for name in matches.get(entity, []):
            data = members[name]
            files[name] = data
            text = decode_text(data, spec=spec, file_name=name)
            raw = parse_delimited(text, spec=spec, file_name=name)
            record_counts[name] = len(raw)
            raw, empty = drop_empty_rows(raw, file_name=name)
            mapped = map_frame(raw, entity=entity, spec=spec, file_name=name)
            findings += empty + mapped.findings
            for col in mapped.extra_columns:
                if col not in extra.setdefault(entity, []):
                    extra[entity].append(col)
            parts.append(mapped.frame)
        if parts:
            frames[entity] = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    extracted_at, manifest_findings = _read_manifest(members, record_counts, site)
    findings += manifest_findings
    return AdapterOutput(
        frames=frames,
        findings=findings,
        files=files,
        extracted_at=extracted_at or delivery.extracted_at or extract_id_date(delivery.extract_id),
        extra_columns=extra,
    )
