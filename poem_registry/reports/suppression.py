"""Small-cell suppression for every cross-site output (clinical-spec §8.5).

Rules implemented here, once, for every page and file:

1. *Primary suppression*: a count from 1 to ``min_cell - 1`` (default 1-10) is
   hidden; zero may be shown.
2. *Complementary suppression*: a hidden count must not be recoverable from a
   displayed total. Each "line" (cells that add up to a displayed total) must hide
   either nothing or at least two of its entries (total included), and when its
   total is displayed the hidden cells together must not add up to 1..``min_cell-1``
   (otherwise each would be known to be small). The next-smallest non-zero cell is
   hidden until that holds; the total itself is hidden as a last resort.
3. A rate, its interval and its denominator are hidden together with a hidden
   numerator (rate x denominator would give the numerator back), and vice versa.

``locked`` cells are values the reader may see (their own site's counts in their
own report): they are never hidden, and they count as known when checking lines.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Counts from 1 to SMALL_CELL_MIN - 1 are small (``cfg_thresholds.small_cell_min``).
SMALL_CELL_MIN = 11

#: How a hidden count or rate is displayed. One marker for primary and complementary
#: suppression: "<11" on a complementary cell would be untrue and would tell which is which.
HIDDEN = "*"


def is_small(count: float | int | None, min_cell: int = SMALL_CELL_MIN) -> bool:
    """Whether ``count`` must not be shown (1 <= count < min_cell; zero and missing are fine)."""
    if count is None or (isinstance(count, float) and math.isnan(count)) or pd.isna(count):
        return False
    return 1 <= float(count) < min_cell


@dataclass
class TableSuppression:
    """Which entries of a counts table (and its margins) are hidden.

    ``cells`` has the shape of the input; ``row_totals``/``col_totals`` are indexed
    like its rows/columns; ``grand_total`` is the bottom-right margin.
    """

    cells: pd.DataFrame
    row_totals: pd.Series
    col_totals: pd.Series
    grand_total: bool

    @property
    def any_hidden(self) -> bool:
        return bool(
            self.cells.to_numpy().any() or self.row_totals.any() or self.col_totals.any() or self.grand_total
        )


def _line_safe(
    values: Sequence[float], hidden: Sequence[bool], total_value: float, total_hidden: bool, min_cell: int
) -> bool:
    n_hidden = sum(hidden) + int(total_hidden)
    if n_hidden == 0:
        return True
    if n_hidden == 1:
        return False
    if total_hidden:
        return True
    hidden_sum = sum(v for v, h in zip(values, hidden, strict=True) if h and not math.isnan(v))
    return not (1 <= hidden_sum < min_cell)


def _suppress_grid(
    values: np.ndarray, lock: np.ndarray, row_totals: bool, col_totals: bool, min_cell: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The suppression algorithm on plain arrays (see :func:`suppress_table`)."""
    n_rows, n_cols = values.shape
    vals = values.tolist()
    locked = lock.tolist()
    hidden = [
        [is_small(v, min_cell) and not lk for v, lk in zip(row, lrow, strict=True)]
        for row, lrow in zip(vals, locked, strict=True)
    ]
    row_sum = [float(np.nansum(values[i])) for i in range(n_rows)]
    col_sum = [float(np.nansum(values[:, j])) for j in range(n_cols)]
    grand = float(np.nansum(values)) if values.size else 0.0
    # A margin is known to the reader when every cell adding up to it is.
    row_lock = [all(locked[i]) and n_cols > 0 for i in range(n_rows)]
    col_lock = [all(locked[i][j] for i in range(n_rows)) and n_rows > 0 for j in range(n_cols)]
    grand_lock = bool(values.size) and all(all(r) for r in locked)
    row_hidden = [
        row_totals and is_small(v, min_cell) and not lk for v, lk in zip(row_sum, row_lock, strict=True)
    ]
    col_hidden = [
        col_totals and is_small(v, min_cell) and not lk for v, lk in zip(col_sum, col_lock, strict=True)
    ]
    show_grand = row_totals and col_totals
    grand_hidden = [bool(show_grand and is_small(grand, min_cell) and not grand_lock)]

    def protect(
        entries: list[tuple[list, int]],
        line_vals: list[float],
        entry_locked: list[bool],
        total: tuple[list, int],
        total_locked: bool,
        total_value: float,
    ) -> bool:
        """Make one line safe. ``entries``/``total`` are (flag list, index) handles into the hidden flags."""
        changed = False
        while True:
            hid = [flags[k] for flags, k in entries]
            if _line_safe(line_vals, hid, total_value, total[0][total[1]], min_cell):
                return changed
            open_cells = [
                (v, pos)
                for pos, ((flags, k), v) in enumerate(zip(entries, line_vals, strict=True))
                if not flags[k] and not entry_locked[pos] and not math.isnan(v)
            ]
            nonzero = [c for c in open_cells if c[0] > 0]
            if nonzero:
                flags, k = entries[min(nonzero)[1]]
                flags[k] = True
            elif not total[0][total[1]] and not total_locked:
                total[0][total[1]] = True
            elif open_cells:
                flags, k = entries[open_cells[0][1]]
                flags[k] = True
            else:
                return changed  # everything left is locked: the reader knows these values anyway
            changed = True

    changed = True
    while changed:
        changed = False
        if row_totals:
            for i in range(n_rows):
                changed |= protect(
                    [(hidden[i], j) for j in range(n_cols)],
                    vals[i],
                    locked[i],
                    (row_hidden, i),
                    row_lock[i],
                    row_sum[i],
                )
        if col_totals:
            for j in range(n_cols):
                changed |= protect(
                    [(hidden[i], j) for i in range(n_rows)],
                    [vals[i][j] for i in range(n_rows)],
                    [locked[i][j] for i in range(n_rows)],
                    (col_hidden, j),
                    col_lock[j],
                    col_sum[j],
                )
        if show_grand:  # the row totals add up to the grand total, and so do the column totals
            changed |= protect(
                [(row_hidden, i) for i in range(n_rows)],
                row_sum,
                row_lock,
                (grand_hidden, 0),
                grand_lock,
                grand,
            )
            changed |= protect(
                [(col_hidden, j) for j in range(n_cols)],
                col_sum,
                col_lock,
                (grand_hidden, 0),
                grand_lock,
                grand,
            )
    return (
        np.array(hidden, dtype=bool).reshape(n_rows, n_cols),
        np.array(row_hidden, dtype=bool),
        np.array(col_hidden, dtype=bool),
        grand_hidden[0],
    )


def suppress_table(
    counts: pd.DataFrame,
    *,
    row_totals: bool = True,
    col_totals: bool = True,
    locked: pd.DataFrame | None = None,
    min_cell: int = SMALL_CELL_MIN,
) -> TableSuppression:
    """Primary and complementary suppression of a table of counts with displayed margins.

    ``counts``: non-negative counts (NaN = no cell). ``row_totals``/``col_totals``:
    whether the row sums / column sums are displayed (the grand total is displayed
    when both are). ``locked``: same shape, True where the reader may see the value.
    """
    values = counts.astype(float).to_numpy()
    lock = (
        np.zeros_like(values, dtype=bool)
        if locked is None
        else locked.reindex(index=counts.index, columns=counts.columns).fillna(False).to_numpy(bool)
    )
    cells, rows, cols, grand = _suppress_grid(values, lock, row_totals, col_totals, min_cell)
    return TableSuppression(
        cells=pd.DataFrame(cells, index=counts.index, columns=counts.columns),
        row_totals=pd.Series(rows, index=counts.index, dtype=bool),
        col_totals=pd.Series(cols, index=counts.columns, dtype=bool),
        grand_total=grand,
    )


def suppress_line(
    values: pd.Series,
    *,
    total_shown: bool = True,
    locked: pd.Series | None = None,
    min_cell: int = SMALL_CELL_MIN,
) -> tuple[pd.Series, bool]:
    """A single line of counts adding up to a displayed total: returns (hidden cells, total hidden)."""
    arr = values.astype(float).to_numpy().reshape(1, -1)
    lock = (
        np.zeros_like(arr, dtype=bool)
        if locked is None
        else locked.reindex(values.index).fillna(False).to_numpy(bool).reshape(1, -1)
    )
    cells, rows, _, _ = _suppress_grid(arr, lock, total_shown, False, min_cell)
    return pd.Series(cells[0], index=values.index, dtype=bool), bool(rows[0])


RATE_COLUMNS = ("rate", "ci_low", "ci_high")


def suppress_measure_rows(
    measures: pd.DataFrame,
    *,
    own_site: str | None = None,
    total_site: str = "ALL",
    group_by: Sequence[str] = ("measure_id", "denominator_type", "period_type", "period_start"),
    min_cell: int = SMALL_CELL_MIN,
) -> pd.DataFrame:
    """Hide small and recoverable counts in measure rows (one row per site, plus the ``ALL`` total).

    Within each group the site numerators add up to the ``ALL`` numerator and the
    denominators to the ``ALL`` denominator, so both are lines for complementary
    suppression. ``own_site`` rows stay visible (the reader's own report). Returns a
    copy with ``suppressed`` True and numerator, denominator, rate and interval set
    to missing wherever anything in the row is hidden (rule 3).
    """
    out = measures.copy().reset_index(drop=True)
    if out.empty:
        out["suppressed"] = pd.Series(dtype=bool)
        return out
    hide = np.zeros(len(out), dtype=bool)
    site = out["site_id"].astype(str).to_numpy()
    counts = {
        c: pd.to_numeric(out[c], errors="coerce").to_numpy(float)
        for c in ("numerator", "denominator")
        if c in out.columns
    }
    keys = [c for c in group_by if c in out.columns]
    groups = out.groupby(keys, dropna=False, sort=True).indices if keys else {None: np.arange(len(out))}
    for idx in groups.values():
        is_total = site[idx] == total_site
        locked = site[idx] == own_site if own_site else np.zeros(len(idx), dtype=bool)
        cells, totals = idx[~is_total], idx[is_total]
        for vals in counts.values():
            if np.isnan(vals[idx]).all():
                continue
            if len(totals) and len(cells):
                h_cells, h_tot, _, _ = _suppress_grid(
                    vals[cells].reshape(1, -1), locked[~is_total].reshape(1, -1), True, False, min_cell
                )
                hide[cells] |= h_cells[0]
                if h_tot[0]:
                    hide[totals] = True
            else:
                hide[idx] |= np.array([is_small(v, min_cell) for v in vals[idx]]) & ~locked
    out["suppressed"] = hide
    for col in ("numerator", "denominator", *RATE_COLUMNS):
        if col in out.columns:
            out[col] = out[col].astype(object).where(~out["suppressed"], None)
    return out


def display_count(value: float | int | None, hidden: bool = False) -> str:
    """A count as text for a page: ``*`` when hidden, ``-`` when missing."""
    if hidden:
        return HIDDEN
    if value is None or pd.isna(value):
        return "-"
    return f"{int(value):,}"


def _protect(
    vals: np.ndarray,
    hidden: np.ndarray,
    locked: np.ndarray,
    cells: np.ndarray,
    total: int,
    min_cell: int,
) -> bool:
    """Make one line (row positions ``cells`` adding up to row ``total``) safe; True when anything changed."""
    changed = False
    while True:
        h = hidden[cells]
        n_hidden = int(h.sum()) + int(hidden[total])
        if n_hidden == 0:
            return changed
        if n_hidden > 1 and (hidden[total] or not 1 <= float(vals[cells][h].sum()) < min_cell):
            return changed
        open_ = cells[~h & ~locked[cells] & (vals[cells] > 0)]
        if open_.size:
            hidden[open_[int(np.argmin(vals[open_]))]] = True
        elif not hidden[total] and not locked[total]:
            hidden[total] = True
        else:
            return changed  # everything left is locked or zero: the reader knows these values anyway
        changed = True


class MeasureSuppression:
    """Suppression of a measures frame holding every period type at once, computed once per edition.

    Besides sites adding up to ``ALL`` within a period, counts also add up over time: a
    site's quarters to its year and to its all-time value, its years to its all-time value.
    Each such line is protected like a table margin (a lone hidden quarter would otherwise
    be the year minus the shown quarters). A line is used only when its counts really add
    up (measures whose periods overlap, or medians, are left to the cross-site rule). The
    lines are revisited until nothing changes, so hiding a complement for one line never
    opens another. Rows are hidden whole (rule 3).

    The lines and the cross-site view (:attr:`hidden`: system report, ``measures.csv``) are
    worked out once. A site's own view (:meth:`hidden_for`) starts from the cross-site view,
    shows the site's own rows (locked) and protects again only the lines that showing them
    reopened, so every site's view costs about the size of its own rows, not of the registry.
    """

    def __init__(
        self, measures: pd.DataFrame, *, total_site: str = "ALL", min_cell: int = SMALL_CELL_MIN
    ) -> None:
        self.frame = measures.reset_index(drop=True)
        self.min_cell = min_cell
        out = self.frame
        n = len(out)
        self.site = out["site_id"].astype(str).to_numpy() if n else np.array([], dtype=object)
        codes, names = pd.factorize(self.site)
        self._site_code = codes
        self._code_of = {str(name): i for i, name in enumerate(names)}
        self._views: dict[str, np.ndarray] = {}
        self.counts = [
            pd.to_numeric(out[c], errors="coerce").to_numpy(float)
            for c in ("numerator", "denominator")
            if c in out.columns
        ]
        self.lines = self._lines(total_site) if n else []
        # (line, count column) units in the order a full sweep visits them, and the units touching each row
        n_cols = max(len(self.counts), 1)
        rows_of_line = [np.append(cells, tot) for cells, tot in self.lines]
        line_of_row = np.repeat(np.arange(len(self.lines)), [len(r) for r in rows_of_line])
        flat = np.concatenate(rows_of_line) if rows_of_line else np.array([], dtype=np.int64)
        order = np.argsort(flat, kind="stable")
        self._row_start = np.searchsorted(flat[order], np.arange(n + 1))
        self._row_lines = line_of_row[order]
        self._n_cols = n_cols
        primary = np.zeros(n, dtype=bool)
        for vals in self.counts:
            primary |= (vals >= 1) & (vals < min_cell)
        #: Hidden rows in the cross-site view (no site's own rows shown).
        self.hidden = primary
        self._settle(primary, np.zeros(n, dtype=bool), self._units_of(np.flatnonzero(primary)))

    def _lines(self, total_site: str) -> list[tuple[np.ndarray, int]]:
        """Lines of row positions adding up to a total row: sites to ALL, quarters and years to longer periods."""
        out, site, counts = self.frame, self.site, self.counts
        den = (
            out["denominator_type"].astype(str).fillna("")
            if "denominator_type" in out
            else pd.Series("", index=out.index)
        )
        ptype = out["period_type"].astype(str).to_numpy()
        start = pd.to_datetime(out["period_start"])
        year = start.dt.year.to_numpy()
        key = out["measure_id"].astype(str) + "\x1f" + den
        lines: list[tuple[np.ndarray, int]] = []
        # sites -> ALL within each measure, denominator and period
        frame = pd.DataFrame({"k": key, "p": ptype, "s": start, "site": site})
        for _, idx in frame.groupby(["k", "p", "s"], sort=True).indices.items():
            tot = idx[site[idx] == total_site]
            cells = idx[site[idx] != total_site]
            if len(tot) == 1 and len(cells):
                lines.append((cells, int(tot[0])))
        # periods -> longer periods of the same site
        by_site = pd.DataFrame({"k": key, "site": site, "p": ptype, "y": year})
        for _, idx in by_site.groupby(["k", "site"], sort=True).indices.items():
            all_time = idx[ptype[idx] == "all_time"]
            years = idx[ptype[idx] == "year"]
            quarters = idx[ptype[idx] == "quarter"]
            if len(all_time) == 1:
                lines += [(years, int(all_time[0])), (quarters, int(all_time[0]))]
            for y in years:
                lines.append((quarters[year[quarters] == year[y]], int(y)))
        usable = []
        for cells, tot in lines:
            if not len(cells):
                continue
            ok = True
            for vals in counts:
                v = vals[cells]
                if np.isnan(v).any() or np.isnan(vals[tot]) or v.sum() != vals[tot]:
                    ok = False
                    break
            if ok:
                usable.append((np.asarray(cells, dtype=np.int64), tot))
        return usable

    def _units_of(self, rows: np.ndarray) -> set[int]:
        """Every (line, count column) unit touching one of ``rows``."""
        units: set[int] = set()
        for r in rows:
            for line in self._row_lines[self._row_start[r] : self._row_start[r + 1]]:
                units.update(range(int(line) * self._n_cols, (int(line) + 1) * self._n_cols))
        return units

    def _settle(self, hidden: np.ndarray, locked: np.ndarray, dirty: set[int]) -> None:
        """Protect lines until nothing changes, visiting only units that can change (in place).

        Same result as sweeping every line in order until a sweep changes nothing: a unit whose rows
        did not change since its last visit is left as it was, so only ``dirty`` units (and those
        touching a row hidden meanwhile) are visited, in sweep order, a later pass for earlier units.
        """
        pending = sorted(dirty)
        while pending:
            heapq.heapify(pending)
            queued = set(pending)
            later: set[int] = set()
            while pending:
                unit = heapq.heappop(pending)
                queued.discard(unit)
                line, col = divmod(unit, self._n_cols)
                cells, tot = self.lines[line]
                rows = np.append(cells, tot)
                before = hidden[rows]
                if not _protect(self.counts[col], hidden, locked, cells, tot, self.min_cell):
                    continue
                for other in self._units_of(rows[hidden[rows] & ~before]):
                    if other > unit and other not in queued:
                        heapq.heappush(pending, other)
                        queued.add(other)
                    elif other < unit:
                        later.add(other)
            pending = sorted(later)

    def hidden_for(self, own_site: str | None = None) -> np.ndarray:
        """Hidden rows as ``own_site`` sees them (None: the cross-site view); ``own_site`` rows never are."""
        if own_site is None:
            return self.hidden
        if own_site not in self._views:
            self._views = {}  # a page asks for one site's view at a time: keep only the latest
            locked = self._site_code == self._code_of.get(str(own_site), -1)
            hidden = self.hidden & ~locked
            shown = np.flatnonzero(self.hidden & locked)
            if shown.size:
                self._settle(hidden, locked, self._units_of(shown))
            self._views[own_site] = hidden
        return self._views[own_site]

    def view(self, own_site: str | None = None, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Measure rows (``rows`` positions, default all) with ``suppressed`` set and hidden numbers blanked."""
        hidden = self.hidden_for(own_site)
        if rows is None:
            out, hide = self.frame.copy(), hidden
        else:
            out, hide = self.frame.iloc[rows].reset_index(drop=True), hidden[rows]
        if out.empty:
            out["suppressed"] = pd.Series(dtype=bool)
            return out
        out["suppressed"] = hide
        for col in ("numerator", "denominator", *RATE_COLUMNS):
            if col in out.columns:
                out[col] = out[col].astype(object).where(~hide, None)
        return out


def suppress_measures_across_periods(
    measures: pd.DataFrame,
    *,
    own_site: str | None = None,
    total_site: str = "ALL",
    min_cell: int = SMALL_CELL_MIN,
) -> pd.DataFrame:
    """:func:`suppress_measure_rows` for a frame holding every period type at once (see :class:`MeasureSuppression`).

    Pages reuse one :class:`MeasureSuppression` per edition; this is the one-off form.
    """
    return MeasureSuppression(measures, total_site=total_site, min_cell=min_cell).view(own_site)
