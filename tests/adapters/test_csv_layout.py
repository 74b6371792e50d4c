"""csv_layout adapter and the shared forward mapping, on realistic site exports."""

from __future__ import annotations

import os
import shutil
import stat
import time
import zipfile
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from poem_registry.adapters import csv_layout
from poem_registry.adapters.base import SOURCE_FILE, SOURCE_ROW, Delivery, DeliveryError
from poem_registry.adapters.mapping import MappingSpec, map_frame, render_decimal
from poem_registry.sites import load_site
from tests.adapters.conftest import (
    DATA_DIR,
    LAYOUT_MAPPING,
    PROCEDURE_HEADER,
    csv_bytes,
    findings_of,
    procedure_rows,
    rows_reported_as_empty,
)


def _delivery(site, folder: Path) -> Delivery:
    return Delivery(site_id=site.site_id, extract_id=folder.name.removesuffix(".zip"), path=folder)


def _write_extract(root: Path, files: dict[str, bytes], extract_id: str = "2025-03-01") -> Path:
    folder = root / "landing" / "northbay" / extract_id
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# ---------------------------------------------------------------------------- the committed hand-made delivery


def test_committed_northbay_delivery_maps_every_layout_feature():
    site = load_site(DATA_DIR / "sites" / "northbay.yml")
    [delivery] = csv_layout.discover(site, DATA_DIR / "landing")
    assert delivery.extract_id == "2025-03-01_monthly"

    out = csv_layout.read(delivery, site)

    proc = out.frames["procedures"].set_index("procedure_id")
    assert list(proc.index) == ["NB-1001", "NB-1002", "NB-1003", "NB-1004", "NB-1005"]
    # the quoted comment spans two physical lines but is one record: row numbers are record numbers
    assert proc[SOURCE_ROW].tolist() == [1, 2, 3, 4, 5]
    assert set(proc[SOURCE_FILE]) == {"poem_cases_2025.csv"}
    assert proc.loc["NB-1002", "Comments"] == "Capno at 40 min,\nneedle not needed"
    # cp1252 accents decoded; the unknown column is kept under its own name for the ingest to report
    assert proc.loc["NB-1004", "Comments"] == "fibrose sévère, cardia épaissi"
    assert out.extra_columns == {"procedures": ["Comments"]}
    # MM/DD/YYYY -> ISO; an impossible date stays as the site's text for the validator to reject
    assert proc.loc["NB-1001", "procedure_date"] == "2025-01-06"
    assert proc.loc["NB-1003", "procedure_date"] == "02/30/2025"
    assert proc.loc["NB-1001", "record_updated_at"] == "2025-01-07T09:15:00"
    # labels -> codes, whatever the case and spacing
    assert proc["diagnosis"].tolist() == [
        "achalasia_type_2",
        "achalasia_type_3",
        "achalasia_type_3",
        "achalasia_type_1",
        "Jackhammer",
    ]
    assert proc["procedure_type"].tolist() == ["poem", "poem_f", "poem", "redo_poem", "poem"]
    assert proc["sex"].tolist() == ["female", "male", "female", "male", "female"]
    # mm -> cm without float noise; decimal comma; Y/N/Yes/No booleans; empty cell -> missing
    assert proc["tunnel_length_cm"].tolist() == ["12.5", "13", "11", "9.5", "15"]
    assert proc.loc["NB-1001", "baseline_irp_mmhg"] == "28.4"
    assert proc.loc["NB-1004", "baseline_irp_mmhg"] == "19.75"
    assert pd.isna(proc.loc["NB-1003", "baseline_irp_mmhg"])
    assert proc["technical_success"].tolist() == ["true", "true", "true", "false", "true"]
    assert proc["capnoperitoneum"].tolist() == ["false", "true", "false", "false", "false"]
    assert all(isinstance(v, str) for v in proc["age_at_procedure"])

    [unmapped] = findings_of(out, "unmapped_code")
    assert (unmapped.column_name, unmapped.value, unmapped.source_row) == ("diagnosis", "Jackhammer", 5)
    assert unmapped.severity == "warning" and unmapped.category == "conformance"
    assert unmapped.file_name == "poem_cases_2025.csv"
    assert "mapping.codes.diagnosis" in unmapped.message

    fu = out.frames["followups"]
    assert fu["assessment_date"].tolist() == ["2025-07-01", "2025-07-15"]
    assert fu["aet_percent"].tolist()[0] == "4.2" and pd.isna(fu["aet_percent"].tolist()[1])
    assert fu["ppi_use"].tolist() == ["false", "true"]
    assert set(out.files) == {"poem_cases_2025.csv", "poem_followup_2025.csv"}
    assert out.files["poem_cases_2025.csv"] == (delivery.path / "poem_cases_2025.csv").read_bytes()
    assert out.extracted_at == "2025-03-01"


# ---------------------------------------------------------------------------- encodings, BOM, CRLF, quoting


def test_utf8_with_bom_crlf_and_comma_delimiter(tmp_path, make_site):
    site = make_site(mapping={**LAYOUT_MAPPING, "delimiter": ",", "encoding": "utf-8", "decimal": "."})
    rows = procedure_rows(3)
    for r in rows:
        r[9] = r[9].replace(",", ".")
    rows[1][-1] = 'Said "no reflux",\r\nthen "some"'
    data = b"\xef\xbb\xbf" + csv_bytes(PROCEDURE_HEADER, rows, delimiter=",", encoding="utf-8")
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": data})

    out = csv_layout.read(_delivery(site, folder), site)

    frame = out.frames["procedures"]
    assert frame.columns[0] == "procedure_id"  # the BOM did not stick to the first header
    assert frame["procedure_id"].tolist() == ["NB-000001", "NB-000002", "NB-000003"]
    assert frame["Comments"].tolist()[1] == 'Said "no reflux",\nthen "some"'
    assert frame[SOURCE_ROW].tolist() == [1, 2, 3]


def test_latin1_declared_and_blank_lines_keep_row_numbers(tmp_path, make_site):
    site = make_site(mapping={**LAYOUT_MAPPING, "encoding": "latin-1"})
    rows = procedure_rows(2)
    rows[0][-1] = "œsophage dilaté"[1:]  # latin-1 has no œ; the rest is latin-1
    data = csv_bytes(PROCEDURE_HEADER, rows, encoding="latin-1")
    data = data.replace(b"\r\nNB-000002", b"\r\n\r\nNB-000002")  # a blank line between the records
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": data})

    out = csv_layout.read(_delivery(site, folder), site)

    frame = out.frames["procedures"]
    assert frame["Comments"].tolist()[0] == "sophage dilaté"
    assert frame[SOURCE_ROW].tolist() == [1, 3]  # the blank line counts, as in a spreadsheet
    [empty] = findings_of(out, "empty_row")
    assert empty.source_row == 2 and empty.severity == "info"


def test_cp1252_file_declared_utf8_is_refused_with_advice(tmp_path, make_site):
    site = make_site(mapping={**LAYOUT_MAPPING, "encoding": "utf-8"})
    rows = procedure_rows(4)
    rows[2][-1] = "Sténose"
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": csv_bytes(PROCEDURE_HEADER, rows)})

    with pytest.raises(DeliveryError) as err:
        csv_layout.read(_delivery(site, folder), site)

    msg = str(err.value)
    assert "site northbay" in msg and "poem_cases_2025.csv" in msg
    assert "not valid utf-8" in msg and "line 4" in msg and "0xe9" in msg
    assert "cp1252" in msg and "mapping.encoding" in msg
    assert err.value.rule == "encoding" and err.value.file_name == "poem_cases_2025.csv"


def test_utf8_file_declared_cp1252_is_refused_instead_of_garbled(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    rows = procedure_rows(2)
    rows[0][-1] = "Sténose"
    folder = _write_extract(
        tmp_path, {"poem_cases_2025.csv": csv_bytes(PROCEDURE_HEADER, rows, encoding="utf-8")}
    )

    with pytest.raises(
        DeliveryError, match=r"is UTF-8 text but mapping.encoding says cp1252.*encoding: utf-8"
    ):
        csv_layout.read(_delivery(site, folder), site)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40, "Excel workbook or zip"),
        (b"Case No;MRN\r\n\x00\x01\x02\x00", "binary data"),
        (b"", "is empty"),
    ],
)
def test_a_file_that_is_not_csv_text_is_refused(tmp_path, make_site, content, expected):
    site = make_site(mapping=LAYOUT_MAPPING)
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": content})
    with pytest.raises(DeliveryError, match=expected) as err:
        csv_layout.read(_delivery(site, folder), site)
    assert "poem_cases_2025.csv" in str(err.value)


def test_a_row_with_an_unquoted_delimiter_is_refused_with_the_line(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    data = (
        csv_bytes(PROCEDURE_HEADER, procedure_rows(3)) + b"NB-9;1;DR-1;01/02/2025;POEM;F;50;I;100;1;Y;a;b\r\n"
    )
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": data})
    with pytest.raises(DeliveryError, match=r"not a well-formed CSV.*line 5.*double quotes"):
        csv_layout.read(_delivery(site, folder), site)


def test_comma_file_for_a_semicolon_site_says_so(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    data = csv_bytes(PROCEDURE_HEADER, procedure_rows(2), delimiter=",")
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": data})
    with pytest.raises(DeliveryError, match=r"seems to use ',' as delimiter.*mapping.delimiter"):
        csv_layout.read(_delivery(site, folder), site)


# ---------------------------------------------------------------------------- schema drift and missing files


def test_renamed_column_is_schema_drift_with_a_helpful_message(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    header = ["Case Number" if h == "Case No" else h for h in PROCEDURE_HEADER]
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": csv_bytes(header, procedure_rows(3))})

    with pytest.raises(DeliveryError) as err:
        csv_layout.read(_delivery(site, folder), site)

    msg = str(err.value)
    assert "column 'Case No' mapped to procedure_id is missing from poem_cases_2025.csv" in msg
    assert "the header has: 'Case Number', 'MRN'" in msg
    assert "similar column 'Case Number'" in msg
    assert "did the export layout change?" in msg and "northbay.yml" in msg
    assert err.value.rule == "schema_drift"


def test_dropped_column_is_schema_drift(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    keep = [i for i, h in enumerate(PROCEDURE_HEADER) if h != "IRP"]
    header = [PROCEDURE_HEADER[i] for i in keep]
    rows = [[r[i] for i in keep] for r in procedure_rows(2)]
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": csv_bytes(header, rows)})
    with pytest.raises(DeliveryError, match=r"column 'IRP' mapped to baseline_irp_mmhg is missing"):
        csv_layout.read(_delivery(site, folder), site)


def test_missing_procedures_file_lists_what_was_delivered(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    folder = _write_extract(tmp_path, {"poem_followup_2025.csv": b"Visit ID;Case No;Visit Date\r\n"})
    with pytest.raises(
        DeliveryError, match=r"no procedures file matching 'poem_cases\*.csv'.*poem_followup_2025.csv"
    ):
        csv_layout.read(_delivery(site, folder), site)


def test_unmatched_files_are_reported_and_split_files_are_concatenated(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    folder = _write_extract(
        tmp_path,
        {
            "POEM_CASES_2025_part1.CSV": csv_bytes(PROCEDURE_HEADER, procedure_rows(3)),
            "poem_cases_2025_part2.csv": csv_bytes(PROCEDURE_HEADER, procedure_rows(2, start=4)),
            "readme.txt": b"exported by the EHR",
        },
    )
    out = csv_layout.read(_delivery(site, folder), site)
    frame = out.frames["procedures"]
    assert len(frame) == 5
    assert frame.groupby(SOURCE_FILE)[SOURCE_ROW].max().to_dict() == {
        "POEM_CASES_2025_part1.CSV": 3,
        "poem_cases_2025_part2.csv": 2,
    }
    assert [f.file_name for f in findings_of(out, "unknown_file")] == ["readme.txt"]


def test_a_bad_code_map_is_a_configuration_error(tmp_path, make_site):
    bad = {**LAYOUT_MAPPING, "codes": {"diagnosis": {"Type III": "achalasia_3"}}}
    site = make_site(mapping=bad)
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": csv_bytes(PROCEDURE_HEADER, procedure_rows(1))})
    with pytest.raises(
        DeliveryError, match=r"mapping.codes.diagnosis maps 'Type III' to 'achalasia_3'"
    ) as err:
        csv_layout.read(_delivery(site, folder), site)
    assert err.value.rule == "site_config"


# ---------------------------------------------------------------------------- volume


def test_five_thousand_rows_no_row_lost(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    rows = procedure_rows(5000)
    rows[1234][3] = "13/45/2024"  # impossible date
    rows[2345][7] = "Type 3"  # a spelling the map lacks
    rows[3456][7] = "Type 3"
    data = csv_bytes(PROCEDURE_HEADER, rows)
    data = data.replace(
        b"\r\nNB-004000", b"\r\n;;;;;;;;;;;\r\nNB-004000"
    )  # an empty record (delimiters only)
    folder = _write_extract(tmp_path, {"poem_cases_2025.csv": data})

    started = time.perf_counter()
    out = csv_layout.read(_delivery(site, folder), site)
    elapsed = time.perf_counter() - started

    frame = out.frames["procedures"]
    records_in = 5001
    assert len(frame) + rows_reported_as_empty(out) == records_in
    assert frame["procedure_id"].is_unique and len(frame) == 5000
    assert frame[SOURCE_ROW].max() == records_in
    assert frame.loc[frame["procedure_id"] == "NB-001235", "procedure_date"].item() == "13/45/2024"
    assert frame["procedure_date"].str.match(r"^\d{4}-\d{2}-\d{2}$").sum() == 4999
    assert set(frame["diagnosis"]) == {
        "achalasia_type_1",
        "achalasia_type_2",
        "achalasia_type_3",
        "egjoo",
        "Type 3",
    }
    [unmapped] = findings_of(out, "unmapped_code")
    assert unmapped.value == "Type 3" and unmapped.source_row == 2346 and "2 row(s)" in unmapped.message
    assert elapsed < 10


def test_map_frame_is_vectorised_for_100k_rows(make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    spec = MappingSpec.from_site(site)
    rows = procedure_rows(1000)
    raw = pd.DataFrame([r[:-1] for r in rows] * 100, columns=PROCEDURE_HEADER[:-1], dtype="string")
    raw[SOURCE_FILE] = "big.csv"
    raw[SOURCE_ROW] = range(1, len(raw) + 1)

    started = time.perf_counter()
    mapped = map_frame(raw, entity="procedures", spec=spec, file_name="big.csv")
    elapsed = time.perf_counter() - started

    assert len(mapped.frame) == 100_000
    assert mapped.frame["tunnel_length_cm"].iloc[0] == "8.1"
    assert elapsed < 5, f"mapping 100k rows took {elapsed:.1f}s"


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["0.1", "10", "2.54", "0.03937"]))
def test_unit_factors_are_exact_decimal_arithmetic(value, factor):
    rendered = render_decimal(Decimal(value) * Decimal(factor))
    assert Decimal(rendered) == Decimal(value) * Decimal(factor)
    assert "e" not in rendered.lower() and not (("." in rendered) and rendered.endswith("0"))


# ---------------------------------------------------------------------------- zips and discovery


def _zip(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def test_zip_delivery_reads_like_the_folder(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    root = tmp_path / "landing" / "northbay"
    root.mkdir(parents=True)
    data = csv_bytes(PROCEDURE_HEADER, procedure_rows(10))
    zpath = _zip(root / "2025-04-01.zip", {"2025-04-01/poem_cases_2025.csv": data})

    [delivery] = csv_layout.discover(site, tmp_path / "landing")
    assert delivery.path == zpath and delivery.extract_id == "2025-04-01"
    out = csv_layout.read(delivery, site)
    assert len(out.frames["procedures"]) == 10
    assert out.files == {"poem_cases_2025.csv": data}


@pytest.mark.parametrize(
    ("member", "kind"),
    [("../evil/poem_cases_2025.csv", "unsafe path"), ("/tmp/poem_cases_2025.csv", "unsafe path")],
)
def test_zip_with_unsafe_paths_is_rejected_without_extracting(tmp_path, make_site, member, kind):
    site = make_site(mapping=LAYOUT_MAPPING)
    root = tmp_path / "landing" / "northbay"
    root.mkdir(parents=True)
    _zip(root / "2025-04-01.zip", {member: csv_bytes(PROCEDURE_HEADER, procedure_rows(1))})
    [delivery] = csv_layout.discover(site, tmp_path / "landing")
    with pytest.raises(DeliveryError, match=kind) as err:
        csv_layout.read(delivery, site)
    assert err.value.rule == "zip_safety"
    assert not (tmp_path / "landing" / "evil").exists()


def test_zip_with_a_symlink_is_rejected(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    root = tmp_path / "landing" / "northbay"
    root.mkdir(parents=True)
    _zip(
        root / "2025-04-01.zip",
        {"poem_cases_2025.csv": csv_bytes(PROCEDURE_HEADER, procedure_rows(1))},
        symlink="poem_followup_2025.csv",
    )
    [delivery] = csv_layout.discover(site, tmp_path / "landing")
    with pytest.raises(DeliveryError, match="symbolic link"):
        csv_layout.read(delivery, site)


def test_discover_sorts_folders_and_zips_and_skips_work_files(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING, landing="nb_drop")
    root = tmp_path / "landing" / "nb_drop"
    for name in ("2025-02-01", "2025-01-01", ".partial", "_tmp"):
        (root / name).mkdir(parents=True)
    _zip(root / "2025-03-01.zip", {"poem_cases.csv": b"x"})
    _zip(root / "2025-01-01.zip", {"poem_cases.csv": b"x"})  # same extract as the folder: the folder wins
    (root / "notes.txt").write_text("not a delivery")

    found = csv_layout.discover(site, tmp_path / "landing")

    assert [d.extract_id for d in found] == ["2025-01-01", "2025-02-01", "2025-03-01"]
    assert found[0].path.is_dir() and found[2].path.suffix == ".zip"
    assert {d.site_id for d in found} == {"northbay"}
    assert csv_layout.discover(make_site("other_site", mapping=LAYOUT_MAPPING), tmp_path / "landing") == []


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_file_in_a_folder_delivery_is_refused(tmp_path, make_site):
    site = make_site(mapping=LAYOUT_MAPPING)
    folder = _write_extract(tmp_path, {})
    secret = tmp_path / "secret.csv"
    shutil.copy(DATA_DIR / "landing" / "northbay" / "2025-03-01_monthly" / "poem_cases_2025.csv", secret)
    (folder / "poem_cases_2025.csv").symlink_to(secret)
    with pytest.raises(DeliveryError, match="symbolic link"):
        csv_layout.read(_delivery(site, folder), site)


def test_unquoted_yaml_yes_no_in_booleans_and_codes_still_work(tmp_path):
    # PyYAML reads unquoted Yes/No as booleans and 1 as an int; operators write them unquoted anyway.
    path = tmp_path / "westend.yml"
    path.write_text(
        "site_id: westend\nname: Westend\nadapter: csv_layout\nmapping:\n"
        "  booleans: {true: [Yes, 1, x], false: [No, 0]}\n"
        "  codes: {fundoplication: {done: true}}\n",
        encoding="utf-8",
    )
    spec = MappingSpec.from_site(load_site(path))
    assert spec.booleans["yes"] == "true" and spec.booleans["x"] == "true" and spec.booleans["no"] == "false"
    raw = pd.DataFrame(
        {"technical_success": ["YES", " no ", "x", "vielleicht"], "fundoplication": ["Done"] * 4}
    )
    raw[SOURCE_FILE], raw[SOURCE_ROW] = "p.csv", range(1, 5)
    mapped = map_frame(raw, entity="procedures", spec=spec, file_name="p.csv")
    assert mapped.frame["technical_success"].tolist() == ["true", "false", "true", "vielleicht"]
    assert mapped.frame["fundoplication"].tolist() == ["true"] * 4
    [finding] = mapped.findings
    assert (finding.value, finding.source_row, finding.rule) == ("vielleicht", 4, "unmapped_code")
    assert "mapping.booleans" in finding.message
