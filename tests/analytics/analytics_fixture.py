"""A small hand-built warehouse with the mart tables/columns the statistics step reads.

Three sites (S1-S3), four operators; ``op-bravo`` works at S1 and then at S2. Outcome
patterns are fixed rules on the row index (no randomness), so tests can recompute
every number independently from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

AS_OF = date(2025, 6, 30)
DIAGNOSES = [
    "achalasia_type_1",
    "achalasia_type_2",
    "achalasia_type_2",
    "achalasia_type_3",
    "distal_esophageal_spasm",
]
# operator key -> list of (site, number of cases, first date, days between cases)
OPERATORS = {
    "op-alpha": [("S1", 24, date(2021, 1, 5), 20)],
    "op-bravo": [("S1", 12, date(2021, 3, 1), 25), ("S2", 10, date(2022, 2, 1), 30)],
    "op-charlie": [("S2", 14, date(2022, 6, 1), 21)],
    "op-delta": [("S3", 12, date(2021, 9, 1), 40)],
}


def build_procedures() -> pd.DataFrame:
    rows = []
    idx = 0
    for op, stints in OPERATORS.items():
        case = 0
        for site, count, first, step in stints:
            for j in range(count):
                idx += 1
                case += 1
                diag = DIAGNOSES[idx % 5]
                morph = "sigmoid" if idx % 9 == 0 else "advanced_sigmoid" if idx % 13 == 0 else "straight"
                prior_poem = idx % 19 == 0
                rows.append(
                    {
                        "procedure_sk": f"p{idx:03d}",
                        "site_id": site,
                        "operator_key": op,
                        "procedure_date": first + timedelta(days=step * j),
                        "operator_case_number": case,
                        "procedure_type_in_scope": True,
                        "is_index_poem": not prior_poem,
                        "procedure_minutes": None
                        if (op == "op-alpha" and case == 5)
                        else 150 - 2 * case + (idx % 3) * 5,
                        "technical_success": None if idx == 40 else idx % 17 != 3,
                        "age_at_procedure_capped": None if idx == 12 else 30 + (idx * 7) % 50,
                        "esophageal_morphology": morph,
                        "sigmoid_esophagus": morph in ("sigmoid", "advanced_sigmoid"),
                        "diagnosis": diag,
                        "diagnosis_group": "spastic_disorder"
                        if diag == "distal_esophageal_spasm"
                        else "achalasia",
                        "prior_heller": idx % 11 == 0,
                        "prior_poem": prior_poem,
                        "chagas": idx % 23 == 0,
                    }
                )
    # an out-of-scope procedure: never in the statistics
    rows.append(
        {
            **rows[0],
            "procedure_sk": "p999",
            "procedure_type_in_scope": False,
            "operator_case_number": None,
            "is_index_poem": False,
            "technical_success": False,
        }
    )
    return pd.DataFrame(rows)


def build_adverse_events(procs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for sk in procs["procedure_sk"]:
        i = int(sk[1:])
        if i % 7 == 0:
            rows.append((sk, True, "moderate", 2))
        if i % 10 == 1:
            rows.append((sk, True, "mild", 1))
        if i % 29 == 0:
            rows.append((sk, False, "severe", 3))  # late: not within 30 days
        if i % 15 == 2:
            rows.append((sk, True, "incident_only", 0))
    df = pd.DataFrame(rows, columns=["procedure_sk", "within_30_days", "asge_severity", "asge_severity_rank"])
    df["is_adverse_event"] = df["asge_severity_rank"] > 0
    return df


def build_windows(procs: pd.DataFrame) -> pd.DataFrame:
    """Columns as in marts.mart_outcome_windows; i % 20 == 4 re-intervened before w_3_6m (no assessment)."""
    rows = []
    for _, r in procs[procs["procedure_type_in_scope"]].iterrows():
        i = int(r["procedure_sk"][1:])
        assessed = i % 4 != 0
        reint = i % 20 == 4
        composite = False if reint else ((i % 6 != 1) if assessed else None)
        rows.append(
            (
                r["procedure_sk"],
                "w_3_6m",
                True,
                True,
                assessed and not reint,
                (i % 12 != 1) if assessed and not reint else None,
                composite,
                composite is not None,
            )
        )
        closed = r["procedure_date"] + timedelta(days=540) <= AS_OF
        assessed12 = closed and i % 5 != 0
        success12 = (i % 8 != 3) if assessed12 else None
        rows.append(
            (r["procedure_sk"], "w_12m", closed, closed, assessed12, success12, success12, assessed12)
        )
    return pd.DataFrame(
        rows,
        columns=[
            "procedure_sk",
            "window_code",
            "window_closed",
            "eligible",
            "assessed",
            "success_eckardt_le3",
            "success_eckardt_le3_no_reintervention",
            "composite_pp_denominator",
        ],
    )


def build_members(procs: pd.DataFrame) -> pd.DataFrame:
    """marts.mart_measure_members for P1 (index POEMs; missing technical success is not in the numerator)."""
    idx = procs[procs["procedure_type_in_scope"] & procs["is_index_poem"]]
    return pd.DataFrame(
        {
            "measure_id": "P1",
            "denominator_variant": "standard",
            "procedure_sk": idx["procedure_sk"],
            "site_id": idx["site_id"],
            "diagnosis": idx["diagnosis"],
            "in_numerator": idx["technical_success"].map(lambda v: v is True),
        }
    )


def build_durability(procs: pd.DataFrame) -> pd.DataFrame:
    idx = procs[procs["procedure_type_in_scope"] & procs["is_index_poem"]]
    return pd.DataFrame(
        {
            "procedure_sk": idx["procedure_sk"],
            "site_id": idx["site_id"],
            "time_days": [100 + (int(s[1:]) * 37) % 1500 for s in idx["procedure_sk"]],
            "event": [int(s[1:]) % 6 == 1 or int(s[1:]) % 8 == 3 for s in idx["procedure_sk"]],
        }
    )


#: (measure, denominator_type, period_type, period_start, period_end) -> {site: (numerator, denominator)}
MEASURES = {
    ("P1", "standard", "all_time", date(2000, 1, 1), AS_OF): {"S1": (33, 36), "S2": (21, 24), "S3": (11, 12)},
    ("P1", "standard", "year", date(2024, 1, 1), date(2024, 12, 31)): {
        "S1": (9, 10),
        "S2": (12, 12),
        "S3": (4, 5),
    },
    ("P1", "standard", "year", date(2025, 1, 1), date(2025, 12, 31)): {
        "S1": (1, 2),
        "S2": (3, 3),
        "S3": (0, 0),
    },
    ("P1", "standard", "quarter", date(2024, 10, 1), date(2024, 12, 31)): {
        "S1": (2, 3),
        "S2": (3, 3),
        "S3": (1, 1),
    },
    ("P3", "PP", "all_time", date(2000, 1, 1), AS_OF): {"S1": (20, 25), "S2": (14, 16), "S3": (8, 9)},
    ("P3", "ITT", "all_time", date(2000, 1, 1), AS_OF): {"S1": (20, 31), "S2": (14, 20), "S3": (8, 11)},
    ("P5", "standard", "all_time", date(2000, 1, 1), AS_OF): {"S1": (7, 36), "S2": (3, 24), "S3": (2, 12)},
    ("P13", "standard", "all_time", date(2000, 1, 1), AS_OF): {"S1": (1, 36), "S2": (2, 24), "S3": (3, 12)},
}


def build_measures() -> pd.DataFrame:
    rows = []
    for (m, dt, pt, ps, pe), sites in MEASURES.items():
        for site, (r, n) in sites.items():
            rows.append((m, site, pt, ps, pe, dt, r, n, AS_OF))
        tot_r = sum(v[0] for v in sites.values())
        tot_n = sum(v[1] for v in sites.values())
        rows.append((m, "ALL", pt, ps, pe, dt, tot_r, tot_n, AS_OF))
    return pd.DataFrame(
        rows,
        columns=[
            "measure_id",
            "site_id",
            "period_type",
            "period_start",
            "period_end",
            "denominator_type",
            "numerator",
            "denominator",
            "as_of",
        ],
    )


@dataclass
class Fixture:
    settings: object
    procedures: pd.DataFrame
    adverse_events: pd.DataFrame
    windows: pd.DataFrame
    durability: pd.DataFrame
    measures: pd.DataFrame
    members: pd.DataFrame


def write_warehouse(path: Path, fx: Fixture) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema marts; create schema seeds")
    for name, df in [
        ("fct_procedure", fx.procedures),
        ("fct_adverse_event", fx.adverse_events),
        ("mart_outcome_windows", fx.windows),
        ("mart_durability_input", fx.durability),
        ("mart_measures", fx.measures),
        ("mart_measure_members", fx.members),
    ]:
        con.register("_df", df)
        con.execute(f"create table marts.{name} as select * from _df")
        con.unregister("_df")
    con.execute(
        "create table marts.dim_site as select * from (values ('S1','Site one'),('S2','Site two'),"
        "('S3','Site three')) t(site_id, site_name)"
    )
    con.execute(
        "create table seeds.measure_catalog as select * from (values ('P1', true), ('P3', true), "
        "('P5', true), ('P9', true), ('P13', false)) t(measure_id, key_measure)"
    )
    con.close()
