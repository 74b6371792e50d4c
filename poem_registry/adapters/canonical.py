"""Sites that deliver the exchange format itself: a folder or a .zip per extract.

When ``manifest.json`` is present, its site, format version, row counts and
SHA-256 hashes are checked before anything is loaded.
"""

from __future__ import annotations

import csv
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
from poem_registry.contract import load_contract
from poem_registry.sites import SiteConfig

_DATE_ID = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def extract_date(extract_id: str) -> str | None:
    """Extract ids that start with a date (``2025-03-31``, ``2025-03-31_corr``) carry their extraction date."""
    m = _DATE_ID.match(extract_id)
    return m.group(1) if m else None


def discover(site: SiteConfig, landing_dir: Path) -> list[Delivery]:
    """Every extract folder or zip of the site, in extract order."""
    root = Path(landing_dir) / site.landing_name
    if not root.is_dir():
        return []
    deliveries = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.suffix.lower() == ".zip":
            extract_id = p.stem if p.suffix.lower() == ".zip" else p.name
            deliveries.append(Delivery(site_id=site.site_id, extract_id=extract_id, path=p))
    return deliveries


def parse_csv_bytes(data: bytes, file_name: str, site_id: str, *, encoding: str = "utf-8-sig",
                    delimiter: str = ",") -> pd.DataFrame:
    """An RFC 4180 CSV as strings; empty cell = missing; adds the 1-based source row."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DeliveryError(
            f"site {site_id}: {file_name} is not valid {encoding.replace('-sig', '')} text "
            f"(byte {exc.start}: {exc.reason}); export the file as UTF-8",
            file_name=file_name, rule="encoding",
        ) from exc
    if not text.strip():
        raise DeliveryError(f"site {site_id}: {file_name} is empty; it needs at least the header row",
                            file_name=file_name, rule="header_present")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=delimiter,
                            engine="c", skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DeliveryError(f"site {site_id}: {file_name} is not a well-formed CSV ({exc}); "
                            "check quoting and the number of fields per row", file_name=file_name,
                            rule="csv_well_formed") from exc
    # pandas renames repeated names to "x.1"; read the header ourselves to catch them.
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=delimiter))
    header = [h.strip() for h in header]
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DeliveryError(f"site {site_id}: {file_name} has duplicate column(s) {dupes}",
                            file_name=file_name, rule="header_unique")
    unnamed = [c for c in frame.columns if c.startswith("Unnamed:")]
    if unnamed:
        raise DeliveryError(f"site {site_id}: {file_name} has column(s) without a header name",
                            file_name=file_name, rule="header_unique")
    frame = frame.replace("", pd.NA).astype("string")
    frame[SOURCE_FILE] = file_name
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    return frame


def _check_manifest(manifest_bytes: bytes, members: dict[str, bytes], frames: dict[str, pd.DataFrame],
                    delivery: Delivery) -> tuple[str | None, list[Finding]]:
    site_id = delivery.site_id
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeliveryError(f"site {site_id}: manifest.json is not valid JSON ({exc})", file_name="manifest.json",
                            rule="manifest_valid") from exc
    if not isinstance(manifest, dict):
        raise DeliveryError(f"site {site_id}: manifest.json must be a JSON object", file_name="manifest.json",
                            rule="manifest_valid")
    if manifest.get("site_id") not in (None, site_id):
        raise DeliveryError(
            f"site {site_id}: manifest.json says site_id {manifest.get('site_id')!r}; this delivery is in the "
            f"landing folder of {site_id}. Was it put in the wrong folder?", file_name="manifest.json",
            rule="manifest_site")
    if manifest.get("format_version") not in (None, 1):
        raise DeliveryError(f"site {site_id}: manifest.json format_version {manifest.get('format_version')!r} is "
                            "not supported (this registry reads version 1)", file_name="manifest.json",
                            rule="manifest_version")
    findings = []
    listed = manifest.get("files") or {}
    for name, meta in listed.items():
        if name not in members:
            raise DeliveryError(f"site {site_id}: manifest.json lists {name} but the delivery has no such file",
                                file_name=name, rule="manifest_files")
        if meta.get("sha256") and meta["sha256"].lower() != sha256_bytes(members[name]):
            raise DeliveryError(f"site {site_id}: {name} does not match its SHA-256 in manifest.json; the file "
                                "changed or was truncated in transfer. Deliver it again.", file_name=name,
                                rule="manifest_hash")
        entity = load_contract().entity_for_file(name)
        if (entity and meta.get("rows") is not None and entity.name in frames
                and int(meta["rows"]) != len(frames[entity.name])):
                raise DeliveryError(f"site {site_id}: {name} has {len(frames[entity.name])} data rows but "
                                    f"manifest.json says {meta['rows']}", file_name=name, rule="manifest_rows")
    for name in members:
        if name != "manifest.json" and name not in listed:
            findings.append(Finding(rule="manifest_files", category="conformance", severity="warning",
                                    message=f"{name} is in the delivery but not listed in manifest.json",
                                    file_name=name))
    return manifest.get("extracted_at"), findings


def read(delivery: Delivery, site: SiteConfig) -> AdapterOutput:
    path = Path(delivery.path)
    members = read_zip_members(path, site.site_id) if path.is_file() else read_folder_files(path, site.site_id)
    contract = load_contract()
    frames: dict[str, pd.DataFrame] = {}
    findings: list[Finding] = []
    for name in sorted(members):
        if name == "manifest.json":
            continue
        entity = contract.entity_for_file(name)
        if entity is None:
            findings.append(Finding(rule="unknown_file", category="conformance", severity="warning",
                                    message=f"{name} is not a file of the exchange format; it was not loaded",
                                    file_name=name))
            continue
        frames[entity.name] = parse_csv_bytes(members[name], name, site.site_id)
    if "procedures" not in frames:
        raise DeliveryError(
            f"site {site.site_id}: extract {delivery.extract_id} has no procedures.csv (required in every "
            f"delivery; files found: {', '.join(sorted(members)) or 'none'})", file_name="procedures.csv",
            rule="required_file")
    extracted_at = None
    if "manifest.json" in members:
        extracted_at, manifest_findings = _check_manifest(members["manifest.json"], members, frames, delivery)
        findings += manifest_findings
    extracted_at = extracted_at or extract_date(delivery.extract_id)
    files = {n: b for n, b in members.items() if n != "manifest.json"}
    return AdapterOutput(frames=frames, findings=findings, files=files, extracted_at=extracted_at)
