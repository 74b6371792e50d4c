"""xlsx adapter: one workbook per extract, one sheet per entity, Excel cells turned into exchange text."""

from __future__ import annotations

import io
import time
import zipfile
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from poem_registry.adapters import xlsx
from poem_registry.adapters.base import SOURCE_FILE, SOURCE_ROW, Delivery, DeliveryError
from tests.adapters.conftest import findings_of, rows_reported_as_empty

XLSX_MAPPING: dict = {
    "workbook": "POEM_registry_*.xlsx",
    "sheets": {"procedures": "Procedures", "followups": "Follow-ups"},
    "date_format": "%d.%m.%Y",  # the text dates some coordinators type in
    "booleans": {"true": ["ja", "x"], "false": ["nein"]},
    "columns": {
        "procedures": {
            "Fall-Nr": "procedure_id",
            "Patient": "patient_id",
            "Operateur": "operator_id",
            "OP-Datum": "procedure_date",
            "Eingriff": "procedure_type",
            "Geschlecht": "sex",
            "Geburtsjahr": "birth_year",
            "Diagnose": "diagnosis",
            "Tunnel mm": "tunnel_length_cm",
            "Erfolg": "technical_success",
            "Geändert": "record_updated_at",
        },
        "followups": {"Visite": "assessment_id", "Fall-Nr": "procedure_id", "Datum": "assessment_date"},
    },
    "codes": {
        "diagnosis": {
            "Typ I": "achalasia_type_1",
            "Typ II": "achalasia_type_2",
            "Typ III": "achalasia_type_3",
        },
        "sex": {"w": "female", "m": "male"},
        "procedure_type": {"POEM": "poem"},
    },
    "units": {"procedures": {"tunnel_length_cm": 0.1}},
}
PROC_HEADER = list(XLSX_MAPPING["columns"]["procedures"])


def _workbook(
    path: Path, procedures: list[list], followups: list[list] | None = None, *, extra: bool = True
) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "Procedures"
    ws.append(PROC_HEADER)
    for row in procedures:
        ws.append(row)
    for cell in ws["D"][1:]:
        if isinstance(cell.value, datetime | date):
            cell.number_format = "DD.MM.YYYY"
    if followups is not None:
        fs = wb.create_sheet("Follow-ups")
        fs.append(["Visite", "Fall-Nr", "Datum", "Bemerkung"])
        for row in followups:
            fs.append(row)
    if extra:
        wb.create_sheet("Lookup").append(["Typ I", "Typ II"])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def _site(make_site, **overrides):
    return make_site("lakeside", adapter="xlsx", mapping={**XLSX_MAPPING, **overrides})


def _delivery(path: Path, extract_id: str = "2025-05-01") -> Delivery:
    return Delivery(site_id="lakeside", extract_id=extract_id, path=path)


def test_two_sheets_with_excel_date_cells_and_text_dates(tmp_path, make_site):
    site = _site(make_site)
    folder = tmp_path / "2025-05-01"
    _workbook(
        folder / "POEM_registry_2025-05.xlsx",
        [
            [
                1001,
                "P-77",
                "OP3",
                datetime(2025, 3, 4),
                "POEM",
                "w",
                1971,
                "Typ II",
                120,
                True,
                datetime(2025, 3, 5, 9, 30),
            ],
            [
                1002.0,
                "P-78",
                "OP3",
                "17.03.2025",
                "poem",
                "m",
                1960,
                " typ iii",
                95.5,
                "ja",
                "2025-03-18 10:00",
            ],
            [None, None, None, None, None, None, None, None, None, None, None],  # formatted but empty row
            [1003, "P-79", "OP4", "31.02.2025", "POEM", "w", 1980, "Typ 3", 0.1 + 0.2, "nein", None],
        ],
        [["V1", 1001, datetime(2025, 9, 1), "telefonisch"], ["V2", 1002, "01.10.2025", None]],
    )

    out = xlsx.read(_delivery(folder), site)

    proc = out.frames["procedures"]
    assert proc["procedure_id"].tolist() == ["1001", "1002", "1003"]  # integers never gain ".0"
    assert proc["procedure_date"].tolist() == [
        "2025-03-04",
        "2025-03-17",
        "31.02.2025",
    ]  # impossible date kept raw
    assert proc["birth_year"].tolist() == ["1971", "1960", "1980"]
    assert proc["tunnel_length_cm"].tolist() == [
        "12",
        "9.55",
        "0.03",
    ]  # 0.1 + 0.2 is 0.3 in Excel, then mm -> cm
    assert proc["technical_success"].tolist() == ["true", "true", "false"]
    assert proc["diagnosis"].tolist() == ["achalasia_type_2", "achalasia_type_3", "Typ 3"]
    assert proc["sex"].tolist() == ["female", "male", "female"]
    assert proc["record_updated_at"].tolist()[:2] == ["2025-03-05T09:30:00", "2025-03-18T10:00:00"]
    assert pd.isna(proc["record_updated_at"].tolist()[2])
    assert proc[SOURCE_ROW].tolist() == [1, 2, 4]  # spreadsheet row minus one; the empty row is reported
    assert set(proc[SOURCE_FILE]) == {"POEM_registry_2025-05.xlsx#Procedures"}
    assert rows_reported_as_empty(out) == 1

    fu = out.frames["followups"]
    assert fu["assessment_date"].tolist() == ["2025-09-01", "2025-10-01"]
    assert fu["procedure_id"].tolist() == ["1001", "1002"]
    assert out.extra_columns == {"followups": ["Bemerkung"]}
    [unmapped] = findings_of(out, "unmapped_code")
    assert (unmapped.value, unmapped.source_row, unmapped.column_name) == ("Typ 3", 4, "diagnosis")
    assert [f.message for f in findings_of(out, "unknown_sheet")] == [
        "sheet 'Lookup' of POEM_registry_2025-05.xlsx is not mapped to an entity; it was not loaded"
    ]
    assert list(out.files) == ["POEM_registry_2025-05.xlsx"]
    assert out.extracted_at == "2025-05-01"


def test_sheet_names_match_ignoring_case_and_optional_sheets_may_be_absent(tmp_path, make_site):
    site = _site(make_site, sheets={"procedures": "  procedures "})
    folder = tmp_path / "2025-05-01"
    _workbook(
        folder / "POEM_registry_1.xlsx",
        [[1, "P", "O", datetime(2025, 1, 2), "POEM", "w", 1970, "Typ I", 100, 1, None]],
    )
    out = xlsx.read(_delivery(folder), site)
    assert list(out.frames) == ["procedures"]
    assert out.frames["procedures"]["technical_success"].tolist() == ["true"]


def test_missing_required_sheet_names_the_sheets_there(tmp_path, make_site):
    site = _site(make_site, sheets={"procedures": "Eingriffe"})
    folder = tmp_path / "2025-05-01"
    _workbook(folder / "POEM_registry_1.xlsx", [])
    with pytest.raises(DeliveryError) as err:
        xlsx.read(_delivery(folder), site)
    msg = str(err.value)
    assert "site lakeside" in msg and "POEM_registry_1.xlsx has no sheet 'Eingriffe' for procedures" in msg
    assert "['Procedures', 'Lookup']" in msg and "mapping.sheets.procedures" in msg


def test_renamed_column_in_the_sheet_is_schema_drift(tmp_path, make_site):
    site = _site(make_site)
    folder = tmp_path / "2025-05-01"
    path = _workbook(
        folder / "POEM_registry_1.xlsx",
        [[1, "P", "O", datetime(2025, 1, 2), "POEM", "w", 1970, "Typ I", 100, 1, None]],
    )
    from openpyxl import load_workbook

    wb = load_workbook(path)
    wb["Procedures"]["A1"] = "Fallnummer"
    wb.save(path)
    with pytest.raises(
        DeliveryError, match=r"column 'Fall-Nr' mapped to procedure_id is missing from .*#Procedures"
    ):
        xlsx.read(_delivery(folder), site)


def test_corrupt_workbook_is_refused_clearly(tmp_path, make_site):
    site = _site(make_site)
    folder = tmp_path / "2025-05-01"
    good = _workbook(
        tmp_path / "good.xlsx", [[1, "P", "O", datetime(2025, 1, 2), "POEM", "w", 1970, "Typ I", 1, 1, None]]
    )
    folder.mkdir()
    (folder / "POEM_registry_1.xlsx").write_bytes(good.read_bytes()[:1500])  # truncated in transfer
    with pytest.raises(DeliveryError, match=r"damaged .xlsx workbook|cannot be opened as an .xlsx") as err:
        xlsx.read(_delivery(folder), site)
    assert "POEM_registry_1.xlsx" in str(err.value) and "save it" in str(err.value)


def test_a_zip_without_a_workbook_inside_is_refused(tmp_path, make_site):
    site = _site(make_site)
    folder = tmp_path / "2025-05-01"
    folder.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    (folder / "POEM_registry_1.xlsx").write_bytes(buffer.getvalue())
    with pytest.raises(DeliveryError, match=r"cannot be opened as an \.xlsx workbook"):
        xlsx.read(_delivery(folder), site)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"Fall-Nr;Patient\r\n1;P\r\n", "not an Excel .xlsx workbook .it contains text such as CSV"),
        (b"<html><body>Export failed</body></html>", "contains HTML"),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100,
            "legacy .xls workbook or a password-protected file",
        ),
    ],
)
def test_non_xlsx_file_with_xlsx_name_is_refused(tmp_path, make_site, content, expected):
    site = _site(make_site)
    folder = tmp_path / "2025-05-01"
    folder.mkdir()
    (folder / "POEM_registry_1.xlsx").write_bytes(content)
    with pytest.raises(DeliveryError, match=expected):
        xlsx.read(_delivery(folder), site)


def test_zero_or_two_workbooks_are_refused(tmp_path, make_site):
    site = _site(make_site)
    folder = tmp_path / "2025-05-01"
    folder.mkdir()
    (folder / "~$POEM_registry_1.xlsx").write_bytes(b"lock file of an open workbook")
    with pytest.raises(DeliveryError, match=r"no workbook matching 'POEM_registry_\*.xlsx'"):
        xlsx.read(_delivery(folder), site)
    _workbook(folder / "POEM_registry_1.xlsx", [])
    _workbook(folder / "POEM_registry_2.xlsx", [])
    with pytest.raises(DeliveryError, match="2 workbooks matching"):
        xlsx.read(_delivery(folder), site)


def test_discover_accepts_folders_zips_and_bare_workbooks(tmp_path, make_site):
    site = _site(make_site)
    root = tmp_path / "landing" / "lakeside"
    rows = [[1, "P", "O", datetime(2025, 1, 2), "POEM", "w", 1970, "Typ I", 100, 1, None]]
    _workbook(root / "2025-02-01" / "POEM_registry_feb.xlsx", rows)
    _workbook(root / "POEM_registry_2025-03.xlsx", rows)
    with zipfile.ZipFile(root / "2025-01-01.zip", "w") as archive:
        archive.write(root / "POEM_registry_2025-03.xlsx", "POEM_registry_jan.xlsx")
    (root / "~$POEM_registry_2025-03.xlsx").write_bytes(b"lock")

    found = xlsx.discover(site, tmp_path / "landing")

    assert [d.extract_id for d in found] == ["2025-01-01", "2025-02-01", "POEM_registry_2025-03"]
    for delivery in found:
        assert len(xlsx.read(delivery, site).frames["procedures"]) == 1


def test_three_thousand_rows_no_row_lost(tmp_path, make_site):
    site = _site(make_site)
    rows = []
    for i in range(3000):
        when = datetime(2024, 1 + i % 12, 1 + i % 28) if i % 3 else f"{1 + i % 28:02d}.{1 + i % 12:02d}.2024"
        rows.append(
            [
                10_000 + i,
                f"P-{i}",
                f"OP{i % 7}",
                when,
                "POEM",
                "wm"[i % 2],
                1950 + i % 40,
                ["Typ I", "Typ II", "Typ III"][i % 3],
                80 + i % 60,
                i % 13 != 0,
                None,
            ]
        )
    rows[100][7] = "unklar"
    folder = tmp_path / "2025-05-01"
    _workbook(folder / "POEM_registry_big.xlsx", rows)

    started = time.perf_counter()
    out = xlsx.read(_delivery(folder), site)
    elapsed = time.perf_counter() - started

    proc = out.frames["procedures"]
    assert len(proc) == 3000 and proc["procedure_id"].is_unique
    assert proc["procedure_date"].str.match(r"^2024-\d{2}-\d{2}$").all()
    assert proc[SOURCE_ROW].tolist() == list(range(1, 3001))
    assert [f.source_row for f in findings_of(out, "unmapped_code")] == [101]
    assert elapsed < 15
