"""CSV files we write for people to open in spreadsheets.

A text cell that starts with ``= + - @`` (or a tab/CR) is a formula to Excel and
LibreOffice; a site could plant ``=cmd|...`` in a code or id. Such cells are
prefixed with an apostrophe (OWASP CSV-injection guidance). Numbers are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralise(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    safe = frame.copy()
    for col in safe.columns:
        if pd.api.types.is_object_dtype(safe[col]) or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = safe[col].map(neutralise, na_action="ignore")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    safe.to_csv(path, index=False, lineterminator="\n")
