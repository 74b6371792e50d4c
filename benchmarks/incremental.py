"""One new extract from one canonical site: about 1% new rows plus some corrections.

New procedures and new follow-ups are cloned from the site's ground truth (so every value
is valid) with fresh ids and dates in the month after the last generated extract;
corrections re-send existing procedures with a changed ``procedure_minutes`` and a later
``record_updated_at`` (the exchange format's correction rule). A manifest with row counts
and SHA-256 hashes goes with it, as the generic sites deliver.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

EXTRACT_ID = "2026-10-31"
EXTRACTED_AT = "2026-11-01T02:00:00"
UPDATED_AT = "2026-10-31T10:00:00"


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def deliver_increment(root: Path, site_id: str, *, fraction: float, total_rows: int, seed: int) -> dict:
    """Write ``<root>/landing/<site_id>/2026-10-31/``; ``fraction`` of ``total_rows`` new rows
    (about 70% procedures, 30% follow-ups) and a tenth as many corrections."""
    rng = np.random.default_rng([seed, 99])
    truth = root / "truth" / site_id
    procs = pd.read_csv(truth / "procedures.csv", dtype=str, keep_default_na=False)
    fups = pd.read_csv(truth / "followups.csv", dtype=str, keep_default_na=False)
    n_new = max(3, round(total_rows * fraction))
    n_proc, n_fu = max(1, round(n_new * 0.7)), max(1, n_new - round(n_new * 0.7))
    n_corr = max(1, min(len(procs), round(n_new * 0.1)))

    # new procedures: cloned rows, fresh ids, October 2026
    new = procs.iloc[rng.integers(0, len(procs), n_proc)].reset_index(drop=True).copy()
    days = pd.Timestamp("2026-10-01") + pd.to_timedelta(rng.integers(0, 25, n_proc), unit="D")
    age = pd.to_numeric(new["age_at_procedure"], errors="coerce").fillna(55).astype(int)
    new["procedure_id"] = [f"INC{i:07d}" for i in range(n_proc)]
    new["patient_id"] = [f"{90000000 + i}" for i in range(n_proc)]
    new["procedure_date"] = days.strftime("%Y-%m-%d")
    new["procedure_type"] = np.where(new["procedure_type"].isin(["redo_poem"]), "poem", new["procedure_type"])
    new["prior_poem"] = np.where(new["prior_poem"] == "true", "false", new["prior_poem"])
    new["age_at_procedure"] = age.astype(str)
    new["birth_year"] = (2026 - age - 1).astype(str)
    new["baseline_eckardt_date"] = np.where(new["baseline_eckardt_date"] != "",
                                            (days - pd.Timedelta(days=20)).strftime("%Y-%m-%d"), "")
    new["discharge_date"] = np.where(new["discharge_date"] != "",
                                     (days + pd.Timedelta(days=2)).strftime("%Y-%m-%d"), "")
    new["record_updated_at"] = UPDATED_AT

    # corrections: existing procedures, one field changed, later record_updated_at
    corr = procs.iloc[rng.choice(len(procs), n_corr, replace=False)].copy()
    minutes = pd.to_numeric(corr["procedure_minutes"], errors="coerce").fillna(90).astype(int)
    corr["procedure_minutes"] = (minutes.clip(6, 590) + 1).astype(str)
    corr["record_updated_at"] = UPDATED_AT
    procedures = pd.concat([new, corr], ignore_index=True)

    # new follow-ups of the new procedures (a 14-day visit)
    fu = fups.iloc[rng.integers(0, len(fups), n_fu)].reset_index(drop=True).copy()
    parent = rng.integers(0, n_proc, n_fu)
    fu["assessment_id"] = [f"INCFU{i:07d}" for i in range(n_fu)]
    fu["procedure_id"] = new["procedure_id"].to_numpy()[parent]
    fu["assessment_date"] = (days[parent] + pd.Timedelta(days=14)).strftime("%Y-%m-%d").to_numpy()
    fu["assessment_date"] = np.minimum(fu["assessment_date"].to_numpy(), "2026-10-30")
    fu["record_updated_at"] = UPDATED_AT

    target = root / "landing" / site_id / EXTRACT_ID
    target.mkdir(parents=True, exist_ok=True)
    files = {"procedures.csv": _csv(procedures), "followups.csv": _csv(fu)}
    manifest = {"site_id": site_id, "extract_id": EXTRACT_ID, "format_version": 1, "extracted_at": EXTRACTED_AT,
                "files": {}}
    for name, data in files.items():
        (target / name).write_bytes(data)
        rows = len(procedures) if name == "procedures.csv" else len(fu)
        manifest["files"][name] = {"rows": rows, "sha256": hashlib.sha256(data).hexdigest()}
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return {"extract_id": EXTRACT_ID, "path": str(target), "new_rows": n_proc + n_fu, "new_procedures": n_proc,
            "new_followups": n_fu, "corrections": n_corr, "fraction_of_delivered_rows": fraction}
