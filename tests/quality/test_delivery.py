"""Delivery validation: every check catches its planted defect and passes on clean data."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd
import pytest

from poem_registry.contract import DUCKDB_TYPES, load_contract
from poem_registry.quality.bench import BENCH_TODAY as TODAY
from poem_registry.quality.delivery import ROW_FAILURE_COLUMNS, not_applicable_results, validate_delivery

SECRET_PATIENT = "SECRET-MRN-4711"
SECRET_OPERATOR = "SECRET-NPI-0815"


def validate(entity, frame, parent_dates=None, known=None, **kwargs):
    known = set(parent_dates) if parent_dates and known is None else known
    return validate_delivery(entity, frame, site_id="site_a", extract_id="x1", known_parent_ids=known,
                             parent_dates=parent_dates, today=TODAY, **kwargs)  # fmt: skip


# -- clean data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_results(clean_frames, parent_dates):
    return {e: validate(e, f, parent_dates) for e, f in clean_frames.items()}


@pytest.mark.parametrize(
    "entity", ["procedures", "followups", "adverse_events", "reinterventions", "withdrawals"]
)
def test_clean_delivery_passes(clean_results, entity):
    result = clean_results[entity]
    assert [c.check_id for c in result.checks if c.status not in ("pass", "not_applicable")] == []
    assert result.row_failures.empty
    assert not result.rejected_mask.any()
    assert result.batch_error is None
    assert {c.status for c in result.checks} <= {"pass", "not_applicable"}


def test_typed_frame_has_duckdb_compatible_dtypes(clean_results, tmp_path):
    typed = clean_results["procedures"].typed
    assert str(typed["procedure_minutes"].dtype) == "Int64"
    assert str(typed["tunnel_length_cm"].dtype) == "Float64"
    assert str(typed["technical_success"].dtype) == "boolean"
    assert str(typed["procedure_date"].dtype).startswith("datetime64")
    assert str(typed["diagnosis"].dtype) == "string"
    assert list(typed["_source_row"][:3]) == [1, 2, 3]
    entity = load_contract().entities["procedures"]
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(
        "create table t (" + ", ".join(f"{c.name} {DUCKDB_TYPES[c.type]}" for c in entity.columns) + ")"
    )
    con.register("typed_frame", typed[entity.column_names])
    con.execute("insert into t select * from typed_frame")
    row = con.execute("select count(*), min(procedure_date), sum(procedure_minutes) from t").fetchone()
    assert row[0] == len(typed)
    assert row[2] == typed["procedure_minutes"].sum()


# -- planted defects ----------------------------------------------------------------------


@dataclass(frozen=True)
class Defect:
    name: str
    entity: str
    changes: dict
    check_id: str
    severity: str = "critical"

    @property
    def rejected(self) -> bool:
        return self.severity == "critical"


PROCEDURE_DEFECTS = [
    Defect("int not a number", "procedures", {"procedure_minutes": "abc"}, "type_format.procedure_minutes"),
    Defect("decimal comma", "procedures", {"tunnel_length_cm": "12,5"}, "type_format.tunnel_length_cm"),
    Defect("bool not true/false", "procedures", {"chagas": "yes"}, "type_format.chagas"),
    Defect("US date", "procedures", {"procedure_date": "03/04/2020"}, "type_format.procedure_date"),
    Defect(
        "bad timestamp", "procedures", {"record_updated_at": "yesterday"}, "type_format.record_updated_at"
    ),
    Defect("impossible date", "procedures", {"procedure_date": "2025-02-30"}, "valid_date.procedure_date"),
    Defect(
        "future date",
        "procedures",
        {
            "procedure_date": "2025-12-01",
            "baseline_eckardt_date": "2025-11-01",
            "discharge_date": "2025-12-02",
        },
        "not_future.procedure_date",
    ),
    Defect(
        "before 2008",
        "procedures",
        {
            "procedure_date": "2007-06-01",
            "baseline_eckardt_date": "2007-05-01",
            "discharge_date": "2007-06-02",
            "birth_year": "1950",
        },
        "min_date.procedure_date",
    ),
    Defect("minutes out of range", "procedures", {"procedure_minutes": "900"}, "range.procedure_minutes"),
    Defect(
        "eckardt item out of range",
        "procedures",
        {"baseline_eckardt_dysphagia": "5"},
        "range.baseline_eckardt_dysphagia",
    ),
    Defect("unknown code", "procedures", {"diagnosis": "achalasia_4"}, "code_set.diagnosis"),
    Defect("missing required", "procedures", {"sex": ""}, "required.sex"),
    Defect("missing identifier", "procedures", {"operator_id": " "}, "required.operator_id"),
    Defect(
        "no age nor birth year",
        "procedures",
        {"age_at_procedure": "", "birth_year": ""},
        "rule.age_or_birth_year_present",
    ),
    Defect(
        "birth year after procedure",
        "procedures",
        {"birth_year": "2030", "age_at_procedure": ""},
        "rule.birth_year_not_after_procedure_year",
    ),
    Defect(
        "technical failure without reason",
        "procedures",
        {"technical_success": "false", "aborted_reason": ""},
        "rule.technical_failure_has_reason",
    ),
    Defect(
        "needle without capnoperitoneum",
        "procedures",
        {"needle_decompression": "true", "capnoperitoneum": "false"},
        "rule.needle_decompression_implies_capnoperitoneum",
    ),
    Defect(
        "discharge before procedure",
        "procedures",
        {"discharge_date": "2010-01-01"},
        "rule.discharge_not_before_procedure",
    ),
    Defect(
        "prior POEM not coded redo",
        "procedures",
        {"prior_poem": "true", "procedure_type": "poem"},
        "rule.prior_poem_implies_redo",
        "warning",
    ),
    Defect(
        "baseline too early",
        "procedures",
        {"baseline_eckardt_date": "2009-01-01"},
        "rule.baseline_eckardt_within_180_days_before",
        "warning",
    ),
]
DUPLICATE_ROWS = (40, 41)  # procedure_id of row 41 copied onto row 40 (0-based positions)
FOLLOWUP_DEFECTS = [
    Defect("eckardt total mismatch", "followups", {"eckardt_total": "11"}, "rule.eckardt_total_equals_items"),
    Defect(
        "follow-up before procedure",
        "followups",
        {"assessment_date": "2010-01-01"},
        "rule.assessment_after_procedure",
    ),
    Defect(
        "orphan follow-up", "followups", {"procedure_id": "P9999999"}, "parent_exists.procedure_id", "warning"
    ),
    Defect(
        "aet without ph_on_ppi", "followups", {"ph_on_ppi": ""}, "rule.ph_on_ppi_given_with_aet", "warning"
    ),
    Defect("unknown mode", "followups", {"mode": "pigeon"}, "code_set.mode"),
    Defect("future assessment", "followups", {"assessment_date": "2026-03-01"}, "not_future.assessment_date"),
]
OTHER_DEFECTS = [
    Defect(
        "onset before procedure",
        "adverse_events",
        {"onset_date": "2010-01-01"},
        "rule.onset_not_before_procedure",
    ),
    Defect("unknown AE type", "adverse_events", {"ae_type": "sneezing"}, "code_set.ae_type"),
    Defect(
        "reintervention before procedure",
        "reinterventions",
        {"reintervention_date": "2010-01-01"},
        "rule.reintervention_after_procedure",
    ),
    Defect("missing indication", "reinterventions", {"indication": ""}, "required.indication"),
]
DEFECTS = PROCEDURE_DEFECTS + FOLLOWUP_DEFECTS + OTHER_DEFECTS


def _planted(frame: pd.DataFrame, defects: list[Defect]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Each defect in its own row (row i+1 for defect i); returns the frame and defect -> 1-based row."""
    frame = frame.copy()
    frame["patient_id"] = SECRET_PATIENT if "patient_id" in frame else None
    frame = frame.drop(columns=[c for c in frame if frame[c].isna().all()])
    if "operator_id" in frame:
        frame["operator_id"] = SECRET_OPERATOR
    rows = {}
    for i, d in enumerate(defects):
        for col, value in d.changes.items():
            frame.loc[frame.index[i], col] = value
        rows[d.name] = i + 1
    return frame, rows


@pytest.fixture(scope="module")
def defect_results(clean_frames, parent_dates):
    out = {}
    for entity in ("procedures", "followups", "adverse_events", "reinterventions"):
        defects = [d for d in DEFECTS if d.entity == entity]
        frame, rows = _planted(clean_frames[entity], defects)
        if entity == "procedures":
            frame.loc[frame.index[DUPLICATE_ROWS[0]], "procedure_id"] = frame["procedure_id"].iloc[
                DUPLICATE_ROWS[1]
            ]
        out[entity] = (validate(entity, frame, parent_dates), rows, frame)
    return out


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: d.name)
def test_planted_defect_is_caught_on_its_row_only(defect_results, defect):
    result, rows, _ = defect_results[defect.entity]
    row = rows[defect.name]
    failures = result.row_failures[result.row_failures["check_id"] == defect.check_id]
    assert row in set(failures["source_row"]), f"{defect.check_id} missed row {row}"
    planted_rows = set(rows.values()) | {r + 1 for r in DUPLICATE_ROWS}
    assert set(failures["source_row"]) <= planted_rows, "the check flags a clean row"
    check = next(c for c in result.checks if c.check_id == defect.check_id)
    assert check.status == "fail"
    assert check.severity == defect.severity
    assert result.rejected_mask.iloc[row - 1] == defect.rejected
    message = failures.loc[failures["source_row"] == row, "message"].iloc[0]
    assert message.startswith(f"row {row} of {defect.entity}.csv: ")
    assert check.column in message
    assert f"(rule {failures['rule'].iloc[0]})" in message


def test_duplicate_keys_reject_every_occurrence(defect_results):
    result, _, _ = defect_results["procedures"]
    failures = result.row_failures[result.row_failures["check_id"] == "unique_key.procedure_id"]
    assert set(failures["source_row"]) == {r + 1 for r in DUPLICATE_ROWS}
    assert result.rejected_mask.iloc[list(DUPLICATE_ROWS)].all()


def test_orphan_follow_up_is_held_as_a_warning_not_rejected(defect_results):
    result, rows, _ = defect_results["followups"]
    row = rows["orphan follow-up"]
    failure = result.row_failures[result.row_failures["check_id"] == "parent_exists.procedure_id"].iloc[0]
    assert failure["severity"] == "warning"
    assert not result.rejected_mask.iloc[row - 1]
    assert "P9999999" in failure["message"]


def test_messages_name_the_rule_and_the_fix(defect_results):
    result, rows, _ = defect_results["followups"]
    message = result.row_failures.set_index("check_id").loc["rule.assessment_after_procedure", "message"]
    row = rows["follow-up before procedure"]
    assert message.startswith(
        f"row {row} of followups.csv: assessment_date 2010-01-01 is on or before the procedure date"
    )
    assert message.endswith("(rule assessment_after_procedure); correct the date or the procedure_id")


def test_identifier_values_never_leave_the_validation(defect_results, clean_frames):
    for result, _, _ in defect_results.values():
        text = " ".join(str(v) for v in result.row_failures.to_numpy().ravel())
        text += " ".join(" ".join(c.examples) + c.message for c in result.checks)
        assert SECRET_PATIENT not in text and SECRET_OPERATOR not in text
        for column in ("patient_id", "operator_id"):
            assert result.row_failures.loc[result.row_failures["column"] == column, "value"].isna().all()
    frame = clean_frames["withdrawals"].copy()
    frame.loc[1, "patient_id"] = frame.loc[0, "patient_id"] = SECRET_PATIENT
    result = validate("withdrawals", frame)
    check = next(c for c in result.checks if c.check_id == "unique_key.patient_id")
    assert check.status == "fail" and check.examples == []
    assert len(result.row_failures) == 2 and result.row_failures["value"].isna().all()
    assert SECRET_PATIENT not in " ".join(result.row_failures["message"])
    assert "(identifier withheld)" in result.row_failures["message"].iloc[0]
    assert result.batch_error  # withdrawals tolerate no rejected row


def test_row_failures_have_the_documented_columns(defect_results):
    result, _, _ = defect_results["procedures"]
    assert list(result.row_failures.columns) == ROW_FAILURE_COLUMNS
    examples = next(c for c in result.checks if c.check_id == "code_set.diagnosis").examples
    assert examples == ["achalasia_4"]


# -- statuses, thresholds, batch errors -------------------------------------------------------


def test_entity_not_sent_is_not_applicable_never_pass():
    results = not_applicable_results("adverse_events", "site_a", "x1")
    assert results and {r.status for r in results} == {"not_applicable"}
    assert "adverse_events.csv" in results[0].message


def test_rules_without_parent_dates_are_not_applicable(clean_frames):
    result = validate("followups", clean_frames["followups"])  # no known parents, no dates
    status = {c.check_id: c.status for c in result.checks}
    assert status["rule.assessment_after_procedure"] == "not_applicable"
    assert status["parent_exists.procedure_id"] == "not_applicable"
    assert status["rule.eckardt_total_equals_items"] == "pass"


def test_optional_column_not_sent_is_not_applicable(clean_frames, parent_dates):
    frame = clean_frames["reinterventions"]
    result = validate("reinterventions", frame, parent_dates)
    status = {c.check_id: c.status for c in result.checks}
    assert status["type_format.record_updated_at"] == "not_applicable"


@pytest.mark.parametrize(("missing", "status"), [(5, "pass"), (8, "fail")])
def test_warning_threshold_tolerates_up_to_its_percent(clean_frames, parent_dates, missing, status):
    frame = clean_frames["procedures"].head(20).copy()
    frame.loc[frame.index[:missing], "procedure_minutes"] = ""  # 25% within, 40% above the 30% tolerated
    result = validate("procedures", frame, parent_dates)
    check = next(c for c in result.checks if c.check_id == "completeness.procedure_minutes")
    assert check.status == status
    assert check.threshold_percent == 30 and check.note
    assert check.unexpected_count == missing
    assert not result.rejected_mask.any() and result.batch_error is None


def test_missing_required_column_rejects_the_batch(clean_frames, parent_dates):
    frame = clean_frames["procedures"].drop(columns=["sex"])
    result = validate("procedures", frame, parent_dates)
    assert result.batch_error and "sex" in result.batch_error and "procedures.csv" in result.batch_error
    status = {c.check_id: c.status for c in result.checks}
    assert status["columns_present.sex"] == "fail"
    assert status["required.sex"] == "error"
    assert status["columns_present.diagnosis"] == "pass"


def test_batch_error_when_too_many_rows_are_rejected(defect_results, clean_frames, parent_dates):
    result, _, _ = defect_results["procedures"]  # about a third of the rows carry a critical defect
    assert result.batch_error and "more than the 20%" in result.batch_error
    frame = clean_frames["procedures"].copy()
    frame.loc[3, "diagnosis"] = "achalasia_4"  # one bad row in 60 is not a batch problem
    single = validate("procedures", frame, parent_dates)
    assert single.batch_error is None and single.rejected_mask.sum() == 1


def test_unknown_entity_is_an_error(clean_frames):
    with pytest.raises(ValueError, match="unknown entity"):
        validate("operations", clean_frames["procedures"])
