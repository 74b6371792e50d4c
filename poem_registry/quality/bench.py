"""Clean exchange-format frames (values as strings) and a timing harness for the delivery suites.

``python -m poem_registry.quality.bench 100000`` validates a clean procedures
file and its follow-ups of that size and prints the time per file. The same
generator feeds the quality tests, which plant one defect at a time in it.
"""

from __future__ import annotations

import sys
import time
from datetime import date

import numpy as np
import pandas as pd

BENCH_TODAY = date(2025, 6, 30)


def _dates(rng: np.random.Generator, n: int, start: date, days: int) -> pd.Series:
    offsets = rng.integers(0, days, n)
    return pd.Series(pd.Timestamp(start) + pd.to_timedelta(offsets, unit="D"))


def clean_procedures(n: int, *, seed: int = 1, file: str = "procedures.csv") -> pd.DataFrame:
    """``n`` valid procedures: every column of the contract, every rule satisfied."""
    rng = np.random.default_rng(seed)
    proc_date = _dates(rng, n, date(2015, 1, 1), 3000)
    age = rng.integers(18, 85, n)
    baseline = proc_date - pd.to_timedelta(rng.integers(1, 90, n), unit="D")
    success = rng.random(n) > 0.03
    capno = rng.random(n) < 0.2
    frame = pd.DataFrame(
        {
            "procedure_id": [f"P{i:07d}" for i in range(n)],
            "patient_id": [f"MRN{i:08d}" for i in range(n)],
            "operator_id": [f"OP{i % 7}" for i in range(n)],
            "procedure_date": proc_date.dt.strftime("%Y-%m-%d"),
            "procedure_type": np.where(rng.random(n) < 0.9, "poem", "poem_f"),
            "sex": rng.choice(["female", "male"], n),
            "birth_year": (proc_date.dt.year - age).astype(str),
            "age_at_procedure": age.astype(str),
            "diagnosis": rng.choice(["achalasia_type_1", "achalasia_type_2", "achalasia_type_3"], n),
            "cc_version": "v4",
            "esophageal_morphology": "straight",
            "hiatal_hernia": "none",
            "chagas": "false",
            "prior_pneumatic_dilation": rng.integers(0, 3, n).astype(str),
            "prior_botulinum": "0",
            "prior_heller": "false",
            "prior_poem": "false",
            "baseline_eckardt_date": baseline.dt.strftime("%Y-%m-%d"),
            "baseline_eckardt_dysphagia": rng.integers(1, 4, n).astype(str),
            "baseline_eckardt_regurgitation": rng.integers(0, 4, n).astype(str),
            "baseline_eckardt_chest_pain": rng.integers(0, 4, n).astype(str),
            "baseline_eckardt_weight_loss": rng.integers(0, 4, n).astype(str),
            "baseline_irp_mmhg": np.round(rng.uniform(10, 60, n), 1).astype(str),
            "baseline_les_pressure_mmhg": np.round(rng.uniform(10, 80, n), 1).astype(str),
            "baseline_tbe_5min_cm": np.round(rng.uniform(0, 15, n), 1).astype(str),
            "approach": rng.choice(["anterior", "posterior"], n),
            "myotomy_depth": "full_thickness",
            "tunnel_length_cm": np.round(rng.uniform(8, 16, n), 1).astype(str),
            "myotomy_esophageal_length_cm": np.round(rng.uniform(4, 12, n), 1).astype(str),
            "myotomy_gastric_length_cm": np.round(rng.uniform(1, 3, n), 1).astype(str),
            "procedure_minutes": rng.integers(40, 150, n).astype(str),
            "technical_success": np.where(success, "true", "false"),
            "aborted_reason": np.where(success, "", "fibrosis"),
            "fundoplication": "false",
            "mucosotomy_intraop": "false",
            "capnoperitoneum": np.where(capno, "true", "false"),
            "needle_decompression": np.where(capno & (rng.random(n) < 0.5), "true", "false"),
            "capnothorax": "false",
            "subcutaneous_emphysema": "false",
            "planned_los_nights": "1",
            "discharge_date": (proc_date + pd.to_timedelta(1, unit="D")).dt.strftime("%Y-%m-%d"),
            "record_updated_at": (proc_date + pd.to_timedelta(2, unit="D")).dt.strftime("%Y-%m-%dT10:00:00"),
        }
    )
    frame["_source_file"] = file
    frame["_source_row"] = np.arange(1, n + 1)
    return frame


def clean_followups(procedures: pd.DataFrame, *, seed: int = 2, file: str = "followups.csv") -> pd.DataFrame:
    """One valid 6-month follow-up per procedure."""
    rng = np.random.default_rng(seed)
    n = len(procedures)
    items = rng.integers(0, 2, (n, 4))
    assessed = pd.to_datetime(procedures["procedure_date"]) + pd.to_timedelta(
        rng.integers(150, 200, n), unit="D"
    )
    frame = pd.DataFrame(
        {
            "assessment_id": [f"A{i:07d}" for i in range(n)],
            "procedure_id": procedures["procedure_id"].to_numpy(),
            "assessment_date": assessed.dt.strftime("%Y-%m-%d").to_numpy(),
            "mode": "in_person",
            "eckardt_dysphagia": items[:, 0].astype(str),
            "eckardt_regurgitation": items[:, 1].astype(str),
            "eckardt_chest_pain": items[:, 2].astype(str),
            "eckardt_weight_loss": items[:, 3].astype(str),
            "eckardt_total": items.sum(axis=1).astype(str),
            "ppi_use": "false",
            "gerdq_score": rng.integers(0, 12, n).astype(str),
            "la_grade": "none",
            "aet_percent": np.round(rng.uniform(0, 10, n), 1).astype(str),
            "ph_on_ppi": "false",
            "irp_mmhg": np.round(rng.uniform(5, 15, n), 1).astype(str),
            "les_pressure_mmhg": np.round(rng.uniform(5, 30, n), 1).astype(str),
            "tbe_5min_cm": np.round(rng.uniform(0, 3, n), 1).astype(str),
            "record_updated_at": assessed.dt.strftime("%Y-%m-%dT09:30:00Z").to_numpy(),
        }
    )
    frame["_source_file"] = file
    frame["_source_row"] = np.arange(1, n + 1)
    return frame


def parent_dates_of(procedures: pd.DataFrame) -> dict[str, object]:
    return dict(zip(procedures["procedure_id"], pd.to_datetime(procedures["procedure_date"]), strict=True))


def main(rows: int = 100_000) -> None:
    from poem_registry.quality._gx import context
    from poem_registry.quality.delivery import validate_delivery

    start = time.perf_counter()
    context()
    print(f"GX import and context: {time.perf_counter() - start:.1f} s")
    procedures = clean_procedures(rows)
    followups = clean_followups(procedures)
    dates = parent_dates_of(procedures)
    for entity, frame in (("procedures", procedures), ("followups", followups)):
        for attempt in (1, 2):
            start, cpu = time.perf_counter(), time.process_time()
            result = validate_delivery(
                entity, frame, site_id="bench", extract_id="x", known_parent_ids=set(dates),
                parent_dates=dates, today=BENCH_TODAY,
            )  # fmt: skip
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            failed = [c.check_id for c in result.checks if c.failed]
            print(
                f"{entity}: {rows} rows x {len(result.checks)} checks in {elapsed:.2f} s wall, {cpu:.2f} s CPU "
                f"(run {attempt}; failed checks: {failed or 'none'})"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
