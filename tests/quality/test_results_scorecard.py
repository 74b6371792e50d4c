"""Results as tables, and the site scorecard as queries over them (real DuckDB files)."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest

from poem_registry.quality.bench import BENCH_TODAY as TODAY
from poem_registry.quality.delivery import not_applicable_results, validate_delivery
from poem_registry.quality.results import store_results
from poem_registry.quality.scorecard import site_scorecard
from poem_registry.warehouse import ensure_schema


def _run(con, run_id, frames, parent_dates, run_at):
    """Validate and store one delivery run of site_a (entities missing from ``frames`` count as not sent)."""
    for entity in ("procedures", "followups"):
        if entity in frames:
            results = validate_delivery(entity, frames[entity], site_id="site_a", extract_id=run_id,
                                        known_parent_ids=set(parent_dates), parent_dates=parent_dates, today=TODAY)  # fmt: skip
        else:
            results = not_applicable_results(entity, "site_a", run_id)
        store_results(con, results, run_id=run_id, stage="delivery", site_id="site_a", extract_id=run_id,
                      batch_id=f"b_{run_id}", run_at=run_at)  # fmt: skip


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, clean_frames, parent_dates):
    path = tmp_path_factory.mktemp("scorecard") / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    ensure_schema(con)
    procedures = clean_frames["procedures"]
    followups = clean_frames["followups"].copy()
    followups.loc[0, "mode"] = "pigeon"
    run1 = procedures.copy()
    run1.loc[0, "diagnosis"] = "achalasia_4"  # resolved in run 2
    run1.loc[1, "procedure_minutes"] = "900"  # persists
    run2 = procedures.copy()
    run2.loc[1, "procedure_minutes"] = "900"
    run2.loc[2, "sex"] = ""  # new in run 2
    _run(con, "r1", {"procedures": run1, "followups": followups}, parent_dates, datetime(2025, 5, 1))
    _run(con, "r2", {"procedures": run2}, parent_dates, datetime(2025, 6, 1))
    con.execute(
        "insert into ingest.batches (batch_id, batch_seq, site_id, extract_id, adapter, status, started_at, "
        "finished_at, extracted_at) values ('b_r2', 2, 'site_a', 'r2', 'canonical', 'committed', "
        "'2025-06-01', '2025-06-01', '2025-05-20')"
    )
    yield con
    con.close()


def test_results_are_rows_with_every_field(warehouse):
    row = warehouse.execute(
        "select stage, suite, site_id, batch_id, column_name, category, severity, status, unexpected_count, "
        "threshold_percent, examples, expectation from quality.check_results "
        "where run_id = 'r1' and check_id = 'code_set.diagnosis'"
    ).fetchone()
    assert row[:8] == ("delivery", "delivery_procedures", "site_a", "b_r1", "diagnosis", "conformance",
                       "critical", "fail")  # fmt: skip
    assert row[8] == 1 and row[9] == 0
    assert json.loads(row[10]) == ["achalasia_4"]
    assert row[11] == "expect_column_values_to_be_in_set"
    runs = warehouse.execute(
        "select suite, checks, failed, critical_failed from quality.runs where run_id = 'r1' order by suite"
    ).fetchall()
    assert [r[0] for r in runs] == ["delivery_followups", "delivery_procedures"]
    assert runs[1][2] == 2 and runs[1][3] == 2


def test_scorecard_compares_with_the_previous_run(warehouse):
    card = site_scorecard(warehouse, "site_a", expected_cadence_days=31, as_of=datetime(2025, 6, 30))
    assert (card["latest_run_id"], card["previous_run_id"]) == ("r2", "r1")
    change = dict(zip(card["changes"]["check_id"], card["changes"]["change"], strict=True))
    assert change["required.sex"] == "new"
    assert change["range.procedure_minutes"] == "persisting"
    assert change["code_set.diagnosis"] == "resolved"
    assert change["code_set.mode"] == "not_rechecked"  # no follow-ups sent in run 2: not "resolved"
    assert card["change_counts"] == {"new": 1, "persisting": 1, "resolved": 1, "not_rechecked": 1}
    assert set(card["open_failures"]["check_id"]) == {"required.sex", "range.procedure_minutes"}
    checks = {c["check_name"]: c for c in card["checks"]}
    assert checks["required.sex"]["status"] == "fail" and checks["required.sex"]["change"] == "new"
    assert checks["required.sex"]["observed"] == "1 of 60"
    assert checks["code_set.diagnosis"]["status"] == "pass"


def test_scorecard_pass_rate_by_category_excludes_not_applicable(warehouse):
    rates = site_scorecard(warehouse, "site_a")["pass_rate_by_category"].set_index("category")
    assert set(rates.index) == {"completeness", "conformance", "plausibility"}
    conformance = rates.loc["conformance"]
    evaluated = conformance["passed"] + conformance["failed"] + conformance["errors"]
    assert conformance["pass_rate_percent"] == pytest.approx(
        round(100 * conformance["passed"] / evaluated, 1)
    )
    assert rates["not_applicable"].sum() > 0  # the follow-up suite, not sent


def test_freshness_against_the_expected_cadence(warehouse):
    card = site_scorecard(warehouse, "site_a", expected_cadence_days=31, as_of=datetime(2025, 6, 30))
    fresh = card["freshness"]
    assert fresh["last_extracted_at"] == datetime(2025, 5, 20)
    assert fresh["days_since_extract"] == 41 and fresh["late"] is True
    assert site_scorecard(warehouse, "site_a", expected_cadence_days=60,
                          as_of=datetime(2025, 6, 30))["freshness"]["late"] is False  # fmt: skip


def test_scorecard_of_a_site_without_runs(warehouse):
    card = site_scorecard(warehouse, "nobody", expected_cadence_days=31)
    assert card["latest_run_id"] is None and card["open_failures"].empty
    assert card["freshness"]["late"] is True
