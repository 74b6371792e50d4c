"""Quarantine: rejected data is kept, with a report a site data manager can act on.

Layout: ``<quarantine>/<site_id>/<batch_id>/`` with ``report.md`` (for people),
``report.json`` (for tools) and ``rejected_<entity>.csv`` (the rejected rows with
the reasons, identifiers replaced by their pseudonyms). The delivered files
themselves stay untouched in the landing folder; the report names them and their
SHA-256 so the exact input can be found again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from poem_registry.safe_csv import write_csv


@dataclass
class QuarantineReport:
    site_id: str
    extract_id: str
    batch_id: str
    whole_batch: bool
    reason: str
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    rejected: dict[str, pd.DataFrame] = field(default_factory=dict)  # entity -> rejected rows with reasons
    failures: pd.DataFrame | None = None  # one row per (row, rule): source_file, source_row, column, rule, message
    findings: list[dict] = field(default_factory=list)


def _fix_hint(whole_batch: bool) -> str:
    if whole_batch:
        return ("Nothing from this delivery was loaded. Fix the problem named above in the site's export and "
                "deliver a new extract (a new folder or zip); re-sending the same files changes nothing.")
    return ("The other rows of this delivery were loaded. Correct the rows listed below at the source and "
            "send them again in the next extract (same ids, a later record_updated_at): they will be loaded "
            "as corrections.")


def write_quarantine(root: Path, report: QuarantineReport) -> Path:
    folder = Path(root) / report.site_id / report.batch_id
    folder.mkdir(parents=True, exist_ok=True)
    for entity, rows in report.rejected.items():
        if len(rows):
            write_csv(rows, folder / f"rejected_{entity}.csv")
    failures = report.failures if report.failures is not None else pd.DataFrame()
    lines = [
        f"# Quarantine: site {report.site_id}, extract {report.extract_id}",
        "",
        f"Batch `{report.batch_id}`. "
        + ("**The whole delivery was rejected.**" if report.whole_batch else "**Some rows were rejected.**"),
        "",
        f"Reason: {report.reason}",
        "",
        "## What to do",
        "",
        _fix_hint(report.whole_batch),
        "",
        "## Files",
        "",
        *[f"- `{name}` sha256 `{digest}`" for name, digest in sorted(report.files.items())],
        "",
    ]
    if len(failures):
        counts = failures.groupby(["source_file", "rule"], dropna=False).size().reset_index(name="rows")
        lines += ["## Rules broken", "", "| file | rule | rows |", "|---|---|---|"]
        lines += [f"| {r.source_file} | {r.rule} | {r.rows} |" for r in counts.itertuples()]
        lines += ["", "## Rows (first 200)", ""]
        for r in failures.head(200).itertuples():
            lines.append(f"- {r.message}")
        lines.append("")
    if report.findings:
        lines += ["## Other findings", ""]
        lines += [f"- [{f['severity']}] {f['message']}" for f in report.findings[:200]]
        lines.append("")
    (folder / "report.md").write_text("\n".join(lines), encoding="utf-8")
    payload = {
        "site_id": report.site_id,
        "extract_id": report.extract_id,
        "batch_id": report.batch_id,
        "whole_batch": report.whole_batch,
        "reason": report.reason,
        "files": report.files,
        "rejected_rows": {e: len(r) for e, r in report.rejected.items()},
        "failures": json.loads(failures.to_json(orient="records", date_format="iso")) if len(failures) else [],
        "findings": report.findings,
    }
    (folder / "report.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return folder
