"""Helpers to write exchange-format deliveries by hand, row by row."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from poem_registry.contract import load_contract


def procedure(pid: str, **overrides) -> dict:
    row = {
        "procedure_id": pid, "patient_id": f"MRN{pid}", "operator_id": "1234567890",
        "procedure_date": "2024-03-01", "procedure_type": "poem", "sex": "female", "age_at_procedure": "51",
        "diagnosis": "achalasia_type_2", "baseline_eckardt_date": "2024-02-01",
        "baseline_eckardt_dysphagia": "3", "baseline_eckardt_regurgitation": "2",
        "baseline_eckardt_chest_pain": "1", "baseline_eckardt_weight_loss": "2", "procedure_minutes": "95",
        "technical_success": "true", "record_updated_at": "2024-03-02T10:00:00",
    }
    row.update(overrides)
    return row


def followup(aid: str, pid: str, **overrides) -> dict:
    row = {"assessment_id": aid, "procedure_id": pid, "assessment_date": "2024-07-01", "mode": "in_person",
           "eckardt_dysphagia": "1", "eckardt_regurgitation": "0", "eckardt_chest_pain": "0",
           "eckardt_weight_loss": "0", "eckardt_total": "1"}
    row.update(overrides)
    return row


def to_csv(rows: list[dict], entity: str, extra_columns: tuple[str, ...] = ()) -> bytes:
    columns = load_contract().entities[entity].column_names + list(extra_columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue().encode("utf-8")


def write_site(sites_dir: Path, site_id: str, adapter: str = "canonical") -> None:
    (sites_dir / f"{site_id}.yml").write_text(
        f"site_id: {site_id}\nname: {site_id.title()} Hospital\nadapter: {adapter}\ntier: medium\n", encoding="utf-8")


def write_delivery(landing: Path, site_id: str, extract_id: str, files: dict[str, bytes], *,
                   manifest: bool | dict = False) -> Path:
    folder = landing / site_id / extract_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    if manifest:
        body = manifest if isinstance(manifest, dict) else {
            "site_id": site_id, "extract_id": extract_id, "format_version": 1,
            "extracted_at": f"{extract_id}T00:00:00",
            "files": {n: {"rows": d.decode("utf-8").count("\r\n") - 1, "sha256": hashlib.sha256(d).hexdigest()}
                      for n, d in files.items()}}
        (folder / "manifest.json").write_text(json.dumps(body), encoding="utf-8")
    return folder


@pytest.fixture
def site(poem_home):
    write_site(poem_home.sites_dir, "alpha")
    return poem_home
