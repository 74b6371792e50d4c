"""Fixtures of the quality tests: clean exchange-format frames (values as strings) and a warm GX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from poem_registry.quality.bench import BENCH_TODAY, clean_followups, clean_procedures, parent_dates_of

TODAY = BENCH_TODAY


@pytest.fixture(scope="session", autouse=True)
def gx_context():
    """Import GX and build the ephemeral context once per session (~10 s)."""
    from poem_registry.quality._gx import context

    return context()


def clean_adverse_events(procedures: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    proc = procedures.head(n)
    onset = pd.to_datetime(proc["procedure_date"]) + pd.to_timedelta(1, unit="D")
    frame = pd.DataFrame(
        {
            "event_id": [f"E{i:05d}" for i in range(len(proc))],
            "procedure_id": proc["procedure_id"].to_numpy(),
            "ae_type": "bleeding_delayed",
            "onset_date": onset.dt.strftime("%Y-%m-%d").to_numpy(),
            "unplanned_nights": "2",
            "icu_nights": "0",
            "transfusion": "false",
            "repeat_endoscopy": "true",
            "severity_reported": "moderate",
        }
    )
    frame["_source_file"] = "adverse_events.csv"
    frame["_source_row"] = np.arange(1, len(frame) + 1)
    return frame


def clean_reinterventions(procedures: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    proc = procedures.head(n)
    when = pd.to_datetime(proc["procedure_date"]) + pd.to_timedelta(400, unit="D")
    frame = pd.DataFrame(
        {
            "event_id": [f"R{i:05d}" for i in range(len(proc))],
            "procedure_id": proc["procedure_id"].to_numpy(),
            "reintervention_date": when.dt.strftime("%Y-%m-%d").to_numpy(),
            "reintervention_type": "pneumatic_dilation",
            "indication": "recurrence",
        }
    )
    frame["_source_file"] = "reinterventions.csv"
    frame["_source_row"] = np.arange(1, len(frame) + 1)
    return frame


def clean_withdrawals(n: int = 5) -> pd.DataFrame:
    frame = pd.DataFrame({"patient_id": [f"MRN{i:08d}" for i in range(n)], "withdrawn_at": "2024-01-01"})
    frame["_source_file"] = "withdrawals.csv"
    frame["_source_row"] = np.arange(1, n + 1)
    return frame


@pytest.fixture(scope="session")
def procedures() -> pd.DataFrame:
    # Years 2015-2023 (bench generator): well before TODAY, after 2008.
    return clean_procedures(60)


@pytest.fixture(scope="session")
def parent_dates(procedures) -> dict:
    return parent_dates_of(procedures)


@pytest.fixture(scope="session")
def clean_frames(procedures) -> dict[str, pd.DataFrame]:
    return {
        "procedures": procedures,
        "followups": clean_followups(procedures),
        "adverse_events": clean_adverse_events(procedures),
        "reinterventions": clean_reinterventions(procedures),
        "withdrawals": clean_withdrawals(),
    }
