"""Ingestion of exchange-format deliveries into a real DuckDB file.

Each bad input asserts two things: the message names site, file, row and rule,
and nothing is lost (loaded rows + quarantined rows = delivered rows).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from poem_registry.ingest import ingest
from poem_registry.ingest.pseudonymize import MissingSecretError
from tests.ingest.conftest import followup, procedure, to_csv, write_delivery, write_site


def _raw(settings, table: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(f"select * from raw.{table}").df()


def _batches(settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute("select * from ingest.batches order by batch_seq").df()


def _findings(settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute("select * from ingest.findings").df()


def _quarantine_report(outcome) -> str:
    return (Path(outcome.quarantine_path) / "report.md").read_text(encoding="utf-8")


def _rejected_rows(outcome, entity: str) -> pd.DataFrame:
    return pd.read_csv(Path(outcome.quarantine_path) / f"rejected_{entity}.csv", dtype=str)


def test_clean_delivery_is_loaded_with_lineage_and_pseudonyms(site):
    procs = [procedure("P1"), procedure("P2", operator_id="9876543210")]
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv(procs, "procedures"),
                    "followups.csv": to_csv([followup("F1", "P1")], "followups")}, manifest=True)
    summary = ingest(site)
    assert summary.site_errors == {}
    [outcome] = summary.outcomes
    assert outcome.status == "committed", outcome.message
    assert outcome.rows_loaded == {"procedures": 2, "followups": 1}
    raw = _raw(site, "procedures")
    assert sorted(raw["procedure_id"]) == ["P1", "P2"]
    assert set(raw["_source_row"]) == {1, 2}
    assert set(raw["_source_file"]) == {"procedures.csv"}
    assert set(raw["_extract_id"]) == {"2024-04-01"}
    assert str(raw["_extracted_at"].iloc[0]).startswith("2024-04-01")
    assert "patient_id" not in raw.columns and "operator_id" not in raw.columns
    assert raw["patient_key"].str.startswith("p_").all()
    assert raw["operator_key"].nunique() == 2
    assert not raw.isin(["MRNP1", "MRNP2", "1234567890"]).any().any()


def test_operator_key_is_the_same_across_sites_patient_key_is_not(poem_home):
    write_site(poem_home.sites_dir, "alpha")
    write_site(poem_home.sites_dir, "beta")
    for s in ("alpha", "beta"):
        write_delivery(poem_home.landing_dir, s, "2024-04-01",
                       {"procedures.csv": to_csv([procedure("P1")], "procedures")})
    ingest(poem_home)
    raw = _raw(poem_home, "procedures").set_index("_site_id")
    assert raw.loc["alpha", "operator_key"] == raw.loc["beta", "operator_key"]
    assert raw.loc["alpha", "patient_key"] != raw.loc["beta", "patient_key"]


def test_same_delivery_twice_loads_nothing_and_says_so(site):
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": to_csv([procedure("P1")], "procedures")})
    ingest(site)
    second = ingest(site)
    [outcome] = second.outcomes
    assert outcome.status == "duplicate"
    assert "already processed" in outcome.message
    assert len(_raw(site, "procedures")) == 1
    assert len(_batches(site)) == 1


def test_identical_file_in_a_new_extract_is_not_loaded_again(site):
    data = to_csv([procedure("P1")], "procedures")
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": data})
    write_delivery(site.landing_dir, "alpha", "2024-05-01",
                   {"procedures.csv": data, "followups.csv": to_csv([followup("F1", "P1")], "followups")})
    summary = ingest(site)
    assert [o.rows_loaded for o in summary.outcomes] == [{"procedures": 1}, {"followups": 1}]
    assert "file_already_loaded" in set(_findings(site)["rule"])


def test_corrected_record_is_a_new_version_and_history_is_kept(site):
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": to_csv([procedure("P1")], "procedures")})
    write_delivery(site.landing_dir, "alpha", "2024-05-01", {"procedures.csv": to_csv(
        [procedure("P1", procedure_minutes="120", record_updated_at="2024-05-01T09:00:00")], "procedures")})
    ingest(site)
    raw = _raw(site, "procedures").sort_values("_batch_seq")
    assert list(raw["procedure_minutes"]) == [95, 120]
    assert list(raw["_extract_id"]) == ["2024-04-01", "2024-05-01"]


def test_follow_up_before_its_procedure_arrives_is_held_not_dropped(site):
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1")], "procedures"),
                    "followups.csv": to_csv([followup("F9", "P9", assessment_date="2024-09-01")], "followups")})
    first = ingest(site).outcomes[0]
    assert first.rows_loaded.get("followups") == 1
    assert "parent" in " ".join(_findings(site)["rule"]).lower()
    write_delivery(site.landing_dir, "alpha", "2024-05-01",
                   {"procedures.csv": to_csv([procedure("P9", procedure_date="2024-04-15")], "procedures")})
    ingest(site)
    assert set(_raw(site, "followups")["procedure_id"]) == {"P9"}
    assert "P9" in set(_raw(site, "procedures")["procedure_id"])


def test_withdrawal_purges_every_row_and_blocks_redelivery(site):
    procs = [procedure("P1", patient_id="MRN-W"), procedure("P2")]
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv(procs, "procedures"),
                    "followups.csv": to_csv([followup("F1", "P1"), followup("F2", "P2")], "followups")})
    ingest(site)
    write_delivery(site.landing_dir, "alpha", "2024-05-01",
                   {"procedures.csv": to_csv([procedure("P3")], "procedures"),
                    "withdrawals.csv": to_csv([{"patient_id": "MRN-W", "withdrawn_at": "2024-04-20"}],
                                              "withdrawals")})
    ingest(site)
    assert set(_raw(site, "procedures")["procedure_id"]) == {"P2", "P3"}
    assert set(_raw(site, "followups")["procedure_id"]) == {"P2"}
    with duckdb.connect(str(site.warehouse_path), read_only=True) as con:
        applied = con.execute("select rows_purged from ingest.withdrawals_applied").fetchall()
    assert applied == [(2,)]
    # a cumulative re-delivery of the withdrawn patient is not loaded again
    write_delivery(site.landing_dir, "alpha", "2024-06-01",
                   {"procedures.csv": to_csv([*procs, procedure("P4")], "procedures")})
    outcome = ingest(site).outcomes[-1]
    assert outcome.rows_withdrawn == 1
    assert "P1" not in set(_raw(site, "procedures")["procedure_id"])


def test_crash_between_reading_and_commit_leaves_nothing_and_rerun_loads_all(site):
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1"), procedure("P2")], "procedures"),
                    "followups.csv": to_csv([followup("F1", "P1")], "followups")})
    env = {**os.environ, "POEM_FAULT": "ingest.mid_commit", "POEM_FAULT_MODE": "kill",
           "POEM_HOME": str(site.home), "POEM_SITES_DIR": str(site.sites_dir)}
    code = ("from poem_registry.settings import load_settings; from poem_registry.ingest import ingest; "
            "ingest(load_settings())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    with duckdb.connect(str(site.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from raw.procedures").fetchone()[0] == 0
        assert con.execute("select count(*) from ingest.batches").fetchone()[0] == 0
        assert con.execute("select count(*) from ingest.files").fetchone()[0] == 0
    summary = ingest(site)
    assert summary.outcomes[0].rows_loaded == {"procedures": 2, "followups": 1}


def test_missing_secret_outside_demo_is_a_clear_error(site, monkeypatch):
    monkeypatch.delenv("POEM_PSEUDONYM_KEY")
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": to_csv([procedure("P1")], "procedures")})
    with pytest.raises(MissingSecretError, match="POEM_PSEUDONYM_KEY"):
        ingest(site)
    assert not site.warehouse_path.exists() or len(_raw(site, "procedures")) == 0


def test_one_broken_site_does_not_stop_the_others(poem_home):
    write_site(poem_home.sites_dir, "alpha")
    write_site(poem_home.sites_dir, "beta")
    write_delivery(poem_home.landing_dir, "alpha", "2024-04-01", {"procedures.csv": b"\xff\xfe\x00garbage"})
    write_delivery(poem_home.landing_dir, "beta", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1")], "procedures")})
    summary = ingest(poem_home)
    by_site = {o.site_id: o for o in summary.outcomes}
    assert by_site["alpha"].status == "quarantined"
    assert by_site["beta"].status == "committed"


# --- bad inputs: each names site, file, row and rule, and loses nothing -------------------------------

ROW_DEFECTS = {
    "impossible_date": (procedure("P2", procedure_date="2024-02-30"), "procedure_date"),
    "future_date": (procedure("P2", procedure_date="2099-01-01"), "procedure_date"),
    "before_2008": (procedure("P2", procedure_date="2005-06-01"), "procedure_date"),
    "unknown_code": (procedure("P2", diagnosis="achalasia_type_9"), "diagnosis"),
    "out_of_range": (procedure("P2", baseline_eckardt_dysphagia="7"), "baseline_eckardt_dysphagia"),
    "not_an_integer": (procedure("P2", procedure_minutes="ninety"), "procedure_minutes"),
    "bad_boolean": (procedure("P2", technical_success="maybe"), "technical_success"),
    "missing_required": (procedure("P2", sex=""), "sex"),
    "technical_failure_without_reason": (procedure("P2", technical_success="false"), None),
    "needle_without_capnoperitoneum": (procedure("P2", needle_decompression="true", capnoperitoneum="false"), None),
    "no_age_nor_birth_year": (procedure("P2", age_at_procedure=""), None),
}


# enough good rows that one bad row stays under the share of a batch that may be rejected row by row
GOOD_ROWS = [procedure(f"P{i}") for i in range(3, 10)]


@pytest.mark.parametrize("defect", sorted(ROW_DEFECTS))
def test_bad_procedure_row_is_quarantined_with_a_clear_message(site, defect):
    bad, column = ROW_DEFECTS[defect]
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1"), bad, *GOOD_ROWS], "procedures")})
    [outcome] = ingest(site).outcomes
    assert outcome.status == "partially_quarantined", outcome.message
    assert outcome.rows_loaded == {"procedures": 1 + len(GOOD_ROWS)}
    assert outcome.rows_quarantined == {"procedures": 1}
    assert "P2" not in set(_raw(site, "procedures")["procedure_id"])
    rejected = _rejected_rows(outcome, "procedures")
    assert list(rejected["procedure_id"]) == ["P2"]
    assert "MRNP2" not in rejected.to_csv()  # identifiers are pseudonymized in quarantine too
    report = _quarantine_report(outcome)
    assert "alpha" in report and "procedures.csv" in report and "row 2" in report
    if column:
        assert column in report
    assert "MRNP2" not in report


def test_duplicate_id_rejects_every_copy(site):
    rows = [procedure("P1"), procedure("P2"), procedure("P2", procedure_minutes="80"), *GOOD_ROWS]
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": to_csv(rows, "procedures")})
    [outcome] = ingest(site).outcomes
    assert outcome.rows_quarantined == {"procedures": 2}
    assert "P2" not in set(_raw(site, "procedures")["procedure_id"])
    assert "P2" in _quarantine_report(outcome)


def test_follow_up_dated_before_its_procedure_is_rejected(site):
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1")], "procedures"),
                    "followups.csv": to_csv([followup("F1", "P1", assessment_date="2024-01-15"),
                                             *[followup(f"F{i}", "P1") for i in range(2, 8)]], "followups")})
    [outcome] = ingest(site).outcomes
    assert outcome.rows_quarantined == {"followups": 1}
    report = _quarantine_report(outcome)
    assert "followups.csv" in report and "assessment_after_procedure" in report and "row 1" in report


def test_eckardt_total_disagreeing_with_items_is_rejected(site):
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1")], "procedures"),
                    "followups.csv": to_csv([followup("F1", "P1", eckardt_total="5"),
                                             *[followup(f"F{i}", "P1") for i in range(2, 8)]], "followups")})
    [outcome] = ingest(site).outcomes
    assert outcome.rows_quarantined == {"followups": 1}
    assert "eckardt_total_equals_items" in _quarantine_report(outcome)


def test_identifier_column_is_dropped_and_reported_as_privacy_finding(site):
    rows = [procedure("P1", patient_name="Jane Roe", phone="555-0100")]
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv(rows, "procedures", extra_columns=("patient_name", "phone"))})
    [outcome] = ingest(site).outcomes
    assert outcome.rows_loaded == {"procedures": 1}
    findings = _findings(site)
    privacy = findings[findings["category"] == "privacy"]
    assert set(privacy["column_name"]) == {"patient_name", "phone"}
    assert all("alpha" in m and "procedures.csv" in m for m in privacy["message"])
    with duckdb.connect(str(site.warehouse_path), read_only=True) as con:
        dump = " ".join(str(r) for t in ("raw.procedures", "ingest.findings")
                        for r in con.execute(f"select * from {t}").fetchall())
    assert "Jane Roe" not in dump and "555-0100" not in dump


WHOLE_BATCH_DEFECTS = {
    "missing_required_column": (
        {"procedures.csv": to_csv([procedure("P1")], "procedures").replace(b"procedure_type,", b"proc_kind,")},
        "procedure_type"),
    "not_utf8": ({"procedures.csv": "procedure_id\nPé1\n".encode("cp1252")}, "UTF-8"),
    "empty_file": ({"procedures.csv": b""}, "empty"),
    "no_procedures_file": ({"followups.csv": to_csv([followup("F1", "P1")], "followups")}, "procedures.csv"),
    "duplicate_header": ({"procedures.csv": b"procedure_id,procedure_id\nP1,P1\n"}, "duplicate column"),
}


@pytest.mark.parametrize("defect", sorted(WHOLE_BATCH_DEFECTS))
def test_structurally_broken_delivery_is_quarantined_whole(site, defect):
    files, expected = WHOLE_BATCH_DEFECTS[defect]
    write_delivery(site.landing_dir, "alpha", "2024-04-01", files)
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined"
    assert expected in outcome.message
    assert "alpha" in outcome.message
    assert len(_raw(site, "procedures")) == 0
    assert "whole delivery was rejected" in _quarantine_report(outcome)
    # the delivered files are untouched in landing, so nothing is lost
    for name, data in files.items():
        assert (site.landing_dir / "alpha" / "2024-04-01" / name).read_bytes() == data
    # re-running does not quarantine the same delivery twice
    assert ingest(site).outcomes[0].status == "duplicate"


def test_manifest_hash_mismatch_rejects_the_batch(site):
    data = to_csv([procedure("P1")], "procedures")
    manifest = {"site_id": "alpha", "format_version": 1, "files": {"procedures.csv": {"rows": 1, "sha256": "0" * 64}}}
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": data}, manifest=manifest)
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined"
    assert "SHA-256" in outcome.message and "procedures.csv" in outcome.message


def test_manifest_row_count_mismatch_rejects_the_batch(site):
    data = to_csv([procedure("P1"), procedure("P2")], "procedures")
    manifest = {"site_id": "alpha", "format_version": 1, "files": {"procedures.csv": {"rows": 3}}}
    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": data}, manifest=manifest)
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined" and "manifest.json says 3" in outcome.message


def test_manifest_for_another_site_is_rejected(site):
    manifest = {"site_id": "gamma", "format_version": 1, "files": {}}
    write_delivery(site.landing_dir, "alpha", "2024-04-01",
                   {"procedures.csv": to_csv([procedure("P1")], "procedures")}, manifest=manifest)
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined" and "gamma" in outcome.message


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_delivery_is_read(site):
    (site.landing_dir / "alpha").mkdir(parents=True)
    (site.landing_dir / "alpha" / "2024-04-01.zip").write_bytes(
        _zip_bytes({"2024-04-01/procedures.csv": to_csv([procedure("P1")], "procedures")}))
    [outcome] = ingest(site).outcomes
    assert outcome.status == "committed" and outcome.rows_loaded == {"procedures": 1}


@pytest.mark.parametrize("member", ["../evil.csv", "/etc/procedures.csv"])
def test_zip_slip_is_rejected_without_extracting(site, member):
    (site.landing_dir / "alpha").mkdir(parents=True)
    (site.landing_dir / "alpha" / "2024-04-01.zip").write_bytes(
        _zip_bytes({member: b"x", "procedures.csv": to_csv([procedure("P1")], "procedures")}))
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined" and "unsafe path" in outcome.message
    assert not (site.landing_dir / "evil.csv").exists()


def test_zip_bomb_is_rejected(site):
    (site.landing_dir / "alpha").mkdir(parents=True)
    (site.landing_dir / "alpha" / "2024-04-01.zip").write_bytes(_zip_bytes({"procedures.csv": b"0" * 20_000_000}))
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined" and "zip bomb" in outcome.message


def test_symlink_in_delivery_is_rejected(site, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the warehouse")
    folder = write_delivery(site.landing_dir, "alpha", "2024-04-01",
                            {"procedures.csv": to_csv([procedure("P1")], "procedures")})
    (folder / "followups.csv").symlink_to(secret)
    [outcome] = ingest(site).outcomes
    assert outcome.status == "quarantined" and "symbolic link" in outcome.message


def test_status_lists_open_quarantines_until_resolved(site):
    from poem_registry.status import collect_status, resolve_quarantine

    write_delivery(site.landing_dir, "alpha", "2024-04-01", {"procedures.csv": b""})
    [outcome] = ingest(site).outcomes
    st = collect_status(site)
    assert [q["batch_id"] for q in st["open_quarantines"]] == [outcome.batch_id]
    resolve_quarantine(site, outcome.batch_id, "site re-sent the extract")
    assert collect_status(site)["open_quarantines"] == []
    assert json.dumps(st, default=str)  # status is serialisable for --json
