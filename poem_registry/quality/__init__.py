"""Data quality: Great Expectations gates on deliveries (before load) and marts (before publishing).

Public API (Great Expectations is imported lazily, only when a validation runs):

* :func:`poem_registry.quality.delivery.validate_delivery` and
  :func:`~poem_registry.quality.delivery.not_applicable_results`: one entity file of a batch.
* :func:`poem_registry.quality.marts.validate_marts`: the publishing gate.
* :func:`poem_registry.quality.results.store_results`: results as rows in ``quality.*``.
* :func:`poem_registry.quality.scorecard.site_scorecard`: the site scorecard, as queries.
* :func:`poem_registry.quality.docs.build_data_docs`: GX Data Docs into a folder.

The check catalog is data: ``expectations/*.yml`` (format in :mod:`poem_registry.quality.catalog`),
row rules in :mod:`poem_registry.quality.rules`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "validate_delivery": "delivery",
    "not_applicable_results": "delivery",
    "DeliveryValidation": "delivery",
    "validate_marts": "marts",
    "MartValidation": "marts",
    "Gate": "marts",
    "CheckResult": "results",
    "store_results": "results",
    "site_scorecard": "scorecard",
    "build_data_docs": "docs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public API on first use, so importing the package stays light."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
