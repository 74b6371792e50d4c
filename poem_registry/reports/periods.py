"""Reporting periods of an edition: ``2026-Q3``, ``2026-09`` (a month) or ``2026`` (a year)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.IGNORECASE)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True)
class Period:
    """A reporting period: its label (used in edition ids), kind and first/last day."""

    label: str
    kind: str  # quarter | month | year
    start: date
    end: date

    def describe(self) -> str:
        return f"{self.label} ({self.start:%d %b %Y} to {self.end:%d %b %Y})"


def _month_end(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def quarter_of(day: date) -> Period:
    q = (day.month - 1) // 3 + 1
    start = date(day.year, 3 * q - 2, 1)
    return Period(f"{day.year}-Q{q}", "quarter", start, _month_end(day.year, 3 * q))


def parse_period(text: str | None, as_of: date) -> Period:
    """``None`` means the quarter containing ``as_of``; anything else must match a known form."""
    if text is None or not str(text).strip():
        return quarter_of(as_of)
    text = str(text).strip()
    if m := _QUARTER.match(text):
        year, q = int(m.group(1)), int(m.group(2))
        return Period(f"{year}-Q{q}", "quarter", date(year, 3 * q - 2, 1), _month_end(year, 3 * q))
    if m := _MONTH.match(text):
        year, month = int(m.group(1)), int(m.group(2))
        return Period(f"{year}-{month:02d}", "month", date(year, month, 1), _month_end(year, month))
    if m := _YEAR.match(text):
        year = int(m.group(1))
        return Period(str(year), "year", date(year, 1, 1), date(year, 12, 31))
    raise ValueError(
        f"period {text!r} is not understood: use a quarter (2026-Q3), a month (2026-09) or a year (2026)"
    )
