"""Assertions on a built warehouse, shared by the DuckDB and PostgreSQL tests.

``query(sql)`` runs SQL against the built warehouse; ``{marts}`` etc. in the SQL are
replaced by the schema names of that target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import dbt_expected as expected

Query = Callable[[str], list[tuple]]


def check_marts(query: Query) -> None:
    check_technical_success_quarterly(query)
    check_measures(query)
    check_durability(query)
    check_operator_case_numbers(query)
    check_exclusions(query)


def check_technical_success_quarterly(query: Query) -> None:
    rows = query(
        "select site_id, cast(quarter_start as varchar), numerator, denominator, rate, ci_lower, ci_upper, "
        "suppressed from {marts}.mart_technical_success_quarterly"
    )
    got = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    assert got == expected.TECHNICAL_SUCCESS_QUARTERLY
    for site, quarter, num, den, rate, lo, hi, suppressed in rows:
        assert math.isclose(rate, num / den)
        assert lo <= rate <= hi, (site, quarter)
        assert suppressed, "every cell of the fixture is below 11"
    # Wilson 95% for 0/1: (0, z^2 / (1 + z^2)) = (0, 0.7934506856...)
    zero_of_one = [r for r in rows if r[2] == 0]
    assert zero_of_one and all(math.isclose(r[6], 0.7934506856227626, rel_tol=1e-9) for r in zero_of_one)


def check_measures(query: Query) -> None:
    rows = query(
        "select measure_id, denominator_variant, site_id, numerator, denominator, estimate, suppressed "
        "from {marts}.mart_measures where period_type = 'all_time'"
    )
    got = {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}
    for key, value in expected.ALL_TIME.items():
        assert got.get(key) == value, f"{key}: expected {value}, got {got.get(key)}"
    median, n = next((r[5], r[4]) for r in rows if r[0] == "P13" and r[2] == "ALL")
    assert (median, n) == expected.P13_ALL
    assert all(r[6] for r in rows if 1 <= r[4] <= 10), "denominators of 1-10 must be suppressed"
    # Year and quarter rows add up to the all-time row.
    totals = query(
        "select period_type, sum(numerator), sum(denominator) from {marts}.mart_measures "
        "where measure_id = 'P1' and site_id = 'ALL' group by period_type"
    )
    assert {t[0]: (t[1], t[2]) for t in totals} == {p: (5, 6) for p in ("quarter", "year", "all_time")}
    benchmark = query(
        "select benchmark_value, benchmark_provenance_tag from {marts}.mart_measures "
        "where measure_id = 'P1' and period_type = 'all_time' and site_id = 'ALL'"
    )
    assert benchmark == [(0.97, "[V]")]


def check_durability(query: Query) -> None:
    rows = query("select procedure_sk, event, event_type, time_days from {marts}.mart_durability_input")
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == expected.DURABILITY


def check_operator_case_numbers(query: Query) -> None:
    rows = query(
        "select operator_key, procedure_sk, operator_case_number, procedure_role, technical_success "
        "from {marts}.fct_procedure"
    )
    got = {(r[0], r[1]): r[2] for r in rows if r[2] is not None}
    assert got == expected.OPERATOR_CASES
    sks = {r[1] for r in rows}
    assert "alpha:A6" not in sks, "withdrawn patient"
    assert "beta:B2" not in sks, "extracted after as_of"
    assert next(r[4] for r in rows if r[1] == "alpha:A7") is True, "latest version of A7"


def check_exclusions(query: Query) -> None:
    rows = query("select record_sk, reason_code from {intermediate}.int_record_exclusions")
    got = set(rows)
    assert ("alpha:fA1a", "followup_within_min_days") in got
    assert ("alpha:fA3a", "eckardt_total_mismatch") in got
    assert ("beta:fB1a", "egd_within_exclusion_days") in got
    assert ("beta:fB1c", "ph_study_on_ppi_or_unknown") in got
    assert not any(sk.startswith("alpha:fA6") or sk == "alpha:A6" for sk, _ in rows)
