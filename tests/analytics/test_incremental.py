"""Incremental statistics: a second run after a change at one site equals a full recompute."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta

import duckdb
import pandas as pd
from analytics_fixture import (
    AS_OF,
    Fixture,
    build_adverse_events,
    build_durability,
    build_measures,
    build_members,
    build_procedures,
    build_windows,
    write_warehouse,
)

from poem_registry.analytics import SCHEMA, TABLE_COLUMNS, compute_all
from poem_registry.analytics.incremental import FINGERPRINT_TABLE
from poem_registry.settings import load_settings

ALL_TABLES = [*TABLE_COLUMNS, FINGERPRINT_TABLE]


def _fixture(home, procs: pd.DataFrame) -> Fixture:
    settings = load_settings(home=home, warehouse_path=home / "warehouse.duckdb", warehouse_lock_timeout=2)
    return Fixture(
        settings,
        procs,
        build_adverse_events(procs),
        build_windows(procs),
        build_durability(procs),
        build_measures(),
        build_members(procs),
    )


def _tables(path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            name: con.execute(f"select * exclude (computed_at) from {SCHEMA}.{name}").df()
            for name in ALL_TABLES
        }
    finally:
        con.close()


def _replace_marts(path, fx: Fixture, names: list[str]) -> None:
    con = duckdb.connect(str(path))
    try:
        for name in names:
            df = {
                "fct_procedure": fx.procedures,
                "fct_adverse_event": fx.adverse_events,
                "mart_outcome_windows": fx.windows,
                "mart_durability_input": fx.durability,
            }[name]
            con.register("_df", df)
            con.execute(f"create or replace table marts.{name} as select * from _df")
            con.unregister("_df")
    finally:
        con.close()


def _run(settings, full: bool = False) -> list[str]:
    messages: list[str] = []
    compute_all(settings, as_of=AS_OF, progress=messages.append, full=full)
    return [m for m in messages if "units reused" in m]


def _assert_same_as_full_refresh(settings, tmp_path) -> dict[str, pd.DataFrame]:
    incremental = _tables(settings.warehouse_path)
    full_path = tmp_path / "full.duckdb"
    shutil.copy(settings.warehouse_path, full_path)
    _run(replace(settings, warehouse_path=full_path), full=True)
    full = _tables(full_path)
    for name in ALL_TABLES:
        pd.testing.assert_frame_equal(incremental[name], full[name], obj=name)
    return incremental


def _new_cases_at_s3(procs: pd.DataFrame, count: int) -> pd.DataFrame:
    """``count`` more op-delta cases at S3 (the 'delivery'), with the fixture's outcome rules."""
    last = procs[procs["operator_key"] == "op-delta"].sort_values("operator_case_number").iloc[-1]
    rows = []
    for j in range(1, count + 1):
        idx = 100 + j
        rows.append(
            {
                **last.to_dict(),
                "procedure_sk": f"p{idx:03d}",
                "operator_case_number": int(last["operator_case_number"]) + j,
                "procedure_date": last["procedure_date"] + timedelta(days=30 * j),
                "procedure_minutes": 120 + j,
                "technical_success": idx % 3 != 0,
                "age_at_procedure_capped": 40 + j,
            }
        )
    assert not set(procs["procedure_sk"]) & {r["procedure_sk"] for r in rows}
    return pd.concat([procs, pd.DataFrame(rows)], ignore_index=True)


def test_incremental_equals_full_after_new_cases_at_one_site(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fx = _fixture(home, build_procedures())
    write_warehouse(fx.settings.warehouse_path, fx)
    first = _run(fx.settings)
    assert "0 reused" in first[0]  # nothing stored yet

    unchanged = _run(fx.settings)  # same marts: every unit reused, same tables
    assert "learning_curve 4 reused, 0 computed" in unchanged[0]
    assert "durability 4 reused, 0 computed" in unchanged[0]  # S1-S3 and ALL
    _assert_same_as_full_refresh(fx.settings, tmp_path)

    # delivery at S3 only: new procedures, their AEs, windows and durability rows
    fx2 = _fixture(home, _new_cases_at_s3(fx.procedures, 3))
    _replace_marts(
        fx.settings.warehouse_path,
        fx2,
        ["fct_procedure", "fct_adverse_event", "mart_outcome_windows", "mart_durability_input"],
    )
    after = _run(fx.settings)
    # durability: S1 and S2 reused; S3 and ALL recomputed
    assert "durability 2 reused, 2 computed" in after[0]
    tables = _assert_same_as_full_refresh(fx.settings, tmp_path)
    assert (tables["learning_curve"]["operator_key"] == "op-delta").sum() == 12 + 3


def test_incremental_reuses_learning_curves_when_only_durability_changes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fx = _fixture(home, build_procedures())
    write_warehouse(fx.settings.warehouse_path, fx)
    _run(fx.settings)
    durability = fx.durability.copy()
    at_s2 = durability["site_id"] == "S2"
    durability.loc[at_s2, "time_days"] = durability.loc[at_s2, "time_days"] + 7
    _replace_marts(fx.settings.warehouse_path, replace(fx, durability=durability), ["mart_durability_input"])
    after = _run(fx.settings)
    assert "learning_curve 4 reused, 0 computed" in after[0]
    assert "durability 2 reused, 2 computed" in after[0]  # S2 and ALL
    _assert_same_as_full_refresh(fx.settings, tmp_path)


def test_missing_stored_rows_are_recomputed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fx = _fixture(home, build_procedures())
    write_warehouse(fx.settings.warehouse_path, fx)
    _run(fx.settings)
    con = duckdb.connect(str(fx.settings.warehouse_path))
    con.execute(f"delete from {SCHEMA}.km_curve where site_id = 'S1' and time_days > 500")
    con.execute(f"delete from {SCHEMA}.learning_curve where operator_key = 'op-alpha' and case_number = 3")
    con.close()
    after = _run(fx.settings)
    assert "learning_curve 3 reused, 1 computed" in after[0]
    assert "durability 3 reused, 1 computed" in after[0]
    _assert_same_as_full_refresh(fx.settings, tmp_path)


def test_full_refresh_recomputes_every_unit(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fx = _fixture(home, build_procedures())
    write_warehouse(fx.settings.warehouse_path, fx)
    _run(fx.settings)
    messages = _run(fx.settings, full=True)
    assert "learning_curve 0 reused, 4 computed" in messages[0]
    assert "durability 0 reused, 4 computed" in messages[0]
