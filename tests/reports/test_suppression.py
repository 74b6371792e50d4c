"""Small-cell and complementary suppression (clinical-spec §8.5)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from poem_registry.reports.suppression import (
    is_small,
    suppress_line,
    suppress_measure_rows,
    suppress_table,
)


@pytest.mark.parametrize(
    ("value", "small"),
    [(0, False), (1, True), (10, True), (11, False), (None, False), (float("nan"), False), (10.0, True)],
)
def test_primary_rule(value, small):
    assert is_small(value) is small


def _recoverable(values: list[float], hidden: list[bool], total_hidden: bool) -> bool:
    """Whether a reader can pin a hidden small cell from the displayed total (brute force)."""
    if total_hidden:
        return False
    known = sum(v for v, h in zip(values, hidden, strict=True) if not h)
    remainder = sum(values) - known
    hidden_vals = [v for v, h in zip(values, hidden, strict=True) if h]
    return len(hidden_vals) == 1 or (hidden_vals and 1 <= remainder < 11)


def test_single_small_cell_gets_a_complement():
    line = pd.Series([5.0, 40.0, 60.0, 100.0], index=list("abcd"))
    hidden, total_hidden = suppress_line(line)
    assert hidden["a"] and hidden.sum() == 2 and hidden["b"]  # next-smallest cell hidden too
    assert not total_hidden
    assert not _recoverable(line.tolist(), hidden.tolist(), total_hidden)


def test_two_small_cells_whose_sum_is_small_need_a_third():
    line = pd.Series([3.0, 4.0, 50.0, 80.0], index=list("abcd"))
    hidden, total_hidden = suppress_line(line)
    assert hidden[["a", "b", "c"]].all() and not hidden["d"]
    assert not _recoverable(line.tolist(), hidden.tolist(), total_hidden)


def test_zero_is_shown_and_only_cell_hides_total():
    line = pd.Series([0.0, 7.0], index=["a", "b"])
    hidden, total_hidden = suppress_line(line)
    assert hidden["b"] and not hidden["a"]
    assert total_hidden  # total would equal the hidden 7


def test_locked_cell_is_visible_and_counts_as_known():
    line = pd.Series([5.0, 6.0, 70.0], index=["own", "p1", "p2"])
    locked = pd.Series([True, False, False], index=line.index)
    hidden, _total_hidden = suppress_line(line, locked=locked)
    assert not hidden["own"]
    assert hidden["p1"] and hidden["p2"]  # p1 alone would be total - own - p2


def test_table_rows_and_columns_protected():
    counts = pd.DataFrame(
        [[3, 20, 30], [25, 40, 12], [15, 18, 22]], index=list("xyz"), columns=list("abc"), dtype=float
    )
    s = suppress_table(counts)
    assert s.cells.at["x", "a"]
    # every row and column: 0 or >= 2 hidden entries, and hidden sum with a shown total is not small
    for i in counts.index:
        h = s.cells.loc[i].tolist()
        assert not _recoverable(counts.loc[i].tolist(), h, bool(s.row_totals[i]))
    for j in counts.columns:
        h = s.cells[j].tolist()
        assert not _recoverable(counts[j].tolist(), h, bool(s.col_totals[j]))


def test_random_tables_never_leak():
    rng = np.random.default_rng(3)
    for _ in range(200):
        counts = pd.DataFrame(
            rng.integers(0, 40, size=(rng.integers(1, 5), rng.integers(1, 5))).astype(float)
        )
        s = suppress_table(counts)
        vals = counts.to_numpy()
        for i in range(vals.shape[0]):
            assert not _recoverable(vals[i].tolist(), s.cells.iloc[i].tolist(), bool(s.row_totals.iloc[i]))
        for j in range(vals.shape[1]):
            assert not _recoverable(
                vals[:, j].tolist(), s.cells.iloc[:, j].tolist(), bool(s.col_totals.iloc[j])
            )
        # margins vs grand total
        if s.grand_total is False:
            assert not _recoverable(vals.sum(axis=1).tolist(), s.row_totals.tolist(), False)
        # no small value is ever shown
        for i, j in itertools.product(range(vals.shape[0]), range(vals.shape[1])):
            if 1 <= vals[i, j] <= 10:
                assert s.cells.iat[i, j]


def _measures(rows):
    return pd.DataFrame(
        [
            {
                "measure_id": "P1",
                "denominator_type": "na",
                "period_type": "all_time",
                "period_start": "2025-01-01",
                "site_id": s,
                "numerator": x,
                "denominator": n,
                "rate": x / n,
                "ci_low": 0.1,
                "ci_high": 0.9,
            }
            for s, x, n in rows
        ]
    )


def test_measure_rows_hide_small_site_and_a_complement():
    m = _measures([("a", 4, 8), ("b", 50, 60), ("c", 70, 80), ("ALL", 124, 148)])
    out = suppress_measure_rows(m).set_index("site_id")
    assert out.at["a", "suppressed"] and out.at["b", "suppressed"]
    assert not out.at["c", "suppressed"] and not out.at["ALL", "suppressed"]
    assert out.loc["a", ["numerator", "denominator", "rate", "ci_low", "ci_high"]].isna().all()
    # the ALL total minus the visible sites must not reveal a (4/8)
    visible = out[~out["suppressed"] & (out.index != "ALL")]
    assert out.at["ALL", "numerator"] - visible["numerator"].sum() >= 11


def test_own_site_rows_stay_visible():
    m = _measures([("a", 4, 8), ("b", 50, 60), ("c", 70, 80), ("ALL", 124, 148)])
    out = suppress_measure_rows(m, own_site="a").set_index("site_id")
    assert not out.at["a", "suppressed"] and out.at["a", "numerator"] == 4


def _line_problems(ms, hidden: np.ndarray, locked: np.ndarray) -> list:
    """Lines of a :class:`MeasureSuppression` a reader who knows the ``locked`` rows could undo."""
    bad = []
    for col, vals in enumerate(ms.counts):
        shown_small = (vals >= 1) & (vals < 11) & ~locked & ~hidden
        bad += [("small shown", col, int(r)) for r in np.flatnonzero(shown_small)]
        for cells, tot in ms.lines:
            h = hidden[cells]
            n_hidden = int(h.sum()) + int(hidden[tot])
            if n_hidden == 0 or (n_hidden > 1 and (hidden[tot] or not 1 <= vals[cells][h].sum() < 11)):
                continue
            if not (~h & ~locked[cells] & (vals[cells] > 0)).any() and (hidden[tot] or locked[tot]):
                continue  # nothing left to hide: the reader knows these values anyway
            bad.append(("line", col, int(tot)))
    return bad


def test_one_suppression_per_edition_serves_every_site(warehouse_file):
    import duckdb

    from poem_registry.reports.data import ReportData
    from poem_registry.reports.suppression import MeasureSuppression, suppress_measures_across_periods

    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        measures = ReportData(con).read("measures")
    ms = MeasureSuppression(measures)
    assert ms.view().equals(suppress_measures_across_periods(measures))
    assert ms.hidden.any() and not _line_problems(ms, ms.hidden, np.zeros(len(measures), dtype=bool))
    for site in sorted(set(measures["site_id"]) - {"ALL"}):
        own = (measures["site_id"] == site).to_numpy()
        hidden = ms.hidden_for(site)
        assert not (hidden & own).any()  # a site sees its own rows in full
        assert not _line_problems(ms, hidden, own), site
        view = ms.view(site, np.flatnonzero(own))
        assert not view["suppressed"].any() and view["numerator"].notna().all()
