"""GX Data Docs are built into a folder from suites and validation results."""

from __future__ import annotations

from poem_registry.quality.bench import BENCH_TODAY as TODAY
from poem_registry.quality.catalog import load_all
from poem_registry.quality.delivery import validate_delivery
from poem_registry.quality.docs import build_data_docs, cdn_references


def test_data_docs_for_suites_and_latest_results(tmp_path, clean_frames, parent_dates):
    followups = clean_frames["followups"].copy()
    followups.loc[0, "eckardt_total"] = "11"
    result = validate_delivery("followups", followups, site_id="site_a", extract_id="x1",
                               known_parent_ids=set(parent_dates), parent_dates=parent_dates, today=TODAY)  # fmt: skip
    withdrawals = clean_frames["withdrawals"].copy()
    withdrawals.loc[0:1, "patient_id"] = "SECRET-MRN-4711"
    withdrawn = validate_delivery("withdrawals", withdrawals, site_id="site_a", extract_id="x1", today=TODAY)
    suites = [s for s in load_all().values() if s.stage == "delivery"]
    index = build_data_docs([*suites, result, withdrawn], tmp_path / "quality_docs")
    assert index.exists() and index.name == "index.html"
    site = index.parent
    expectations = {p.stem for p in (site / "expectations").rglob("*.html")}
    assert {"delivery_procedures", "delivery_followups"} <= expectations
    pages = {p.parts[-4]: p.read_text(encoding="utf-8") for p in (site / "validations").rglob("*.html")}
    assert set(pages) == {"delivery_followups", "delivery_withdrawals"}
    assert "eckardt_total_equals_items" in pages["delivery_followups"]
    assert "patient_id" in pages["delivery_withdrawals"]
    assert "SECRET-MRN" not in " ".join(pages.values())  # identifiers never reach the documentation
    # GX templates load CSS/JS from CDNs: the tags are stripped (offline editions) and listed in the note
    assert cdn_references(site) == []
    assert "https://" in (site / "OFFLINE-NOTE.txt").read_text(encoding="utf-8")


def test_data_docs_from_results_stored_in_the_warehouse(tmp_path, clean_frames, parent_dates):
    import duckdb

    from poem_registry.quality.results import store_results

    procedures = clean_frames["procedures"].copy()
    procedures.loc[0, "diagnosis"] = "achalasia_4"
    result = validate_delivery("procedures", procedures, site_id="site_a", extract_id="x1",
                               known_parent_ids=set(parent_dates), parent_dates=parent_dates, today=TODAY)  # fmt: skip
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    store_results(con, result, run_id="r1", stage="delivery", site_id="site_a")
    index = build_data_docs(out_dir=tmp_path / "docs", con=con)
    pages = list((index.parent / "validations" / "delivery_procedures").rglob("*.html"))
    assert len(pages) == 1
    assert "achalasia_4" in pages[0].read_text(encoding="utf-8")
