"""The mart gate: broken marts close it with reasons; drift warns with the values; missing tables are n/a."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from poem_registry.quality.marts import validate_marts
from poem_registry.quality.results import store_results

SITES = ["site_a", "site_b"]


def measures_frame(p1_rate_a: float = 0.95) -> pd.DataFrame:
    rows = []
    for site, denominator in (("site_a", 40), ("site_b", 60), ("ALL", 100)):
        for measure in ("P1", "P2"):
            rate = p1_rate_a if (measure == "P1" and site == "site_a") else 0.9
            numerator = round(rate * denominator)
            rows.append(
                {
                    "measure_id": measure, "measure_name": measure, "site_id": site, "period_type": "all_time",
                    "period_label": "all", "period_start": date(2015, 1, 1), "period_end": date(2025, 6, 30),
                    "denominator_variant": "standard" if measure == "P1" else "PP", "numerator": numerator,
                    "denominator": denominator, "rate": numerator / denominator, "ci_lower": numerator / denominator - 0.05,
                    "ci_upper": min(1.0, numerator / denominator + 0.04), "ci_method": "wilson", "suppressed": False,
                }
            )  # fmt: skip
    rows.append({**rows[0], "site_id": "site_a", "period_type": "quarter", "period_label": "2025-Q1",
                 "numerator": 3, "denominator": 4, "rate": 0.75, "ci_lower": 0.3, "ci_upper": 0.95,
                 "suppressed": True})  # small cell, suppressed: allowed  # fmt: skip
    return pd.DataFrame(rows)


def write_table(con, name: str, frame: pd.DataFrame) -> None:
    con.execute("create schema if not exists marts")
    con.register("_frame", frame)
    con.execute(f"create or replace table marts.{name} as select * from _frame")
    con.unregister("_frame")


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def test_clean_marts_open_the_gate_and_missing_tables_are_not_applicable(con):
    write_table(con, "mart_measures", measures_frame())
    result = validate_marts(con, run_id="m1", expected_sites=SITES)
    assert result.gate.publish_allowed, result.gate.reasons
    status = {(c.suite, c.check_id): c.status for c in result.checks}
    assert status[("mart_measures", "rate_in_unit_interval")] == "pass"
    assert status[("mart_measures", "small_cell.numerator")] == "pass"
    quarterly = [c for c in result.checks if c.suite == "mart_technical_success_quarterly"]
    assert quarterly and {c.status for c in quarterly} == {"not_applicable"}
    assert "does not exist yet" in quarterly[0].message


def test_broken_mart_blocks_publishing_with_reasons(con):
    frame = measures_frame()
    frame.loc[0, "rate"] = 1.2  # rate > 1 (and above its interval)
    frame.loc[1, ["numerator", "denominator"]] = [50, 40]  # numerator > denominator
    frame.loc[4, ["numerator", "denominator", "rate"]] = [5, 60, 5 / 60]  # count 5 (ALL row), not suppressed
    frame.loc[5, "measure_id"] = "PX"  # no definition in measure_catalog
    frame = frame[frame["site_id"] != "site_b"]  # a site that delivered data is missing
    write_table(con, "mart_measures", frame)
    result = validate_marts(con, run_id="m1", expected_sites=SITES)
    assert not result.gate.publish_allowed
    reasons = " | ".join(result.gate.reasons)
    for check_id in ("rate_in_unit_interval", "numerator_not_above_denominator", "rate_not_above_ci_upper",
                     "small_cell.numerator", "measure_has_definition", "expected_sites_present"):  # fmt: skip
        assert f"mart_measures.{check_id} fail" in reasons
    assert "site_b" in reasons
    small = next(
        c for c in result.checks if c.check_id == "small_cell.numerator" and c.suite == "mart_measures"
    )
    assert small.unexpected_count == 1 and "numerator=5" in small.examples[0]


def test_quarterly_mart_is_checked_when_it_exists(con):
    write_table(con, "mart_measures", measures_frame())
    quarterly = pd.DataFrame({"site_id": ["site_a", "site_b", "ALL"], "quarter_start": [date(2025, 1, 1)] * 3,
                              "numerator": [12, 7, 19], "denominator": [12, 20, 32],
                              "rate": [1.0, 0.35, 19 / 32], "ci_lower": [0.75, 0.18, 0.42],
                              "ci_upper": [1.0, 0.57, 0.75], "suppressed": [False, False, False]})  # fmt: skip
    write_table(con, "mart_technical_success_quarterly", quarterly)
    result = validate_marts(con, run_id="m1", expected_sites=SITES)
    assert not result.gate.publish_allowed
    assert any("mart_technical_success_quarterly.small_cell.numerator" in r for r in result.gate.reasons)


def test_drift_far_outside_history_is_a_warning_with_values(con):
    for i, rate in enumerate([0.9, 0.95, 0.85, 0.925]):
        write_table(con, "mart_measures", measures_frame(rate))
        result = validate_marts(con, run_id=f"h{i}", expected_sites=SITES)
        store_results(con, result, run_id=f"h{i}", stage="mart", run_at=pd.Timestamp(2025, 1, 1 + i))
        assert not [c for c in result.checks if c.check_id.startswith("drift") and c.status == "fail"]
    write_table(con, "mart_measures", measures_frame(0.5))
    result = validate_marts(con, run_id="now", expected_sites=SITES)
    assert result.gate.publish_allowed  # drift warns, it does not block
    drift = next(c for c in result.checks if c.check_id == "drift.measure_rate.z_score")
    assert drift.status == "fail" and drift.severity == "warning"
    assert "site site_a P1: 0.5 vs history mean 0.9062 (sd 0.0427, n=4, previous 0.925)" in drift.examples[0]
    assert any("drift.measure_rate.z_score" in w for w in result.gate.warnings_by_measure["P1"])
    stored = con.execute("select count(distinct run_id) from quality.mart_metrics").fetchone()[0]
    assert stored == 5  # validate_marts keeps this run's metrics as history for the next one
