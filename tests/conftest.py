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
