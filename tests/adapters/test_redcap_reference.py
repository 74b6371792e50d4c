"""The REDCap reader against real REDCap exports (/work/shared/reference-data/redcap).

Each test asserts values read from the files by hand (counts, names, cells),
so a reader that "succeeds" but misreads structure fails here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poem_registry.adapters import redcap as rc

REFERENCE = Path(os.environ.get("POEM_REDCAP_REFERENCE", "/work/shared/reference-data/redcap"))
pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason="REDCap reference exports not available")


def ref(relative: str) -> Path:
    return REFERENCE / relative


def rows_of(records: rc.RedcapRecords, **where: str) -> list[dict[str, str]]:
    data = records.data
    mask = True
    for column, value in where.items():
        mask = mask & (data[column] == value)
    return data[mask].to_dict("records")


# --------------------------------------------------------------------------- redcapr-longitudinal


def test_redcapr_longitudinal_records_events_arms_and_checkboxes() -> None:
    dictionary = rc.read_data_dictionary(ref("redcapr-longitudinal/dictionary.csv"))
    records = rc.read_records(ref("redcapr-longitudinal/data.csv"), dictionary)
    assert dictionary.record_id_field == "study_id" == records.record_id_field
    assert records.kind == "raw"
    assert records.data.shape == (18, 125 + 1)  # + _source_row
    assert records.record_ids == ["100", "220", "304"]
    assert records.is_longitudinal and not records.has_repeating
    assert set(records.row_kind) == {"non_repeating"}
    assert "deadline_to_opt_ou_arm_2" in set(records.data[rc.EVENT_COLUMN])

    events = rc.read_events(ref("redcapr-longitudinal/event.csv"))
    arms = rc.read_arms(ref("redcapr-longitudinal/arm.csv"))  # no final newline
    assert len(events) == 12
    assert list(arms["name"]) == ["Drug A", "Drug B"]
    assert events.loc[events["unique_event_name"] == "deadline_to_opt_ou_arm_2", "arm_num"].item() == "2"
    assert set(records.data[rc.EVENT_COLUMN]) <= set(events["unique_event_name"])
    by_arm = events.groupby("arm_num")["unique_event_name"].apply(set)
    arm_of_record = {
        r: {e for e in records.data.loc[records.data["study_id"] == r, rc.EVENT_COLUMN]}
        for r in records.record_ids
    }
    assert arm_of_record["100"] <= by_arm["1"] and arm_of_record["304"] <= by_arm["2"]

    # checkbox with code 0
    assert dictionary.checkbox_fields["gym"] == {f"gym___{i}": str(i) for i in range(5)}
    decoded = rc.decode_records(records, dictionary)
    first = decoded.iloc[0]
    assert first["ethnicity"] == "Hispanic or Latino"
    assert first["race"] == "White"
    assert first["sex"] == "Male"
    assert first["gym"] == frozenset({"0"})
    assert first["aerobics"] == frozenset({"1", "2"})
    assert first["meds"] == frozenset({"2"})
    # a row of another event: demographics checkboxes are blank, not "nothing ticked"
    assert decoded.iloc[1]["gym"] is None
    assert dictionary.fields["specify_mood"].choices == {}  # slider labels are not choices
    assert "round(" in dictionary.fields["bmi"].calculation


# --------------------------------------------------------------------------- classic repeating projects


def test_redcapr_repeating_instruments() -> None:
    dictionary = rc.read_data_dictionary(ref("redcapr-repeating-instruments/dictionary.csv"))
    records = rc.read_records(ref("redcapr-repeating-instruments/data.csv"), dictionary)
    assert len(records.data) == 6 and records.record_ids == ["1", "2"]
    assert records.repeating_instruments == {("", "bp")}
    assert list(records.row_kind) == ["non_repeating"] + ["repeating_instrument"] * 3 + [
        "non_repeating",
        "repeating_instrument",
    ]
    tables = rc.split_by_form(records, dictionary)
    assert list(tables["bp"]["bp_systolic"]) == ["110", "111", "112", "114"]
    assert list(tables["bp"][rc.REPEAT_INSTANCE_COLUMN]) == ["1", "2", "3", "1"]
    assert list(tables["demographics"]["first_name"]) == ["aaa", "bbb"]
    assert rc.decode_records(records, dictionary).iloc[4]["race"] == "Unknown / Not Reported"


def test_redcapr_vignette_three_repeating_instruments() -> None:
    dictionary = rc.read_data_dictionary(ref("redcapr-vignette-repeating/dictionary.csv"))
    records = rc.read_records(ref("redcapr-vignette-repeating/data.csv"), dictionary)
    assert len(records.data) == 17
    assert {form for _, form in records.repeating_instruments} == {"blood_pressure", "laboratory", "image"}
    tables = rc.split_by_form(records, dictionary)
    assert len(tables["intake"]) == 2 and len(tables["blood_pressure"]) == 6
    assert list(tables["image"]["image_complete"]) == ["2", "0", "2", "1", "0"]
    assert tables["laboratory"].iloc[0]["conc"] == "1.1 ppm"
    assert dictionary.fields["height"].validation == "number_1dp"


def test_redcapr_checkboxes_numeric_and_letter_codes() -> None:
    dictionary = rc.read_data_dictionary(ref("redcapr-checkboxes-1/dictionary.csv"))
    records = rc.read_records(ref("redcapr-checkboxes-1/data.csv"), dictionary)
    assert dictionary.fields["check_one"].choices == {
        "1": "one",
        "2": "two",
        "3": "three",
        "4": "four",
    }  # "|" without spaces
    assert list(dictionary.checkbox_fields["check_two"]) == [f"check_two___{c}" for c in "abcde"]
    decoded = rc.decode_records(records, dictionary)
    assert list(decoded["check_one"]) == [
        frozenset({"1"}),
        frozenset(),
        frozenset({"1", "2", "3", "4"}),
        frozenset(),
    ]
    assert list(decoded["check_two"])[:2] == [frozenset({"a", "c"}), frozenset({"b", "d"})]


def test_redcaptidier_classic_negative_and_mixed_case_checkbox_codes() -> None:
    dictionary = rc.read_data_dictionary(ref("redcaptidier-classic-fieldtypes/metadata.json"))
    records = rc.read_records(ref("redcaptidier-classic-fieldtypes/records.csv"), dictionary)
    columns = dictionary.checkbox_fields
    assert columns["checkbox_multiple"]["checkbox_multiple____99"] == "-99"
    assert columns["checkbox_multiple"]["checkbox_multiple____98"] == "-98"
    assert columns["checkbox_multiple_2"] == {
        "checkbox_multiple_2___aa": "Aa",
        "checkbox_multiple_2___b1b": "B1b",
        "checkbox_multiple_2___ccc2": "Ccc2",
        "checkbox_multiple_2___3dddd": "3dddd",
        "checkbox_multiple_2___4eeee5": "4eeee5",
    }
    # every export column is recognised through the dictionary
    assert [c for c in records.field_columns if dictionary.form_of_column(c) is None] == []
    assert records.survey_timestamp_columns == ["survey_timestamp", "repeat_survey_timestamp"]
    assert rc.SURVEY_IDENTIFIER_COLUMN in records.system_columns
    assert records.repeating_instruments == {("", "repeated"), ("", "repeat_survey")}
    decoded = rc.decode_records(records, dictionary)
    record_2 = decoded[decoded["record_id"] == "2"].iloc[0]
    assert record_2["checkbox_multiple"] == frozenset({"1", "4", "7", "10", "-99"})
    assert record_2["checkbox_multiple_2"] == frozenset({"B1b", "3dddd"})
    assert record_2["dropdown_single"] == "three"
    first = records.data.iloc[0]
    assert (first["text_mrn"], first["text_zip"]) == ("00123456", "08001")  # leading zeros kept
    assert rc.decode_records(records, dictionary).iloc[0]["yesno"] == "Yes"
    assert dictionary.fields["truefalse"].choices == {"1": "True", "0": "False"}
    assert dictionary.fields["radio_dtxt_error"].choices == {}


# --------------------------------------------------------------------------- redcapAPI offline


def test_redcapapi_offline_project() -> None:
    dictionary = rc.read_data_dictionary(ref("redcapapi-offline/TestRedcapAPI_DataDictionary.csv"))
    records = rc.read_records(ref("redcapapi-offline/TestRedcapAPI_Records.csv"), dictionary)
    assert len(records.data) == 40 and len(records.record_ids) == 20
    assert records.row_kind.value_counts().to_dict() == {"non_repeating": 20, "repeating_instrument": 20}
    assert records.repeating_instruments == {("event_1_arm_1", "files_notes_descriptions")}
    assert rc.DAG_COLUMN in records.system_columns and set(records.data[rc.DAG_COLUMN]) == {""}
    assert dictionary.checkbox_fields["prereq_checkbox"]["prereq_checkbox___abc"] == "ABC"
    assert dictionary.fields["prereq_radio"].choices["ABC"] == "RadioABC"
    row_9 = records.data[(records.data["record_id"] == "9") & (records.row_kind == "non_repeating")].iloc[0]
    assert row_9["prereq_radio"] == "ABC"
    assert row_9["number_1dp_comma_test"] == "40,7"  # comma decimal kept as text
    assert records.data.iloc[22]["zipcode_test"] == "02485"  # record 12, leading zero kept
    decoded = rc.decode_records(records, dictionary)
    assert decoded.iloc[2]["radio_test"] == "Carnation" and decoded.iloc[2]["dropdown_test"] == "Blue"

    events = rc.read_events(
        ref("redcapapi-offline/TestRedcapAPI_Events.csv")
    )  # no final newline, no event_id
    arms = rc.read_arms(ref("redcapapi-offline/TestRedcapAPI_Arms.csv"))
    mapping = rc.read_form_event_mapping(ref("redcapapi-offline/TestRedcapAPI_InstrumentDesignations.csv"))
    assert list(events["unique_event_name"]) == ["event_1_arm_1", "event_2_arm_2"]
    assert "event_id" not in events.columns
    assert list(arms["name"]) == ["Arm 1", "Arm2"]
    assert len(mapping) == 11 and set(mapping["unique_event_name"]) == {"event_1_arm_1"}
    tables = rc.split_by_form(records, dictionary, mapping)
    assert len(tables["files_notes_descriptions"]) == 20
    assert tables["files_notes_descriptions"].iloc[0]["notes_test"] == "some notes"


# --------------------------------------------------------------------------- REDCapTidieR longitudinal


def test_redcaptidier_longitudinal_repeating_instrument_in_events() -> None:
    dictionary = rc.read_data_dictionary(ref("redcaptidier-longitudinal/metadata.json"))
    records = rc.read_records(ref("redcaptidier-longitudinal/records.csv"), dictionary)
    mapping = rc.read_form_event_mapping(ref("redcaptidier-longitudinal/form_event_mapping.csv"))
    arms = rc.read_arms(ref("redcaptidier-longitudinal/arms.csv"))
    assert len(records.data) == 17 and records.record_ids == ["1", "2", "3", "4"]
    assert records.repeating_instruments == {
        ("event_1_arm_1", "repeated"),
        ("event_2_arm_1", "repeated"),
        ("event_3_arm_2", "repeated"),
    }
    assert list(arms["name"]) == ["Arm 1", "Arm 2"]
    assert len(mapping) == 9
    assert set(mapping.loc[mapping["form"] == "nonrepeated2", "unique_event_name"]) == {"event_1_arm_1"}
    tables = rc.split_by_form(records, dictionary, mapping)
    # record 3 saved the form empty: only nonrepeated2_complete=0, still a row of that form
    assert list(tables["nonrepeated2"]["nonrepeat_3"]) == ["3", "5", ""]
    assert len(tables["repeated"]) == 9
    record_4 = tables["repeated"][tables["repeated"]["record_id"] == "4"].iloc[0]
    assert (record_4[rc.EVENT_COLUMN], record_4["repeat_1"]) == ("event_3_arm_2", "R1")
    assert (
        rc.read_instruments(ref("redcaptidier-longitudinal/instruments.csv"))["nonrepeated2"]
        == "Nonrepeated2"
    )


def test_redcaptidier_repeating_event() -> None:
    dictionary = rc.read_data_dictionary(ref("redcaptidier-repeating-event/metadata.json"))
    records = rc.read_records(ref("redcaptidier-repeating-event/records.csv"), dictionary)
    assert records.repeating_events == {"r_event_arm_1"}
    assert records.repeating_instruments == {("nr_event_arm_1", "r_instrument")}
    assert records.row_kind.value_counts().to_dict() == {
        "repeating_instrument": 4,
        "non_repeating": 3,
        "repeating_event": 2,
    }
    repeating_event_rows = rows_of(records, redcap_event_name="r_event_arm_1")
    assert [r[rc.REPEAT_INSTANCE_COLUMN] for r in repeating_event_rows] == ["1", "2"]
    tables = rc.split_by_form(records, dictionary)
    # instance 3 holds nothing but r_instrument_complete=0
    instance_3 = tables["r_instrument"][tables["r_instrument"][rc.REPEAT_INSTANCE_COLUMN] == "3"].iloc[0]
    assert (instance_3["r_instr_field"], instance_3["r_instrument_complete"]) == ("", "0")


# --------------------------------------------------------------------------- REDCapRITS


def test_redcaprits_mtcars_csv_and_json_are_the_same_project() -> None:
    ui = rc.read_data_dictionary(ref("redcaprits-mtcars/ExampleProject_DataDictionary_2018-06-07.csv"))
    api = rc.read_data_dictionary(ref("redcaprits-mtcars/ExampleProject_metadata.json"))
    assert ui.fields == api.fields  # both header styles normalise to the same fields
    assert list(ui.frame.columns) == list(api.frame.columns) == list(rc.DICTIONARY_COLUMNS)
    assert ui.record_id_field == "row" and ui.forms == ["motor_trend_cars", "grouping", "sale"]
    assert ui.fields["choice"].choices == {"choice1": "Choice 1", "choice2": "Choice 2"}
    assert ui.checkbox_fields["color_available"]["color_available___red"] == "red"

    csv_records = rc.read_records(ref("redcaprits-mtcars/ExampleProject_DATA_2018-06-07_1129.csv"), ui)
    json_records = rc.read_records(ref("redcaprits-mtcars/ExampleProject_records.json"), api)
    assert len(csv_records.data) == len(json_records.data) == 45
    assert len(csv_records.record_ids) == 32 and csv_records.record_ids[0] == "AMC Javelin"
    assert json_records.data.iloc[1][rc.REPEAT_INSTANCE_COLUMN] == "1"  # JSON integer read as text
    assert csv_records.data.drop(columns="_source_row").equals(json_records.data.drop(columns="_source_row"))
    decoded = rc.decode_records(csv_records, ui)
    javelin = decoded.iloc[0]
    assert javelin["color_available"] == frozenset({"red", "green", "blue"})
    assert javelin["am"] == "Automatic" and javelin["choice"] == "Choice 2" and javelin["vs"] == "No"
    sales = rc.split_by_form(csv_records, ui)["sale"]
    assert len(sales) == 13 and sales.iloc[0]["price"] == "12000.50"


def test_redcaprits_warrior_messy_dictionary_and_dag() -> None:
    dictionary = rc.read_data_dictionary(
        ref("redcaprits-warrior/WARRIORtestForSoftwareUpgrades_DataDictionary_2018-06-21.csv")
    )
    # 4,114 data rows, of which 4,028 are empty; 86 fields remain
    assert len(dictionary.fields) == 86
    assert dictionary.forms == [
        "informed_consent",
        "informed_consent_and_addendum",
        "upload_of_signed_icfs",
        "demographics",
        "eligibility",
    ]
    assert dictionary.fields["elig_icf"].choices == {"1": "Yes", "0": "No"}  # "|" without spaces
    assert dictionary.fields["elig_cath_ffr"].choices == {"1": "Yes", "0": "No", "99": "N/A"}
    ethnic = dictionary.fields["demo_ethnic"].choices["1"]
    assert ethnic.startswith("Hispanic/Latino (Mexican, Cuban,")  # commas inside a label
    assert dictionary.fields["elig_study_no"].choices == {"0": "No"}

    records = rc.read_records(
        ref("redcaprits-warrior/WARRIORtestForSoftwa_DATA_2018-06-21_1431.csv"), dictionary
    )
    assert len(records.data) == 10 and records.record_ids == ["806-1", "806-2"]
    assert set(records.data[rc.EVENT_COLUMN]) == {"baseline_arm_1", "followup_month_3_arm_1"}
    assert records.repeating_instruments == {
        ("baseline_arm_1", "informed_consent"),
        ("baseline_arm_1", "informed_consent_and_addendum"),
    }
    assert set(records.data[rc.DAG_COLUMN]) == {"uf_test"}
    assert records.survey_timestamp_columns == ["informed_consent_and_addendum_timestamp"]
    consent_3 = rows_of(records, record_id="806-1", redcap_repeat_instance="3")[0]
    assert consent_3["icf_consenter_name"] == "zsdf" and consent_3["icf_sign"] == "[document]"
    decoded = rc.decode_records(records, dictionary)
    assert decoded.iloc[0]["elig_signs"] == frozenset({"1"})
    assert decoded.iloc[6]["elig_signs"] == frozenset({"2"})
    assert decoded.iloc[0]["demo_date_birth"] == "1964-04-09"  # date_mdy exported as ISO


# --------------------------------------------------------------------------- rsvc-project1 (ODM, raw and labels)


@pytest.fixture(scope="module")
def project_1() -> rc.RedcapProject:
    return rc.read_project_xml(ref("rsvc-project1/Project_1.xml"))


def test_rsvc_project_xml_arms_events_mapping_and_repeating(project_1: rc.RedcapProject) -> None:
    assert list(project_1.arms["name"]) == ["Arm 1", "Arm Two"]
    assert list(project_1.events["unique_event_name"]) == [
        "event_1_arm_1",
        "event_2_arm_1",
        "event_three_arm_1",
        "event_1_arm_2",
    ]
    mapping = project_1.form_event_mapping
    assert len(mapping) == 8
    assert set(mapping.loc[mapping["unique_event_name"] == "event_three_arm_1", "form"]) == {
        "survey",
        "consent",
    }
    assert project_1.repeating_instruments == {("event_1_arm_1", "data_types")}
    assert project_1.repeating_events == {"event_2_arm_1"}
    assert project_1.data_access_groups == ["TestGroup1", "TestGroup2"]
    assert project_1.survey_forms == ["survey", "consent"]
    dictionary = project_1.dictionary
    assert dictionary.forms == ["text_validation", "data_types", "survey", "consent"]
    assert dictionary.form_labels["data_types"] == "Data Types"
    assert dictionary.fields["radio"].choices == {"9..9": "Choice99", "100": "Choice100", "101": "Choice101"}
    assert list(dictionary.fields["multiple_dropdown_manual"].choices) == ["5", "7", "6"]  # out of order
    assert dictionary.fields["multiple_dropdown_manual"].field_type == "dropdown"
    assert dictionary.fields["integer"].validation == "integer"
    assert dictionary.checkbox_fields["checkbox"] == {
        "checkbox___1": "1",
        "checkbox___2": "2",
        "checkbox___3": "3",
    }


def test_rsvc_raw_csv_matches_project_xml(project_1: rc.RedcapProject) -> None:
    raw = rc.read_records(ref("rsvc-project1/D21700_DATA.csv"), project_1.dictionary)
    assert len(raw.data) == 15 and raw.record_ids == ["1", "2", "3", "4"]
    assert raw.repeating_events == {"event_2_arm_1"}
    assert raw.repeating_instruments == {("event_1_arm_1", "data_types")}
    assert raw.row_kind.value_counts().to_dict() == {
        "repeating_instrument": 8,
        "non_repeating": 5,
        "repeating_event": 2,
    }
    assert list(raw.data.columns[:-1]) == list(project_1.records.data.columns[:-1])
    keys = ["record_id", rc.EVENT_COLUMN, rc.REPEAT_INSTRUMENT_COLUMN, rc.REPEAT_INSTANCE_COLUMN]
    assert set(map(tuple, raw.data[keys].to_numpy())) == set(
        map(tuple, project_1.records.data[keys].to_numpy())
    )
    repeat_row = rows_of(raw, record_id="1", redcap_repeat_instrument="data_types")[0]
    assert repeat_row["number_1_comma"] == "2,0"
    assert repeat_row["phone_uk"] == " +44 7911 123456"  # CSV adds a space before "+"
    xml_row = rows_of(project_1.records, record_id="1", redcap_repeat_instrument="data_types")[0]
    assert xml_row["phone_uk"] == "+44 7911 123456" and xml_row["checkbox___1"] == "1"
    decoded = rc.decode_records(raw, project_1.dictionary)
    assert decoded.iloc[2]["radio_button_manual"] == "Choice100"
    assert decoded.iloc[2]["checkbox"] == frozenset({"1"})


def test_rsvc_label_export_maps_back_to_codes(project_1: rc.RedcapProject) -> None:
    labels = rc.read_records(
        ref("rsvc-project1/D21700_DATA_LABELS.csv"), project_1.dictionary, "auto", events=project_1.events
    )
    raw = rc.read_records(ref("rsvc-project1/D21700_DATA.csv"), project_1.dictionary)
    assert labels.kind == "labels" and labels.unmapped_labels == []
    assert labels.label_header[:3] == ["Record ID", "Event Name", "Repeat Instrument"]
    assert labels.label_header.count("Complete?") == 4
    assert list(labels.data.columns) == list(raw.data.columns)
    # events, repeat instrument, checkboxes (Checked/Unchecked), choices and form status all become codes
    assert list(labels.data[rc.EVENT_COLUMN]) == list(raw.data[rc.EVENT_COLUMN])
    assert set(labels.data[rc.REPEAT_INSTRUMENT_COLUMN]) == {"", "data_types"}
    assert list(labels.data["checkbox___1"])[2:5] == ["1", "0", "0"]
    assert labels.data.iloc[2]["multiple_dropdown_manual"] == "5"
    assert labels.data.iloc[3]["text_validation_complete"] == "1"
    assert labels.data.equals(raw.data)


def test_label_export_needs_a_dictionary() -> None:
    with pytest.raises(rc.RedcapFormatError, match=r"D21700_DATA_LABELS\.csv, row 0: .*dictionary"):
        rc.read_records(ref("rsvc-project1/D21700_DATA_LABELS.csv"), kind="auto")


# --------------------------------------------------------------------------- PyCap long project (ODM)


def test_pycap_long_project_xml() -> None:
    project = rc.read_project_xml(ref("pycap-long-project/test_long_project.xml"))
    assert project.record_id_field == "study_id"
    assert len(project.events) == 16
    assert list(project.arms["name"]) == ["Drug A", "Drug B"]
    assert (project.events["arm_num"] == "2").sum() == 8
    assert project.repeating_instruments == {("enrollment_arm_1", "baseline_data")}
    assert project.repeating_events == set()
    mapping = project.form_event_mapping
    assert set(mapping.loc[mapping["unique_event_name"] == "enrollment_arm_1", "form"]) == {
        "demographics",
        "contact_info",
        "baseline_data",
    }
    assert set(mapping.loc[mapping["unique_event_name"] == "deadline_to_opt_ou_arm_2", "form"]) == {
        "contact_info"
    }
    assert project.dictionary.fields["given_birth"].choices == {"1": "Yes", "0": "No"}
    assert project.dictionary.checkbox_fields["meds"]["meds___5"] == "5"
    assert project.dictionary.fields["specify_mood"].field_type == "slider"
    assert project.records.record_ids == ["1", "2"]
    baseline = rows_of(project.records, study_id="1", redcap_repeat_instrument="baseline_data")
    assert [r["weight2"] for r in baseline] == ["100"]


def test_odm_with_doctype_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ODM>&a;</ODM>', encoding="utf-8")
    with pytest.raises(rc.RedcapFormatError, match=r"bomb\.xml: .*DOCTYPE"):
        rc.read_project_xml(bomb)


# --------------------------------------------------------------------------- parsing details


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1, Yes | 2, No", {"1": "Yes", "2": "No"}),
        ("1, Yes|0, No", {"1": "Yes", "0": "No"}),
        ("-99, Unknown | -98, Not Given", {"-99": "Unknown", "-98": "Not Given"}),
        ("a, Red, dark | b, Blue", {"a": "Red, dark", "b": "Blue"}),
        ("choice_1, A | choice_2, A", {"choice_1": "A", "choice_2": "A"}),
        ("", {}),
    ],
)
def test_parse_choices(text: str, expected: dict[str, str]) -> None:
    assert rc.parse_choices(text, "radio") == expected


def test_records_with_bom_crlf_and_quoted_newline(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_bytes(
        '\ufeffrecord_id,redcap_event_name,note\r\n007,baseline_arm_1,"two\r\nlines"\r\n008,baseline_arm_1,x'.encode()
    )
    records = rc.read_records(export)
    assert records.record_ids == ["007", "008"]
    assert records.data.iloc[0]["note"] == "two\r\nlines"
    assert list(records.source_row) == [1, 2]


def test_ragged_row_names_file_and_row(tmp_path: Path) -> None:
    export = tmp_path / "ragged.csv"
    export.write_text("record_id,a,b\n1,2,3\n2,3\n", encoding="utf-8")
    with pytest.raises(rc.RedcapFormatError, match=r"ragged\.csv, row 2: has 2 cells but the header has 3"):
        rc.read_records(export)
