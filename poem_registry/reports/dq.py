"""Data-quality views for the reports: scorecards, open quarantines, freshness, failure changes.

Read from ``quality.check_results`` (every check of every run, OHDSI-DQD statuses
pass / fail / error / not_applicable), ``ingest.batches`` and ``ingest.findings``.
When the quality engineer's ``poem_registry.quality.scorecard.site_scorecard`` is
importable its scorecard is used; otherwise an equivalent one is derived here
from the latest result of every check.
"""

from __future__ import annotations

import logging
from datetime import date

import pandas as pd

from poem_registry.reports import format as fmt
from poem_registry.reports.data import ReportData
from poem_registry.reports.figures import TableView

log = logging.getLogger(__name__)
FAILING = ("fail", "error")
CHECK_KEY = ["stage", "site_id", "check_name", "column_name"]


STATUS_ORDER = {"error": 0, "fail": 1, "pass": 2, "not_applicable": 3}


def _worst_status(statuses: pd.Series) -> str:
    return min(statuses.astype(str), key=lambda v: STATUS_ORDER.get(v, 4))


def _run_order(cr: pd.DataFrame) -> pd.DataFrame:
    """Runs of each stage and site, newest first (run_at of the run's first check)."""
    runs = cr.groupby(["stage", "site_id", "run_id"], as_index=False, dropna=False)["run_at"].min()
    return runs.sort_values(["stage", "site_id", "run_at", "run_id"], ascending=[True, True, False, False])


def _aggregate_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per check of one run (a delivery run checks every batch and file: worst status wins)."""
    if rows.empty:
        return pd.DataFrame(columns=CARD_COLUMNS)
    keys = ["stage", "site_id", "suite", "check_name"]
    rows = rows.assign(
        _rank=rows["status"].astype(str).map(STATUS_ORDER).fillna(4),
        unexpected_count=pd.to_numeric(rows["unexpected_count"], errors="coerce"),
        element_count=pd.to_numeric(rows["element_count"], errors="coerce"),
    )
    g = rows.groupby(keys, dropna=False, sort=True)
    out = g.agg(
        column_name=("column_name", "first"),
        category=("category", "first"),
        severity=("severity", "first"),
        rank=("_rank", "min"),
        unexpected=("unexpected_count", "sum"),
        elements=("element_count", "sum"),
        threshold_percent=("threshold_percent", "max"),
        note=("note", "first"),
    ).reset_index()
    inv = {v: k for k, v in STATUS_ORDER.items()}
    out["status"] = out["rank"].map(inv).fillna("not_applicable")
    failing = rows[rows["status"].isin(FAILING)]
    msgs = failing.groupby(keys, dropna=False)["message"].agg(
        lambda m: "; ".join(sorted({str(x) for x in m.dropna() if str(x).strip()})[:3])
    )
    out = out.merge(msgs.rename("message").reset_index(), on=keys, how="left")
    out["observed"] = [
        f"{int(u):,} of {int(e):,} rows" if e and not pd.isna(e) else "-"
        for u, e in zip(out["unexpected"], out["elements"], strict=True)
    ]
    out["threshold"] = [
        "none tolerated" if pd.isna(t) or float(t) <= 0 else f"up to {float(t):g}% tolerated"
        for t in out["threshold_percent"]
    ]
    out["fix"] = out["note"]
    return out.loc[:, CARD_COLUMNS]


CARD_COLUMNS = [
    "stage",
    "site_id",
    "suite",
    "check_name",
    "column_name",
    "category",
    "severity",
    "status",
    "observed",
    "threshold",
    "message",
    "fix",
]


def latest_checks(data: ReportData) -> pd.DataFrame:
    """Every check of the latest run of each stage and site, with its status in the run before.

    A delivery run checks each batch and file of a site; a check's status in the run is its worst status
    across them. ``previous_status`` is the same check's status in the site's previous run. Mart checks
    (the publishing gate) have no site. Computed once per edition.
    """

    def compute() -> pd.DataFrame:
        cr = data.read("check_results")
        if cr.empty:
            return pd.DataFrame(columns=[*CARD_COLUMNS, "previous_status"])
        cr = cr.copy()
        cr["site_id"] = cr["site_id"].fillna("")
        cr["suite"] = cr["suite"].fillna("")
        runs = _run_order(cr)
        runs["n"] = runs.groupby(["stage", "site_id"]).cumcount()
        pick = runs[runs["n"] <= 1]
        tagged = cr.merge(pick[["stage", "site_id", "run_id", "n"]], on=["stage", "site_id", "run_id"])
        now = _aggregate_run(tagged[tagged["n"] == 0])
        before = _aggregate_run(tagged[tagged["n"] == 1])
        prev = before.loc[:, ["stage", "site_id", "suite", "check_name", "status"]].rename(
            columns={"status": "previous_status"}
        )
        out = now.merge(prev, on=["stage", "site_id", "suite", "check_name"], how="left")
        return out.reset_index(drop=True)

    return data.memo(("latest_checks",), compute).copy()


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


def site_scorecard(data: ReportData, latest: pd.DataFrame, site_id: str) -> pd.DataFrame:
    """Checks of the site's latest delivery run (worst status across its batches) with what to fix.

    Same definitions as :func:`poem_registry.quality.scorecard.site_scorecard`, computed from the rows
    already read for the edition (that function needs a writable connection; reports read the warehouse
    read-only).
    """
    mine = latest[latest["site_id"] == site_id]
    return mine.loc[:, [c for c in CARD_COLUMNS if c != "site_id"] + ["previous_status"]].reset_index(
        drop=True
    )


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
    values = card.loc[:, cols].astype(object).where(card.loc[:, cols].notna(), "")
    rows = [[str(v) for v in row] for row in values.itertuples(index=False)]
    headers = [
        {
            "message": "What failed",
            "fix": "Why it matters / what to fix",
            "check_name": "check",
            "column_name": "column",
        }.get(c, c)
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
    q = q.sort_values(["site_id", "started_at", "batch_id"]).reset_index(drop=True)
    if q.empty:
        return q
    # a partly quarantined batch has no message of its own: name the rules its rows broke (ingest.findings)
    findings = data.read("findings")
    if not findings.empty:
        top = (
            findings[findings["batch_id"].isin(q["batch_id"])]
            .groupby(["batch_id", "rule"], as_index=False)
            .size()
            .sort_values(["batch_id", "size", "rule"], ascending=[True, False, True])
        )
        reasons = top.groupby("batch_id").apply(
            lambda g: (
                "rows held back: "
                + ", ".join(f"{r} ({n})" for r, n in zip(g["rule"], g["size"], strict=True))
            ),
            include_groups=False,
        )
        q["message"] = [
            m if not fmt.missing(m) and str(m).strip() else reasons.get(bid)
            for m, bid in zip(q["message"], q["batch_id"], strict=True)
        ]
    return q


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
