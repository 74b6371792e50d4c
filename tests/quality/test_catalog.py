"""The check catalog (expectations/*.yml) loads, is generated from the contract, and rejects typos."""

from __future__ import annotations

import pytest

from poem_registry.contract import load_code_sets, load_contract
from poem_registry.quality.catalog import CatalogError, load_all, load_suite
from poem_registry.quality.rules import ROW_RULES, check_rules_match_contract


def test_every_suite_loads_and_check_ids_are_unique():
    suites = load_all()
    assert {f"delivery_{e}" for e in load_contract().entities} <= set(suites)
    assert {"mart_measures", "mart_technical_success_quarterly"} <= set(suites)
    for suite in suites.values():
        ids = [c.check_id for c in suite.checks]
        assert len(ids) == len(set(ids))
        for c in suite.checks:
            assert c.threshold_percent == 0 or c.note, (
                f"{suite.name}.{c.check_id} has a threshold without a note"
            )


def test_derived_checks_follow_the_contract():
    suite = load_all()["delivery_procedures"]
    entity = load_contract().entities["procedures"]
    codes = load_code_sets()
    for col in entity.columns:
        if col.code_set:
            assert suite.check(f"code_set.{col.name}").kwargs["value_set"] == sorted(codes[col.code_set])
        if col.required is True:
            assert suite.check(f"required.{col.name}").severity == "critical"
    minutes = suite.check("range.procedure_minutes").kwargs
    assert (minutes["min_value"], minutes["max_value"]) == (5, 600)
    for rule in entity.row_rules:  # severity comes from exchange_v1.yml row_rules
        assert suite.check(f"rule.{rule.name}").severity == rule.severity


def test_every_contract_rule_is_implemented_once():
    check_rules_match_contract()
    named = {r.name for e in load_contract().entities.values() for r in e.row_rules}
    assert named == set(ROW_RULES)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (
            "checks:\n  - {check_id: x, expectation: expect_column_values_to_not_be_null, column: sex,"
            " category: completeness, severity: warning, threshold_percent: 10}",
            "needs a note",
        ),
        (
            "checks:\n  - {check_id: x, expectation: expect_column_values_to_not_be_null, column: nosuch,"
            " category: completeness, severity: warning}",
            "unknown column",
        ),
        (
            "checks:\n  - {check_id: x, expectation: expect_magic, column: sex,"
            " category: completeness, severity: warning}",
            "is not one of",
        ),
        (
            "checks:\n  - {check_id: x, expectation: expect_column_values_to_not_be_null, column: sex,"
            " category: completness, severity: warning}",
            "category must be",
        ),
        ("derived:\n  - {from: ranges, category: plausibility, severity: critical}", "from must be"),
        ("overrides:\n  nosuch: {severity: info}", "no such check"),
        ("colums: []", "unknown keys"),
    ],
)
def test_loader_rejects_malformed_suites(tmp_path, bad, error):
    path = tmp_path / "delivery_procedures.yml"
    path.write_text(
        f"suite: delivery_procedures\nstage: delivery\nentity: procedures\n{bad}\n", encoding="utf-8"
    )
    with pytest.raises(CatalogError, match=error):
        load_suite(path)
