"""Shared fixtures: an isolated POEM_HOME per test, and the PostgreSQL probe."""

from __future__ import annotations

import socket

import pytest

from poem_registry.settings import load_settings

TEST_SECRET = "test-secret-" + "x" * 40


def postgres_available(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


requires_postgres = pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable on 127.0.0.1:5432 (start it to run this test)"
)


@pytest.fixture
def poem_home(tmp_path, monkeypatch):
    """A fresh runtime folder with its own sites dir; the secret comes from the environment."""
    home = tmp_path / "home"
    sites = tmp_path / "sites"
    sites.mkdir()
    monkeypatch.setenv("POEM_PSEUDONYM_KEY", TEST_SECRET)
    for var in ("POEM_HOME", "POEM_SITES_DIR", "POEM_WAREHOUSE", "POEM_LANDING", "POEM_PUBLISHED",
                "POEM_QUARANTINE", "POEM_DEMO"):
        monkeypatch.delenv(var, raising=False)
    return load_settings(home=home, sites_dir=sites, warehouse_lock_timeout=2)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Make ``pytest.mark.xdist_group`` work under ``--dist loadgroup``.

    pytest-xdist 3.8 marks a group by appending ``@<group>`` to ``item._nodeid``, but pytest 9.2 reads node
    ids from ``item._id``, so the mark has no effect and a group's expensive session fixture (a dbt build, a
    published edition, the end-to-end reliability run) is built once per worker. Apply the suffix here.
    """
    if not getattr(config.option, "loadgroup", False):  # set on the workers, where collection happens
        return
    from _pytest.nodeid import NodeId

    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker and "@" not in item.nodeid:
            group = marker.args[0] if marker.args else marker.kwargs.get("name", "default")
            item._id = NodeId.parse(f"{item.nodeid}@{group}")
