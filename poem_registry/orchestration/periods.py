"""Which editions a publishing run produces, from the run's date or the operator's choice.

An edition period is a month (``2025-03``), a quarter (``2025-Q1``) or a year (``2025``),
the forms :func:`poem_registry.reports.periods.parse_period` reads. A scheduled run
publishes the last complete month and, when that month closes a quarter, the quarter too.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

#: JSON-schema pattern of the ``period`` param of ``poem_publish`` (and the check here).
PERIOD_PATTERN = r"^[0-9]{4}(-(0[1-9]|1[0-2]|Q[1-4]))?$"
_PERIOD_RE = re.compile(PERIOD_PATTERN)


def validate_period(period: str) -> str:
    if not _PERIOD_RE.match(period):
        raise ValueError(f"period {period!r} is not a month (YYYY-MM), a quarter (YYYY-Qn) or a year (YYYY)")
    return period


def periods_due(run_date: date) -> list[str]:
    """The editions due on ``run_date``: the previous month, plus its quarter if the month closes one.

    >>> periods_due(date(2025, 4, 2))
    ['2025-03', '2025-Q1']
    >>> periods_due(date(2025, 5, 2))
    ['2025-04']
    """
    last_month = run_date.replace(day=1) - timedelta(days=1)
    due = [f"{last_month.year}-{last_month.month:02d}"]
    if last_month.month % 3 == 0:
        due.append(f"{last_month.year}-Q{last_month.month // 3}")
    return due


def period_end(period: str) -> date:
    """Last day of a period: the reporting date (as of) of its edition.

    >>> period_end("2025-02"), period_end("2024-Q4"), period_end("2023")
    (datetime.date(2025, 2, 28), datetime.date(2024, 12, 31), datetime.date(2023, 12, 31))
    """
    year, _, part = validate_period(period).partition("-")
    last_month = 12 if not part else int(part[1]) * 3 if part.startswith("Q") else int(part)
    first_of_next = date(int(year) + last_month // 12, last_month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)
