"""Browser tests reuse the report fixtures (the small six-site warehouse, one edition per session)."""

from __future__ import annotations

from tests.reports.report_fixtures import published, warehouse_file  # noqa: F401  (pytest fixtures)
