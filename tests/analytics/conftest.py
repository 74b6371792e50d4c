"""Session fixtures for the statistics tests: the hand-built warehouse and one compute_all run."""

from __future__ import annotations

import duckdb
import pytest
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

from poem_registry.settings import load_settings


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory) -> Fixture:
    home = tmp_path_factory.mktemp("analytics_home")
    settings = load_settings(home=home, warehouse_path=home / "warehouse.duckdb", warehouse_lock_timeout=2)
    procs = build_procedures()
    fx = Fixture(
        settings,
        procs,
        build_adverse_events(procs),
        build_windows(procs),
        build_durability(procs),
        build_measures(),
        build_members(procs),
    )
    write_warehouse(settings.warehouse_path, fx)
    return fx


@pytest.fixture(scope="session")
def computed(fixture_data):
    """compute_all run once; returns (summary, {table: frame})."""
    from poem_registry.analytics import TABLE_COLUMNS, compute_all

    summary = compute_all(fixture_data.settings, as_of=AS_OF)
    con = duckdb.connect(str(fixture_data.settings.warehouse_path), read_only=True)
    tables = {name: con.execute(f"select * from analytics.{name}").df() for name in TABLE_COLUMNS}
    con.close()
    return summary, tables
