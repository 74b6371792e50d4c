"""The same project, raw rows and expected numbers on PostgreSQL (--target postgres, unique schema)."""

from __future__ import annotations

import dbt_checks
import pytest
from conftest import postgres_connect

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_postgres_build_matches_hand_computed_numbers(postgres_build):
    prefix, result = postgres_build
    assert any(n.resource_type == "unit_test" for n in result.nodes)
    schemas = {layer: f"{prefix}_{layer}" for layer in ("marts", "intermediate", "staging")}

    def query(sql: str) -> list[tuple]:
        con = postgres_connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql.format(**schemas))
                return [
                    tuple(float(v) if type(v).__name__ == "Decimal" else v for v in row)
                    for row in cur.fetchall()
                ]
        finally:
            con.close()

    dbt_checks.check_marts(query)
