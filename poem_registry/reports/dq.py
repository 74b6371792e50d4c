"""Data-quality views for the reports: scorecards, open quarantines, freshness, failure changes.

Read from ``quality.check_results`` (every check of every run, OHDSI-DQD statuses
pass / fail / error / not_applicable), ``ingest.batches`` and ``ingest.findings``.
When the quality engineer's ``poem_registry.quality.scorecard.site_scorecard`` is
importable its scorecard is used; otherwise an equivalent one is derived here
from the latest result of every check.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import date

import pandas as pd

from poem_registry.reports import format as fmt
from poem_registry.reports.data import ReportData
from poem_registry.reports.figures import TableView

log = logging.getLogger(__name__)
FAILING = ("fail", "error")
CHECK_KEY = ["stage", "site_id", "check_name", "column_name"]


def latest_checks(data: ReportData) -> pd.DataFrame:
    """The latest and the previous status of every check (per stage, site, check and column)."""
    cr = data.read("check_results")
    if cr.empty:
        return cr.assign(previous_status=pd.Series(dtype=object))
    cr = cr.copy()
    for c in CHECK_KEY:
        cr[c] = cr[c].fillna("")
    cr = cr.sort_values([*CHECK_KEY, "run_at", "run_id"], kind="mergesort")
    cr["previous_status"] = cr.groupby(CHECK_KEY)["status"].shift(1)
    return cr.groupby(CHECK_KEY, as_index=False).tail(1).reset_index(drop=True)


def failure_changes(latest: pd.DataFrame) -> pd.DataFrame:
    """``change`` = new / persisting / resolved for checks whose latest or previous status failed."""
    if latest.empty:
        return latest.assign(change=pd.Series(dtype=object))
    now_fail = latest["status"].isin(FAILING)
    was_fail = latest["previous_status"].isin(FAILING)
    change = pd.Series(None, index=latest.index, dtype=object)
    change[now_fail & ~was_fail] = "new"
    change[now_fail & was_fail] = "persisting"
    change[~now_fail & was_fail] = "resolved"
    return latest.assign(change=change)[change.notna()].sort_values(["change", "site_id", "check_name"])


def _to_frame(obj) -> pd.DataFrame:
    if obj is None:
        return pd.DataFrame()
    if isinstance(obj, pd.DataFrame):
        return obj
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        for key in ("checks", "rows", "items"):
            if isinstance(obj.get(key), list):
                return pd.DataFrame(
                    [dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in obj[key]]
                )
        return pd.DataFrame([obj])
    return pd.DataFrame([dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in obj])


def site_scorecard(data: ReportData, latest: pd.DataFrame, site_id: str) -> pd.DataFrame:
    """Checks for one site (latest status) with what to fix; the quality module's scorecard when available."""
    try:
        from poem_registry.quality.scorecard import site_scorecard as external
    except ImportError:
        external = None
    if external is not None:
        try:
            frame = _to_frame(external(data.con, site_id))
            if not frame.empty:
                return frame
        except Exception as exc:  # the report still shows the derived scorecard
            log.warning("quality.scorecard.site_scorecard(%s) failed (%s); using check_results", site_id, exc)
    mine = latest[latest["site_id"] == site_id]
    return mine.loc[
        :,
        [
            "stage",
            "category",
            "check_name",
            "column_name",
            "severity",
            "status",
            "observed",
            "threshold",
            "message",
        ],
    ].reset_index(drop=True)


def score_summary(card: pd.DataFrame) -> dict:
    status = card.get("status", pd.Series(dtype=object)).astype(str)
    passed = int((status == "pass").sum())
    failed = int(status.isin(FAILING).sum())
    na = int((status == "not_applicable").sum())
    return {
        "passed": passed,
        "failed": failed,
        "not_applicable": na,
        "score": fmt.pct(passed / (passed + failed), 0) if passed + failed else "-",
    }


def scorecard_table(card: pd.DataFrame, caption: str) -> TableView:
    """Failing checks first, with the check's message as what to fix."""
    if card.empty:
        return TableView(["Note"], [["No quality checks recorded for this site yet."]], caption=caption)
    order = {"error": 0, "fail": 1, "not_applicable": 2, "pass": 3}
    card = card.copy()
    card["_o"] = card["status"].map(order).fillna(4)
    sort_cols = ["_o", *[c for c in ("stage", "check_name", "column_name") if c in card.columns]]
    card = card.sort_values(sort_cols, kind="mergesort")
    cols = [
        c
        for c in (
            "status",
            "stage",
            "category",
            "check_name",
            "column_name",
            "severity",
            "observed",
            "threshold",
            "message",
            "fix",
        )
        if c in card.columns
    ]
    rows = [[("" if fmt.missing(r[c]) else str(r[c])) for c in cols] for _, r in card.iterrows()]
    headers = [
        {"message": "What to fix / message", "check_name": "check", "column_name": "column"}.get(c, c)
        for c in cols
    ]
    return TableView(
        headers,
        rows,
        caption=caption,
        note="Statuses follow the OHDSI Data Quality Dashboard: pass, fail, error and not "
        "applicable (a check with nothing to check, such as AEs for a site that sent none).",
    )


def open_quarantines(data: ReportData, site_id: str | None = None) -> pd.DataFrame:
    b = data.read("batches")
    if b.empty:
        return b
    q = b[b["status"].astype(str).str.contains("quarantin") & b["resolved_at"].isna()]
    if site_id is not None:
        q = q[q["site_id"] == site_id]
    return q.sort_values(["site_id", "started_at", "batch_id"]).reset_index(drop=True)


def quarantine_table(q: pd.DataFrame, *, show_site: bool) -> TableView:
    cols = (["Site"] if show_site else []) + [
        "Batch",
        "Extract",
        "Received",
        "Rows quarantined",
        "Reason",
        "Quarantine report",
    ]
    rows = []
    for _, r in q.iterrows():
        path = (
            "" if fmt.missing(r["quarantine_path"]) else str(r["quarantine_path"]).rstrip("/").split("/")[-1]
        )
        rows.append(
            ([str(r["site_id"])] if show_site else [])
            + [
                str(r["batch_id"]),
                str(r["extract_id"]),
                str(r["started_at"])[:16],
                fmt.count(r["rows_quarantined"]),
                "" if fmt.missing(r["message"]) else str(r["message"]),
                f"quarantine/{path}/report.md" if path else "",
            ]
        )
    if not rows:
        rows = [["none"] + [""] * (len(cols) - 1)]
    return TableView(
        cols,
        rows,
        caption="Open quarantines (not yet resolved)",
        note="A quarantined delivery was not loaded; the site fixes it and re-delivers, then an "
        "administrator runs `poem-registry quarantine resolve`.",
    )


def freshness(data: ReportData, site_ids: list[str], as_of: date, cadence: dict[str, int]) -> pd.DataFrame:
    b = data.read("batches")
    rows = []
    for sid in site_ids:
        mine = b[(b["site_id"] == sid) & b["status"].astype(str).isin(["committed", "partially_quarantined"])]
        last = (
            pd.to_datetime(mine["extracted_at"].fillna(mine["started_at"])).max() if not mine.empty else None
        )
        days = (as_of - last.date()).days if last is not None and not pd.isna(last) else None
        expected = cadence.get(sid, 31)
        rows.append(
            {
                "site_id": sid,
                "last_delivery": None if days is None else last.date().isoformat(),
                "days_since": days,
                "expected_every_days": expected,
                "late": days is None or days > expected,
            }
        )
    return pd.DataFrame(rows)
