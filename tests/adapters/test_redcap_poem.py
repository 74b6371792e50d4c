"""REDCap POEM project -> exchange format: mapping, lineage, findings and the writer round trip."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from poem_registry.adapters import redcap as rc
from poem_registry.adapters import redcap_poem as rp
from poem_registry.adapters.redcap_writer import DEMO_REDCAP_MAPPING, write_redcap_export

REPO = Path(__file__).resolve().parents[2]


def row(entity: str, **values: str) -> dict[str, str]:
    return {c: "" for c in rp.exchange_columns(entity)} | values


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    procedures = [
        row(
            "procedures",
            procedure_id="P1",
            patient_id="00123",
            operator_id="OP7",
            procedure_date="2020-01-10",
            procedure_type="poem",
            sex="female",
            birth_year="1970",
            diagnosis="achalasia_type_2",
            cc_version="none",
            hiatal_hernia="none",
            technical_success="true",
            tunnel_length_cm="12.5",
            capnoperitoneum="true",
            capnothorax="false",
            subcutaneous_emphysema="true",
            needle_decompression="false",
            record_updated_at="2020-02-01T10:00:00",
        ),
        row(
            "procedures",
            procedure_id="P2",
            patient_id="M2",
            operator_id="OP7",
            procedure_date="2021-03-01",
            procedure_type="redo_poem",
            sex="unknown",
            age_at_procedure="44",
            diagnosis="egjoo",
            prior_poem="true",
            technical_success="false",
            aborted_reason="fibrosis",
        ),
    ]
    followups = [
        row(
            "followups",
            assessment_id="F1",
            procedure_id="P1",
            assessment_date="2020-04-10",
            la_grade="A",
            ppi_use="false",
        ),
        row(
            "followups",
            assessment_id="F2",
            procedure_id="P1",
            assessment_date="2020-05-10",
            eckardt_total="2",
        ),
        row(
            "followups", assessment_id="F3", procedure_id="P1", assessment_date="2021-01-10", mode="telephone"
        ),
        row(
            "followups",
            assessment_id="F4",
            procedure_id="P2",
            assessment_date="2021-03-20",
            aet_percent="4.2",
        ),
        row(
            "followups", assessment_id="F5", procedure_id="P2", assessment_date="2026-01-01", mode="in_person"
        ),
    ]
    adverse_events = [
        row(
            "adverse_events",
            event_id="A1",
            procedure_id="P1",
            ae_type="capnothorax",
            onset_date="2020-01-10",
            death="false",
        ),
        row(
            "adverse_events",
            event_id="A2",
            procedure_id="P1",
            ae_type="other",
            onset_date="2020-01-12",
            severity_reported="mild",
        ),
    ]
    reinterventions = [
        row(
            "reinterventions",
            event_id="R1",
            procedure_id="P2",
            reintervention_date="2022-01-01",
            reintervention_type="botulinum",
            indication="recurrence",
        )
    ]
    return {
        "procedures": pd.DataFrame(procedures),
        "followups": pd.DataFrame(followups),
        "adverse_events": pd.DataFrame(adverse_events),
        "reinterventions": pd.DataFrame(reinterventions),
    }


def sorted_frame(frame: pd.DataFrame, entity: str) -> pd.DataFrame:
    columns = rp.exchange_columns(entity)
    return frame[columns].astype(str).sort_values(columns[0]).reset_index(drop=True)


def test_round_trip_returns_the_same_rows(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    files = write_redcap_export(tables, DEMO_REDCAP_MAPPING, tmp_path)
    output = rp.to_exchange(files.records, DEMO_REDCAP_MAPPING)
    assert output.findings == []
    for entity, frame in tables.items():
        got = output.frames[entity]
        assert list(got.columns) == [*rp.exchange_columns(entity), "_source_file", "_source_row"]
        pd.testing.assert_frame_equal(sorted_frame(got, entity), sorted_frame(frame, entity))
    assert files.records.name in output.files


def test_writer_places_followups_in_window_events(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    files = write_redcap_export(tables, DEMO_REDCAP_MAPPING, tmp_path)
    dictionary = rc.read_data_dictionary(files.dictionary)
    records = rc.read_records(files.records, dictionary)
    followups = records.data[records.data["fu_assessment_id"] != ""]
    placed = dict(zip(followups["fu_assessment_id"], followups[rc.EVENT_COLUMN], strict=True))
    # 91 days -> month 3; 121 days: month 3 already used -> unscheduled; 366 -> month 12;
    # 19 days -> no window; 1767 days -> month 60
    assert placed == {
        "F1": "month_3_arm_1",
        "F2": "unscheduled_arm_1",
        "F3": "month_12_arm_1",
        "F4": "unscheduled_arm_1",
        "F5": "month_60_arm_1",
    }
    assert records.repeating_events == {"unscheduled_arm_1"}
    assert records.repeating_instruments == {
        ("baseline_arm_1", "adverse_event"),
        ("baseline_arm_1", "reintervention"),
    }
    p1 = records.data[(records.data["record_id"] == "P1") & (records.row_kind == "non_repeating")].iloc[0]
    assert (p1["dx"], p1["proc_type"], p1["tech_success"], p1["mrn"]) == ("2", "1", "1", "00123")
    assert [p1[f"insufflation___{i}"] for i in "1234"] == ["1", "0", "1", "0"]
    assert p1["poem_procedure_complete"] == "2"
    assert dictionary.fields["insufflation"].field_type == "checkbox"
    assert dictionary.fields["dx"].choices["1"] == "achalasia_type_1"
    assert dictionary.fields["tech_success"].field_type == "yesno"
    assert [c for c in records.field_columns if dictionary.form_of_column(c) is None] == []
    events = rc.read_events(files.events)
    assert list(events["unique_event_name"])[:2] == ["baseline_arm_1", "month_3_arm_1"]


def test_example_site_file_is_the_demo_mapping() -> None:
    site = yaml.safe_load(
        (REPO / "sites" / "examples" / "redcap_site_mapping.yml").read_text(encoding="utf-8")
    )
    assert site["adapter"] == "redcap"
    assert site["redcap"] == DEMO_REDCAP_MAPPING
    rp.PoemRedcapMapping.from_dict(site["redcap"])


# --------------------------------------------------------------------------- a hand-written site export

SITE_MAPPING = {
    "record_id_field": "study_id",
    "procedures": {
        "events": ["baseline_arm_1"],
        "fields": {
            "study_id": "procedure_id",
            "pt": "patient_id",
            "dx": "diagnosis",
            "ok": "technical_success",
        },
        "codes": {"dx": {"1": "achalasia_type_1", "2": "achalasia_type_2", "-9": "other"}},
        "booleans": ["ok"],
        "checkboxes": {
            "insufflation": {
                "1": "capnoperitoneum",
                "2": "capnothorax",
                "3": "subcutaneous_emphysema",
                "4": "needle_decompression",
            }
        },
    },
    "followups": {
        "events": ["month_3_arm_1", "unscheduled_arm_1"],
        "fields": {"fu_date": "assessment_date", "tbe": "tbe_5min_cm"},
    },
    "adverse_events": {"form": "ae", "fields": {"ae_date": "onset_date", "ae_kind": "ae_type"}},
}

SITE_EXPORT = (
    "study_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,pt,dx,ok,"
    "insufflation___1,insufflation___2,insufflation___3,insufflation___4,fu_date,tbe,ae_date,ae_kind,nickname\n"
    "101,baseline_arm_1,,,007,2,1,1,0,0,1,,,,,Bob\n"  # row 1
    "101,baseline_arm_1,ae,1,,,,,,,,,,2020-01-02,capnothorax,\n"  # row 2
    '101,month_3_arm_1,,,,,,,,,,2020-04-01," 3,5",,,\n'  # row 3
    "101,unscheduled_arm_1,,2,,,,,,,,2020-06-01,,,,\n"  # row 4
    "102,baseline_arm_1,,,008,7,0,,,,,,,,,\n"  # row 5
)


@pytest.fixture
def site_export(tmp_path: Path) -> Path:
    path = tmp_path / "site_DATA.csv"
    path.write_text(SITE_EXPORT, encoding="utf-8")
    return path


def test_codes_checkboxes_booleans_and_source_rows(site_export: Path) -> None:
    output = rp.to_exchange(site_export, SITE_MAPPING)
    procedures = output.frames["procedures"]
    assert list(procedures["procedure_id"]) == ["101", "102"]
    assert list(procedures["patient_id"]) == ["007", "008"]  # leading zeros kept
    assert list(procedures["diagnosis"]) == ["achalasia_type_2", "7"]  # unmapped code passed on, reported
    assert list(procedures["technical_success"]) == ["true", "false"]
    first = procedures.iloc[0]
    assert [
        first[c] for c in ("capnoperitoneum", "capnothorax", "subcutaneous_emphysema", "needle_decompression")
    ] == [
        "true",
        "false",
        "false",
        "true",
    ]
    assert procedures.iloc[1]["capnoperitoneum"] == ""  # blank checkbox = not recorded
    assert list(procedures["_source_row"]) == [1, 5]
    assert set(procedures["_source_file"]) == {"site_DATA.csv"}

    followups = output.frames["followups"]
    assert list(followups["assessment_id"]) == ["101:month_3_arm_1:1", "101:unscheduled_arm_1:2"]
    assert list(followups["procedure_id"]) == ["101", "101"]
    assert list(followups["_source_row"]) == [3, 4]
    assert followups.iloc[0]["tbe_5min_cm"] == "3,5"  # no dictionary: not recognised as comma decimal

    adverse_events = output.frames["adverse_events"]
    assert list(adverse_events["event_id"]) == ["101:baseline_arm_1:1"]
    assert list(adverse_events["ae_type"]) == ["capnothorax"]
    assert list(adverse_events["_source_row"]) == [2]
    assert output.frames["reinterventions"].empty

    by_rule = {f.rule: f for f in output.findings}
    assert by_rule["unmapped_code"].source_row == 5 and by_rule["unmapped_code"].value == "7"
    assert by_rule["unmapped_code"].column_name == "dx"
    assert "site_DATA.csv" in by_rule["unmapped_code"].message


def test_unknown_columns_are_reported_not_dropped_silently(tmp_path: Path) -> None:
    export = tmp_path / "extra.csv"
    lines = SITE_EXPORT.splitlines()
    lines[0] += ",insufflation___5,smoker___1,first_name,demographics_complete"
    lines[1:] = [line + (",1,0,Ann,2" if i == 0 else ",,,,") for i, line in enumerate(lines[1:])]
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    findings = rp.to_exchange(export, SITE_MAPPING).findings
    by_column = {f.column_name: f for f in findings}
    assert by_column["nickname"].rule == "unknown_column"
    assert "(1 row(s) hold a value, first at row 1)" in by_column["nickname"].message
    assert by_column["insufflation___5"].rule == "unmapped_checkbox_option"
    assert by_column["smoker___1"].rule == "unknown_column"
    assert "checkbox option of field 'smoker'" in by_column["smoker___1"].message
    assert by_column["first_name"].rule == "direct_identifier_column"
    assert by_column["first_name"].category == "privacy"
    assert "demographics_complete" not in by_column  # form status is bookkeeping, not data
    reported = ("nickname", "insufflation___5", "smoker___1", "first_name")
    assert all(by_column[c].file_name == "extra.csv" and by_column[c].source_row == 0 for c in reported)


def test_comma_decimal_with_dictionary(tmp_path: Path, site_export: Path) -> None:
    dictionary_path = tmp_path / "dict.csv"
    dictionary_path.write_text(
        "field_name,form_name,field_type,field_label,select_choices_or_calculations,"
        "text_validation_type_or_show_slider_number,identifier\n"
        'study_id,proc,text,ID,,,\npt,proc,text,Patient,,,y\ndx,proc,radio,Dx,"1, T1 | 2, T2 | -9, Other",,\n'
        'ok,proc,yesno,OK,,,\ninsufflation,proc,checkbox,Ins,"1, a | 2, b | 3, c | 4, d",,\n'
        "nickname,proc,text,Nick,,,y\n"
        "fu_date,fu,text,Date,,date_ymd,\ntbe,fu,text,TBE,,number_1dp_comma_decimal,\n"
        "ae_date,ae,text,Onset,,date_ymd,\nae_kind,ae,text,Kind,,,\n",
        encoding="utf-8",
    )
    dictionary = rc.read_data_dictionary(dictionary_path)
    output = rp.to_exchange(site_export, SITE_MAPPING, dictionary=dictionary)
    assert output.frames["followups"].iloc[0]["tbe_5min_cm"] == "3.5"
    nickname = next(f for f in output.findings if f.column_name == "nickname")
    assert nickname.rule == "direct_identifier_column"  # flagged as identifier in the dictionary


def test_missing_event_column_names_file_and_column(tmp_path: Path) -> None:
    export = tmp_path / "flat.csv"
    export.write_text("study_id,pt,dx\n1,007,1\n", encoding="utf-8")
    with pytest.raises(rc.RedcapFormatError) as error:
        rp.to_exchange(export, SITE_MAPPING)
    assert error.value.file == "flat.csv" and error.value.column == "redcap_event_name"
    assert str(error.value).startswith("flat.csv, row 0, column 'redcap_event_name': ")


def test_event_not_in_mapping_is_reported_with_rows(tmp_path: Path) -> None:
    export = tmp_path / "events.csv"
    export.write_text(
        SITE_EXPORT
        + "101,month_6_arm_1,,,,,,,,,,2020-07-01,,,,\n"  # row 6
        + "102,month_6_arm_1,,,,,,,,,,2020-08-01,,,,\n"  # row 7
        + "102,baseline_arm_1,reint,1,,,,,,,,,,,,\n",  # row 8
        encoding="utf-8",
    )
    output = rp.to_exchange(export, SITE_MAPPING)
    unmapped = [f for f in output.findings if f.rule == "unmapped_event"]
    assert len(unmapped) == 1
    assert unmapped[0].value == "month_6_arm_1" and unmapped[0].source_row == 6
    assert unmapped[0].column_name == "redcap_event_name"
    assert "row(s) 6, 7 not loaded" in unmapped[0].message and unmapped[0].message.startswith("events.csv: ")
    instrument = next(f for f in output.findings if f.rule == "unmapped_instrument")
    assert (instrument.value, instrument.source_row) == ("reint", 8)
    assert len(output.frames["followups"]) == 2  # the month_6 rows are not silently mapped elsewhere


def test_malformed_repeat_instance_and_missing_repeat_column(tmp_path: Path) -> None:
    bad_instance = tmp_path / "instance.csv"
    bad_instance.write_text(
        SITE_EXPORT.replace("101,baseline_arm_1,ae,1,", "101,baseline_arm_1,ae,x,"), encoding="utf-8"
    )
    with pytest.raises(rc.RedcapFormatError, match=r"instance\.csv, row 2, column 'redcap_repeat_instance'"):
        rp.to_exchange(bad_instance, SITE_MAPPING)

    no_repeat = tmp_path / "norepeat.csv"
    no_repeat.write_text("study_id,redcap_event_name,pt\n1,baseline_arm_1,007\n", encoding="utf-8")
    with pytest.raises(
        rc.RedcapFormatError, match=r"norepeat\.csv, row 0, column 'redcap_repeat_instrument'"
    ):
        rp.to_exchange(no_repeat, SITE_MAPPING)


def test_mapping_errors_name_the_key() -> None:
    broken = copy.deepcopy(SITE_MAPPING)
    broken["procedures"]["fields"]["dx"] = "diagnosis_code"
    with pytest.raises(
        rp.MappingError, match=r"redcap\.procedures: 'diagnosis_code' is not a column of procedures"
    ):
        rp.PoemRedcapMapping.from_dict(broken)
    broken = copy.deepcopy(SITE_MAPPING)
    broken["procedures"]["booleans"] = ["missing_field"]
    with pytest.raises(rp.MappingError, match=r"redcap\.procedures\.booleans: \['missing_field'\]"):
        rp.PoemRedcapMapping.from_dict(broken)
    broken = copy.deepcopy(SITE_MAPPING)
    del broken["adverse_events"]["form"]
    with pytest.raises(rp.MappingError, match=r"redcap\.adverse_events\.form"):
        rp.PoemRedcapMapping.from_dict(broken)
