"""Fixtures for the report tests: see report_fixtures.py (shared with tests/browser)."""

from tests.reports.report_fixtures import (  # noqa: F401  (pytest fixtures)
    published,
    settings,
    small_settings,
    small_warehouse_file,
    warehouse_file,
)
