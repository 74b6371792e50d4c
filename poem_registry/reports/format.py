"""Number formatting shared by pages, tables and e-mails."""

from __future__ import annotations

import math

import pandas as pd

from poem_registry.reports.suppression import HIDDEN


def missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def pct(value, digits: int = 1) -> str:
    if missing(value):
        return "-"
    return f"{100 * float(value):.{digits}f}%"


def interval(low, high, digits: int = 1) -> str:
    if missing(low) or missing(high):
        return "-"
    return f"{100 * float(low):.{digits}f}–{100 * float(high):.{digits}f}%"


def count(value) -> str:
    if missing(value):
        return "-"
    return f"{int(value):,}"


def fraction(numerator, denominator, hidden: bool = False) -> str:
    if hidden:
        return f"{HIDDEN}/{HIDDEN}"
    if missing(numerator) and missing(denominator):
        return "-"
    return f"{count(numerator)}/{count(denominator)}"


def rate_with_ci(row: dict | pd.Series, hidden: bool = False) -> str:
    """``93.4% (90.1–95.7%)`` or ``*`` when suppressed."""
    if hidden:
        return HIDDEN
    if missing(row.get("rate")):
        return "-"
    return f"{pct(row.get('rate'))} ({interval(row.get('ci_low'), row.get('ci_high'))})"


def number(value, digits: int = 2) -> str:
    if missing(value):
        return "-"
    v = float(value)
    return f"{v:.{digits}f}" if not math.isinf(v) else "inf"


def delta_points(new, old) -> str:
    """Change of a rate in percentage points, ``+1.2 pp``."""
    if missing(new) or missing(old):
        return "-"
    return f"{100 * (float(new) - float(old)):+.1f} pp"
