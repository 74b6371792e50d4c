"""Static checks of the dbt project: parse without deprecations, docs and contract coverage."""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import replace
from pathlib import Path

import yaml
from conftest import make_settings, raw_columns

from poem_registry.build import dbt_parse_check
from poem_registry.contract import load_contract

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


def _yaml_models() -> dict[str, dict]:
    models = {}
    for path in (PROJECT / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models", []):
            models[model["name"]] = model
    return models


def test_parse_has_no_deprecations(tmp_path):
    check = dbt_parse_check(make_settings(tmp_path))
    assert check.success, check.error
    assert check.deprecations == []


def test_every_model_and_column_is_documented_with_a_grain():
    documented = _yaml_models()
    sql_models = {p.stem for p in (PROJECT / "models").rglob("*.sql")}
    assert sql_models == set(documented), "every model has YAML docs and every YAML model exists"
    for name, model in documented.items():
        assert "Grain: one row per" in model.get("description", ""), name
        assert model.get("columns"), name
        for column in model["columns"]:
            assert column.get("description", "").strip() not in ("", "TODO"), f"{name}.{column['name']}"


def test_sources_mirror_the_exchange_contract():
    sources = yaml.safe_load((PROJECT / "models/staging/_registry__sources.yml").read_text(encoding="utf-8"))
    tables = {t["name"]: [c["name"] for c in t["columns"]] for t in sources["sources"][0]["tables"]}
    assert set(tables) == set(load_contract().entities)
    for entity, columns in tables.items():
        assert columns == list(raw_columns(entity)), entity


def test_thresholds_seed_and_vars_hold_the_same_keys():
    project = yaml.safe_load((PROJECT / "dbt_project.yml").read_text(encoding="utf-8"))
    with (PROJECT / "seeds/cfg_thresholds.csv").open(encoding="utf-8", newline="") as fh:
        seed = {row["key"]: float(row["value"]) for row in csv.DictReader(fh)}
    assert {k: float(v) for k, v in project["vars"]["thresholds"].items()} == seed


def test_no_threshold_literal_in_models():
    """Clinical cut-offs come from threshold(): no comparison with a number other than 0 or 1 in SQL."""
    comparison = re.compile(r"(<=|>=|<>|<|>|=|between)\s*-?([2-9]|\d{2,})(\.\d+)?\b")
    for path in (PROJECT / "models").rglob("*.sql"):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = comparison.search(line.split("--")[0])
            assert match is None, (
                f"{path.name}:{lineno}: literal threshold {match.group(0)!r}; use threshold()"
            )


def test_parse_check_reports_a_deprecation(tmp_path):
    """The check fails on a deprecated construct (a generic test argument outside `arguments:`)."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    seeds_yml = project / "seeds" / "_seeds.yml"
    text = seeds_yml.read_text(encoding="utf-8")
    deprecated = text.replace(
        "          - accepted_values:\n              arguments:\n                values: [proportion, median, km, chart]",
        "          - accepted_values:\n              values: [proportion, median, km, chart]",
    )
    assert deprecated != text
    seeds_yml.write_text(deprecated, encoding="utf-8")
    settings = replace(make_settings(tmp_path), dbt_project_dir=project)
    check = dbt_parse_check(settings)
    assert not check.success
    assert any("MissingArgumentsPropertyInGenericTestDeprecation" in d for d in check.deprecations)
