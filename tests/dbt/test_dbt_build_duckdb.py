"""dbt build on DuckDB with hand-written raw rows: marts, incremental == full refresh, run results."""

from __future__ import annotations

import json
import shutil

import dbt_checks
import duckdb
import pytest
from conftest import AS_OF, assert_dbt_ok, make_settings

from poem_registry.build import run_dbt, store_run_results

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dbt")]

SCHEMAS = {"marts": "marts", "intermediate": "intermediate", "staging": "staging"}
BASE_MODELS = [
    "base_registry__procedures",
    "base_registry__followups",
    "base_registry__adverse_events",
    "base_registry__reinterventions",
]


def duckdb_query(path):
    def query(sql: str) -> list[tuple]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute(sql.format(**SCHEMAS)).fetchall()
        finally:
            con.close()

    return query


def test_build_ran_unit_tests_and_data_tests(duckdb_build):
    _, result = duckdb_build
    kinds = {n.resource_type for n in result.nodes}
    assert {"model", "seed", "test", "unit_test"} <= kinds
    unit_tests = [n for n in result.nodes if n.resource_type == "unit_test"]
    assert len(unit_tests) >= 10 and all(n.status == "pass" for n in unit_tests)
    assert result.summary_line().startswith(f"{len(result.nodes)} nodes: ")
    assert "mart_technical_success_quarterly" in {n.name for n in result.nodes}
    assert result.run_results_path is not None and result.run_results_path.exists()


def test_marts_match_hand_computed_numbers(duckdb_build):
    settings, _ = duckdb_build
    dbt_checks.check_marts(duckdb_query(settings.warehouse_path))


def test_incremental_run_equals_full_refresh(duckdb_build, duckdb_full_refresh_copy):
    settings, _ = duckdb_build
    con = duckdb.connect(str(duckdb_full_refresh_copy.warehouse_path))
    try:
        con.execute(f"attach '{settings.warehouse_path}' as incremental (read_only)")
        for model in BASE_MODELS:
            rows_full = con.execute(f"select count(*) from staging.{model}").fetchone()[0]
            rows_incr = con.execute(f"select count(*) from incremental.staging.{model}").fetchone()[0]
            assert rows_full == rows_incr, model
            for a, b in (("staging", "incremental.staging"), ("incremental.staging", "staging")):
                diff = con.execute(
                    f"select count(*) from (select * from {a}.{model} except select * from {b}.{model})"
                )
                assert diff.fetchone()[0] == 0, f"{model}: incremental and full refresh differ"
    finally:
        con.close()


def test_earlier_as_of_is_refused_incrementally(duckdb_build, tmp_path):
    settings, _ = duckdb_build
    copy = make_settings(tmp_path)
    shutil.copy(settings.warehouse_path, copy.warehouse_path)
    earlier = AS_OF.replace(year=AS_OF.year - 1)
    refused = run_dbt(
        ["run", "--select", "base_registry__procedures"], copy, as_of=earlier, full_refresh=False
    )
    assert not refused.success
    assert "--full-refresh" in " ".join(n.message or "" for n in refused.nodes)
    rebuilt = run_dbt(["run", "--select", "base_registry__procedures"], copy, as_of=earlier)
    assert_dbt_ok(rebuilt)
    assert "--full-refresh" in rebuilt.args, "a past as_of implies a full refresh"
    con = duckdb.connect(str(copy.warehouse_path), read_only=True)
    try:
        rows = con.execute(
            "select procedure_id, technical_success from staging.base_registry__procedures"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("A7", True)], "only A7's version extracted 2024-06-01 existed a year before as_of"


def test_store_run_results(duckdb_build, tmp_path):
    _, result = duckdb_build
    con = duckdb.connect(str(tmp_path / "results.duckdb"))
    try:
        assert store_run_results(con, result, run_id="run-1") == len(result.nodes)
        store_run_results(con, result, run_id="run-2")
        rows = con.execute(
            "select run_id, count(*), count(distinct node_id), sum(case when status in ('success', 'pass') "
            "then 1 else 0 end) from ops.dbt_run_results group by run_id order by run_id"
        ).fetchall()
    finally:
        con.close()
    n = len(result.nodes)
    assert rows == [("run-1", n, n, n), ("run-2", n, n, n)]
    model = next(x for x in result.nodes if x.node_id == "model.poem_registry.fct_procedure")
    assert model.status == "success" and model.execution_time > 0
    # dbt-duckdb reports no row counts (rows_affected stays None); dbt-postgres does.


def test_parse_once_then_build_and_docs_reuse_the_manifest(duckdb_build, tmp_path):
    """run_build's sequence: one parse, then build and `docs generate --no-compile` on that manifest."""
    settings, _ = duckdb_build
    copy = make_settings(tmp_path)
    shutil.copy(settings.warehouse_path, copy.warehouse_path)
    target = tmp_path / "target"
    parsed = run_dbt(["parse", "--no-write-json"], copy, as_of=AS_OF, target_path=target)
    assert_dbt_ok(parsed)
    assert parsed.manifest is not None and "model.poem_registry.fct_procedure" in parsed.manifest.nodes
    built = run_dbt(["build", "--select", "fct_procedure"], copy, as_of=AS_OF, full_refresh=False,
                    target_path=target, manifest=parsed.manifest)
    assert_dbt_ok(built)
    assert {n.name for n in built.nodes if n.resource_type == "model"} == {"fct_procedure"}
    docs = run_dbt(["docs", "generate", "--static", "--no-compile"], copy, as_of=AS_OF, target_path=target,
                   manifest=parsed.manifest)
    assert_dbt_ok(docs)
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["nodes"]["model.poem_registry.fct_procedure"]["compiled_code"], "docs show compiled SQL"
    catalog = json.loads((target / "catalog.json").read_text(encoding="utf-8"))
    assert "model.poem_registry.mart_measures" in catalog["nodes"]
    assert (target / "static_index.html").stat().st_size > 0
