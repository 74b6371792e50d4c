"""Delivery adapters: one module per delivery kind, each with ``discover`` and ``read``."""

from __future__ import annotations

import importlib
from types import ModuleType

ADAPTER_MODULES = {
    "canonical": "poem_registry.adapters.canonical",
    "csv_layout": "poem_registry.adapters.csv_layout",
    "xlsx": "poem_registry.adapters.xlsx",
    "redcap": "poem_registry.adapters.redcap_site",
    "sql": "poem_registry.adapters.sqldb",
}


def get_adapter(kind: str) -> ModuleType:
    try:
        return importlib.import_module(ADAPTER_MODULES[kind])
    except KeyError:
        raise ValueError(f"no adapter {kind!r}; known: {', '.join(ADAPTER_MODULES)}") from None
