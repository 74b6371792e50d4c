"""What each page shows: sections of tables and figures built from warehouse rows.

Pages are plain data (:class:`Page` with :class:`Section` s holding
:class:`~poem_registry.reports.figures.FigureBlock` and
:class:`~poem_registry.reports.figures.TableView` objects); :mod:`.render` turns
them into HTML. Cross-site numbers pass through :mod:`.suppression` here, and a
site's page is built only from its own rows plus peers relabelled by
:mod:`.blinding`, so no other site's identity ever reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from poem_registry.reports import figures as F
from poem_registry.reports import format as fmt
from poem_registry.reports.blinding import peer_labels
from poem_registry.reports.data import SUBTYPE_BENCHMARK_PREFIX, ReportData
from poem_registry.reports.figures import FigureBlock, TableView
from poem_registry.reports.periods import Period
from poem_registry.reports.suppression import (
    HIDDEN,
    SMALL_CELL_MIN,
    is_small,
    suppress_measure_rows,
    suppress_table,
)

ALL = "ALL"
PROVENANCE_NOTE = (
    "Benchmark provenance: [V] verified in the cited source; [S2] from a secondary (AI-generated) summary, "
    "not re-verified; [M] from memory, unverified; [D] a registry design decision, not a literature value. "
    "Benchmarks are reference lines, never pass/fail thresholds."
)
SUPPRESSION_NOTE = (
    f"{HIDDEN} = hidden: counts from 1 to {SMALL_CELL_MIN - 1} are not shown in reports that compare sites, "
    "and neither is any other number from which a hidden count could be worked out (complementary "
    "suppression). Zero is shown."
)
REFLUX_MEASURES = ("P11G", "P11A", "P11", "P11C", "P11S", "P11L", "P12")
FOLLOWUP_MEASURES = ("P9A", "P9", "P9B")
FAILING = ("fail", "error")


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list = field(default_factory=list)
    note: str = ""


@dataclass
class Page:
    slug: str  # folder inside the edition, e.g. "system" or "sites/<id>"
    title: str
    intro: str
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)
    depth: int = 1  # folders below the edition root
    definitions_href: str = "../definitions/index.html"
    nav: bool = True
    extra: dict = field(default_factory=dict)


@dataclass
class SiteInfo:
    site_id: str
    name: str
    landing: str
    cadence_days: int = 31

    def identifiers(self) -> list[str]:
        return sorted({self.site_id, self.name, self.landing} - {""})


@dataclass
class EditionContext:
    registry_name: str
    period: Period
    as_of: date
    run_id: str
    edition_id: str
    sites: list[SiteInfo]
    warnings: list[str]
    data: ReportData
    gate: dict = field(default_factory=dict)

    @property
    def site_names(self) -> dict[str, str]:
        return {s.site_id: s.name for s in self.sites}


# --------------------------------------------------------------------------- helpers


def catalog(data: ReportData) -> pd.DataFrame:
    """Measure catalogue with the benchmark row (value, citation, provenance tag) joined on."""
    cat = data.read("measure_catalog")
    bm = data.read("benchmarks")
    out = cat.merge(bm.add_prefix("bm_"), left_on="benchmark_key", right_on="bm_benchmark_key", how="left")
    out["key_measure"] = out["key_measure"].fillna(False).astype(bool)
    return out.sort_values("measure_id", key=_measure_sort_key).reset_index(drop=True)


def _measure_sort_key(ids: pd.Series) -> pd.Series:
    """P1 < P2 < P2C < P3 < ... < P10 (numeric part first)."""

    def key(m: str) -> str:
        digits = "".join(ch for ch in str(m)[1:] if ch.isdigit())
        rest = str(m)[1 + len(digits) :]
        return f"{int(digits or 0):04d}{rest}"

    return ids.map(key)


def measure_label(cat: pd.DataFrame, measure_id: str) -> str:
    row = cat[cat["measure_id"] == measure_id]
    return f"{measure_id} {row['name'].iloc[0]}" if not row.empty else measure_id


def _den_label(den_type) -> str:
    return {"PP": "per protocol (assessed)", "ITT": "intention to treat (eligible)"}.get(str(den_type), "")


def _benchmark_text(row: pd.Series) -> str:
    if fmt.missing(row.get("benchmark_value")):
        return "-"
    tag = row.get("bm_provenance_tag")
    cite = row.get("benchmark_citation") or row.get("bm_citation") or ""
    return f"{fmt.pct(row['benchmark_value'])} {tag if not fmt.missing(tag) else ''} — {cite}".replace(
        "  ", " "
    )


def _rows_to_csv(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.reindex(columns=columns).reset_index(drop=True)


def measures_for(ctx: EditionContext, period_type: str = "all_time") -> pd.DataFrame:
    m = ctx.data.read("measures", "period_type = ?", [period_type])
    if period_type == "quarter":
        m = m[pd.to_datetime(m["period_start"]).dt.date <= ctx.period.end]
    return m


def warnings_for_site(ctx: EditionContext, site: SiteInfo) -> list[str]:
    """Gate warnings that may be shown to one site: those naming no other site."""
    others = [i for s in ctx.sites if s.site_id != site.site_id for i in s.identifiers()]
    return [w for w in ctx.warnings if not any(o.lower() in w.lower() for o in others)]


# --------------------------------------------------------------------------- shared blocks


def headline_block(
    ctx: EditionContext,
    cat: pd.DataFrame,
    measures: pd.DataFrame,
    quarter: pd.DataFrame,
    *,
    site: SiteInfo | None,
    def_href: str,
) -> list:
    """Key measures: value, interval, benchmark with citation (and this site's value in a site report)."""
    keys = cat[cat["key_measure"] & (cat["statistic"].fillna("proportion") == "proportion")]
    rows, links, csv_rows, points, bench = [], [], [], [], []
    for _, mrow in keys.iterrows():
        mid = mrow["measure_id"]
        sub = measures[measures["measure_id"] == mid]
        for den_type in sorted(sub["denominator_type"].dropna().unique().tolist()) or ["na"]:
            one = sub[sub["denominator_type"] == den_type]
            reg = one[one["site_id"] == ALL]
            if reg.empty:
                continue
            r = reg.iloc[0].to_dict() | {"bm_provenance_tag": mrow.get("bm_provenance_tag")}
            label = f"{mid} {mrow['name']}" + (f" ({den_type})" if den_type in ("PP", "ITT") else "")
            q = quarter[
                (quarter["measure_id"] == mid)
                & (quarter["denominator_type"] == den_type)
                & (quarter["site_id"] == (site.site_id if site else ALL))
            ]
            q_text = (
                fmt.rate_with_ci(q.iloc[0], bool(q.iloc[0]["suppressed"]))
                + " · "
                + fmt.fraction(
                    q.iloc[0]["numerator"], q.iloc[0]["denominator"], bool(q.iloc[0]["suppressed"])
                )
                if not q.empty
                else "-"
            )
            row = [label, _den_label(den_type) or "all index POEMs"]
            if site:
                me = one[one["site_id"] == site.site_id]
                if not me.empty:
                    m0 = me.iloc[0]
                    row += [fmt.fraction(m0["numerator"], m0["denominator"]), fmt.rate_with_ci(m0)]
                    points.append(
                        {
                            "label": label,
                            "series": "this_site",
                            "rate": m0["rate"],
                            "ci_low": m0["ci_low"],
                            "ci_high": m0["ci_high"],
                        }
                    )
                else:
                    row += ["-", "-"]
            row += [
                fmt.fraction(r["numerator"], r["denominator"], bool(r["suppressed"])),
                fmt.rate_with_ci(r, bool(r["suppressed"])),
                q_text,
                _benchmark_text(pd.Series(r)),
            ]
            rows.append(row)
            links.append(f"{def_href}#def-{mid}")
            points.append(
                {
                    "label": label,
                    "series": "registry",
                    "rate": None if r["suppressed"] else r["rate"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                }
            )
            bench.append({"label": label, "value": r.get("benchmark_value")})
            csv_rows.append(
                {
                    "measure_id": mid,
                    "denominator_type": den_type,
                    "site": "this site" if site else ALL,
                    "numerator": r["numerator"],
                    "denominator": r["denominator"],
                    "rate": r["rate"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "benchmark_value": r.get("benchmark_value"),
                    "benchmark_citation": r.get("benchmark_citation"),
                    "benchmark_provenance": mrow.get("bm_provenance_tag"),
                }
            )
            if site and not one[one["site_id"] == site.site_id].empty:
                m0 = one[one["site_id"] == site.site_id].iloc[0]
                csv_rows.append(
                    csv_rows[-1]
                    | {
                        "site": "your site",
                        "numerator": m0["numerator"],
                        "denominator": m0["denominator"],
                        "rate": m0["rate"],
                        "ci_low": m0["ci_low"],
                        "ci_high": m0["ci_high"],
                    }
                )
    columns = ["Measure", "Denominator"]
    if site:
        columns += ["Your site n/N", "Your site rate (95% CI)"]
    columns += [
        "Registry n/N",
        "Registry rate (95% CI)",
        f"This period ({ctx.period.label})",
        "Literature benchmark",
    ]
    table = TableView(
        columns,
        rows,
        caption="Key measures, all index POEMs up to the data-as-of date",
        note=PROVENANCE_NOTE,
        link_column=0,
        links=links,
    )
    if not rows:
        return [TableView(["Note"], [["The measures mart (marts.mart_measures) has no rows yet."]])]
    pts = pd.DataFrame(points)
    fig = F.rate_forest(
        pts, "Key measures with 95% intervals; diamonds = literature benchmark", benchmark=pd.DataFrame(bench)
    )
    csv = pd.DataFrame(csv_rows)
    return [
        FigureBlock(
            "fig-headline",
            "Key measures against the literature",
            fig,
            table,
            csv,
            definition=None,
            description="Each dot is a rate with its 95% interval; the open "
            "diamond is the published benchmark for the same definition.",
        )
    ]


def measure_table(
    cat: pd.DataFrame,
    measures: pd.DataFrame,
    ids: tuple[str, ...],
    *,
    fig_id: str,
    title: str,
    site: SiteInfo | None,
    def_href: str,
    description: str = "",
) -> FigureBlock | None:
    """A forest chart + table for a group of measures (registry, and this site in a site report)."""
    rows, links, pts, bench, csv_rows = [], [], [], [], []
    for mid in ids:
        sub = measures[measures["measure_id"] == mid]
        if sub.empty:
            continue
        for den_type in sorted(sub["denominator_type"].dropna().unique().tolist()):
            one = sub[sub["denominator_type"] == den_type]
            label = measure_label(cat, mid) + (f" ({den_type})" if den_type in ("PP", "ITT") else "")
            bm_tag = cat.loc[cat["measure_id"] == mid, "bm_provenance_tag"]
            row = [label]
            series = [("registry", one[one["site_id"] == ALL])]
            if site:
                series.insert(0, ("this_site", one[one["site_id"] == site.site_id]))
            for name, part in series:
                if part.empty:
                    row += ["-", "-"]
                    continue
                p = part.iloc[0]
                hidden = bool(p["suppressed"])
                row += [fmt.fraction(p["numerator"], p["denominator"], hidden), fmt.rate_with_ci(p, hidden)]
                pts.append(
                    {
                        "label": label,
                        "series": name,
                        "rate": None if hidden else p["rate"],
                        "ci_low": p["ci_low"],
                        "ci_high": p["ci_high"],
                    }
                )
                csv_rows.append(
                    {
                        "measure_id": mid,
                        "denominator_type": den_type,
                        "series": "your site" if name == "this_site" else "registry",
                        "numerator": p["numerator"],
                        "denominator": p["denominator"],
                        "rate": p["rate"],
                        "ci_low": p["ci_low"],
                        "ci_high": p["ci_high"],
                    }
                )
            reg = one[one["site_id"] == ALL]
            bm_row = reg.iloc[0].to_dict() if not reg.empty else {}
            bm_row["bm_provenance_tag"] = bm_tag.iloc[0] if not bm_tag.empty else None
            row.append(_benchmark_text(pd.Series(bm_row)))
            bench.append({"label": label, "value": bm_row.get("benchmark_value")})
            rows.append(row)
            links.append(f"{def_href}#def-{mid}")
    if not rows:
        return None
    columns = ["Measure"]
    if site:
        columns += ["Your site n/N", "Your site rate (95% CI)"]
    columns += ["Registry n/N", "Registry rate (95% CI)", "Literature benchmark"]
    table = TableView(columns, rows, caption=title, note=PROVENANCE_NOTE, link_column=0, links=links)
    fig = F.rate_forest(pd.DataFrame(pts), title, benchmark=pd.DataFrame(bench))
    return FigureBlock(
        fig_id, title, fig, table, pd.DataFrame(csv_rows), definition=ids[0], description=description
    )


def trend_blocks(
    ctx: EditionContext,
    cat: pd.DataFrame,
    quarter: pd.DataFrame,
    all_time: pd.DataFrame,
    *,
    site: SiteInfo | None,
    def_href: str,
) -> list:
    """Quarterly rate per key measure (registry; and this site in its own report)."""
    blocks = []
    keys = cat[cat["key_measure"] & (cat["statistic"].fillna("proportion") == "proportion")]
    for _, mrow in keys.iterrows():
        mid = mrow["measure_id"]
        q = quarter[quarter["measure_id"] == mid]
        if q.empty:
            continue
        den_type = "PP" if "PP" in set(q["denominator_type"]) else sorted(q["denominator_type"].dropna())[0]
        q = q[q["denominator_type"] == den_type].copy()
        q["quarter"] = pd.to_datetime(q["period_start"]).map(lambda d: f"{d.year}-Q{(d.month - 1) // 3 + 1}")
        series = [("registry", ALL)] + ([("this_site", site.site_id)] if site else [])
        parts, rows, csv_rows = [], [], []
        for name, sid in series:
            s = q[q["site_id"] == sid].sort_values("quarter")
            for _, r in s.iterrows():
                hidden = bool(r["suppressed"])
                parts.append(
                    {
                        "quarter": r["quarter"],
                        "series": name,
                        "rate": None if hidden else r["rate"],
                        "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"],
                    }
                )
                rows.append(
                    [
                        r["quarter"],
                        "Your site" if name == "this_site" else "Registry",
                        fmt.fraction(r["numerator"], r["denominator"], hidden),
                        fmt.rate_with_ci(r, hidden),
                    ]
                )
                csv_rows.append(
                    {
                        "quarter": r["quarter"],
                        "series": "your site" if name == "this_site" else "registry",
                        "numerator": r["numerator"],
                        "denominator": r["denominator"],
                        "rate": r["rate"],
                        "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"],
                    }
                )
        frame = pd.DataFrame(parts)
        frame["rate"] = pd.to_numeric(frame["rate"])
        for c in ("ci_low", "ci_high"):
            frame[c] = pd.to_numeric(frame[c])
        bench = all_time[(all_time["measure_id"] == mid) & (all_time["site_id"] == ALL)]["benchmark_value"]
        bm = None if bench.empty or fmt.missing(bench.iloc[0]) else float(bench.iloc[0])
        title = (
            f"{measure_label(cat, mid)}"
            + (f" ({den_type})" if den_type in ("PP", "ITT") else "")
            + " by quarter"
        )
        fig = F.trend_chart(
            frame,
            title,
            benchmark=bm,
            benchmark_label=f"Benchmark {mrow.get('bm_provenance_tag') or ''}".strip(),
        )
        table = TableView(
            ["Quarter", "Series", "n/N", "Rate (95% CI)"],
            rows,
            caption=title,
            note=SUPPRESSION_NOTE if not site else "Your site's own counts are shown in full.",
        )
        blocks.append(
            FigureBlock(f"fig-trend-{mid.lower()}", title, fig, table, pd.DataFrame(csv_rows), definition=mid)
        )
    return blocks


def _funnel_period(funnel: pd.DataFrame, ctx: EditionContext) -> pd.DataFrame:
    """The cumulative (all-time) funnel when there is one, else the latest period not after the edition."""
    if funnel.empty:
        return funnel
    if (funnel["period_type"] == "all_time").any():
        return funnel[funnel["period_type"] == "all_time"]
    starts = pd.to_datetime(funnel["period_start"]).dt.date
    ok = funnel[starts <= ctx.period.end]
    if ok.empty:
        return ok
    latest = pd.to_datetime(ok["period_start"]).max()
    return ok[pd.to_datetime(ok["period_start"]) == latest]


def funnel_blocks(
    ctx: EditionContext, cat: pd.DataFrame, *, site: SiteInfo | None, labels: dict[str, str], def_href: str
) -> list:
    """One funnel plot per key measure. Sites with hidden counts are not drawn (except this site in its own
    report). Tables list sites by name (system) or blinded label, never ranked by their rate."""
    data = ctx.data
    blocks = []
    funnel_all = data.read("funnel")
    curve_all = data.read("funnel_curve")
    keys = cat[cat["key_measure"] & (cat["statistic"].fillna("proportion") == "proportion")]["measure_id"]
    for mid in keys:
        fun = _funnel_period(funnel_all[funnel_all["measure_id"] == mid], ctx)
        if fun.empty:
            continue
        p_type, p_start = fun["period_type"].iloc[0], fun["period_start"].iloc[0]
        curve = curve_all[
            (curve_all["measure_id"] == mid)
            & (curve_all["period_type"] == p_type)
            & (curve_all["period_start"] == p_start)
        ]
        fun = fun[fun["site_id"] != ALL].copy()
        fun["denominator_type"] = "na"
        # Funnel points add up to the registry total (drawn as the target), so suppress as one line.
        total = pd.DataFrame(
            [
                {
                    "site_id": ALL,
                    "numerator": fun["numerator"].sum(),
                    "denominator": fun["denominator"].sum(),
                    "measure_id": mid,
                    "denominator_type": "na",
                    "period_type": p_type,
                    "period_start": p_start,
                }
            ]
        )
        sup = suppress_measure_rows(
            pd.concat([fun, total], ignore_index=True), own_site=site.site_id if site else None
        )
        sup = sup[sup["site_id"] != ALL].merge(
            fun[["site_id", "rate"]].rename(columns={"rate": "raw_rate"}), on="site_id"
        )
        shown = sup[~sup["suppressed"]].copy()
        shown["label"] = shown["site_id"].map(labels)
        highlight = labels.get(site.site_id) if site else None
        n_hidden = int(sup["suppressed"].sum())
        title = f"Funnel plot: {measure_label(cat, mid)}"
        fig = F.funnel_chart(
            curve, shown.assign(rate=shown["raw_rate"]), title, highlight=highlight, label_points=site is None
        )
        sup["label"] = sup["site_id"].map(labels)
        sup = sup.sort_values("label")
        rows = [
            [
                r["label"],
                fmt.fraction(r["numerator"], r["denominator"], bool(r["suppressed"])),
                fmt.pct(r["raw_rate"]) if not r["suppressed"] else HIDDEN,
                str(r["classification"]).replace("_", " ") if not r["suppressed"] else HIDDEN,
            ]
            for _, r in sup.iterrows()
        ]
        target_src = fun["target_source"].dropna()
        note = (
            f"Target = {'registry pooled rate' if target_src.empty or target_src.iloc[0] == 'registry' else 'literature benchmark'}; "
            f"limits from analytics.funnel_curve ({fun['method'].dropna().iloc[0] if fun['method'].notna().any() else 'exact'}, "
            f"over-dispersion: {fun['overdispersion'].dropna().iloc[0] if fun['overdispersion'].notna().any() else 'none'}). "
            "Sites are listed alphabetically by label, not ranked. "
        )
        if n_hidden:
            note += f"{n_hidden} site(s) not drawn because their counts are hidden. "
        csv = (
            sup.loc[:, ["label", "numerator", "denominator", "suppressed"]]
            .assign(
                rate=sup["raw_rate"].where(~sup["suppressed"]),
                classification=sup["classification"].where(~sup["suppressed"]),
            )
            .rename(columns={"label": "site" if site is None else "label"})
        )
        curve_csv = curve.loc[:, ["n", "target", "lower_95", "upper_95", "lower_998", "upper_998"]]
        table = TableView(
            ["Site" if site is None else "Site (blinded)", "n/N", "Rate", "Position vs limits"],
            rows,
            caption=title,
            note=note + SUPPRESSION_NOTE,
        )
        block = FigureBlock(
            f"fig-funnel-{mid.lower()}",
            title,
            fig,
            table,
            csv,
            definition=mid,
            description="Each point is a site; the funnel lines are the 95% and 99.8% control "
            "limits around the target. A point outside the 99.8% lines is unlikely to be chance.",
        )
        block.extra_csv = {f"fig-funnel-{mid.lower()}-limits.csv": curve_csv}  # type: ignore[attr-defined]
        blocks.append(block)
    return blocks


def _pivot_counts(
    frame: pd.DataFrame, index: str, columns: str, values: str, col_order: list[str] | None = None
) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame()
    pv = frame.pivot_table(index=index, columns=columns, values=values, aggfunc="sum", fill_value=0)
    pv = pv.sort_index()
    if col_order:
        pv = pv.reindex(
            columns=[c for c in col_order if c in pv.columns]
            + sorted(c for c in pv.columns if c not in col_order)
        )
    return pv


def counts_table(
    pv: pd.DataFrame,
    *,
    caption: str,
    index_label: str,
    suppress: bool,
    locked: pd.DataFrame | None = None,
    note: str = "",
) -> tuple[TableView, pd.DataFrame]:
    """A counts cross-table with row and column totals, suppressed for cross-site outputs."""
    if pv.empty:
        return TableView([index_label], [["no rows"]], caption=caption), pd.DataFrame()
    pv = pv.astype(float)
    if suppress:
        s = suppress_table(pv, locked=locked)
        hidden, row_h, col_h, grand_h = s.cells, s.row_totals, s.col_totals, s.grand_total
    else:
        hidden = pd.DataFrame(False, index=pv.index, columns=pv.columns)
        row_h = pd.Series(False, index=pv.index)
        col_h = pd.Series(False, index=pv.columns)
        grand_h = False
    cols = [str(c) for c in pv.columns]
    rows = []
    csv = pv.copy()
    csv["total"] = pv.sum(axis=1)
    for idx in pv.index:
        cells = [fmt.count(pv.at[idx, c]) if not hidden.at[idx, c] else HIDDEN for c in pv.columns]
        rows.append([str(idx), *cells, fmt.count(pv.loc[idx].sum()) if not row_h[idx] else HIDDEN])
        for c in pv.columns:
            if hidden.at[idx, c]:
                csv.at[idx, c] = None
        if row_h[idx]:
            csv.at[idx, "total"] = None
    totals = [fmt.count(pv[c].sum()) if not col_h[c] else HIDDEN for c in pv.columns]
    rows.append(["Total", *totals, fmt.count(pv.to_numpy().sum()) if not grand_h else HIDDEN])
    total_row = {c: (None if col_h[c] else pv[c].sum()) for c in pv.columns}
    total_row["total"] = None if grand_h else pv.to_numpy().sum()
    csv.loc["Total"] = total_row
    csv = csv.reset_index().rename(columns={"index": index_label, pv.index.name or "index": index_label})
    table = TableView(
        [index_label, *cols, "Total"],
        rows,
        caption=caption,
        note=(note + " " + (SUPPRESSION_NOTE if suppress else "")).strip(),
    )
    return table, csv


def ae_blocks(ctx: EditionContext, *, site: SiteInfo | None, labels: dict[str, str], def_href: str) -> list:
    """Adverse events by ASGE severity and type, and incidents separately (clinical-spec §2)."""
    ae = ctx.data.read("adverse_events", "period_type = 'all_time'")
    if ae.empty:
        return [TableView(["Note"], [["No adverse-event mart yet (marts.mart_adverse_events)."]])]
    scope = site.site_id if site else ALL
    suppress = site is None
    blocks: list = []
    events = ae[(ae["event_class"] == "adverse_event") & (ae["site_id"] == scope)]
    pv = _pivot_counts(events, "ae_type", "asge_severity", "n_events", F.SEVERITY_ORDER)
    table, csv = counts_table(
        pv,
        caption="Adverse events within 30 days by type and ASGE severity (events)",
        index_label="AE type",
        suppress=suppress,
    )
    shown = events.copy()
    if suppress and not pv.empty:
        s = suppress_table(pv.astype(float))
        hidden = {(i, c) for i in pv.index for c in pv.columns if s.cells.at[i, c]}
        shown = shown[[(r.ae_type, r.asge_severity) not in hidden for r in shown.itertuples()]]
    fig = F.stacked_bars(
        shown,
        "Adverse events by type and ASGE severity",
        x_col="ae_type",
        series_col="asge_severity",
        value_col="n_events",
        series_order=F.SEVERITY_ORDER,
        y_title="events",
    )
    blocks.append(
        FigureBlock(
            "fig-ae-type-severity",
            "Adverse events by type and severity",
            fig,
            table,
            csv,
            definition="P5",
            description="Events graded with the ASGE lexicon; a patient "
            "can have more than one event. Hidden cells are left out of the bars.",
        )
    )
    if site is None:
        per_site = ae[(ae["event_class"] == "adverse_event") & (ae["site_id"] != ALL)].copy()
        per_site["site"] = per_site["site_id"].map(labels)
        pv2 = _pivot_counts(per_site, "site", "asge_severity", "n_patients", F.SEVERITY_ORDER)
        t2, _ = counts_table(
            pv2,
            caption="Patients with an adverse event, by site and worst ASGE severity",
            index_label="Site",
            suppress=True,
        )
        blocks.append(t2)
    inc = ae[(ae["event_class"] == "incident") & (ae["site_id"] == scope)]
    pv3 = _pivot_counts(inc.assign(kind="incidents"), "ae_type", "kind", "n_events")
    t3, _ = counts_table(
        pv3,
        caption="Intraprocedural incidents (not counted as adverse events)",
        index_label="Incident type",
        suppress=suppress,
        note="Incidents such as capnoperitoneum or mucosotomy without an ASGE criterion "
        "are recorded separately (clinical-spec §2.4).",
    )
    blocks.append(t3)
    return blocks


def la_grade_block(ctx: EditionContext, *, site: SiteInfo | None, labels: dict[str, str]) -> list:
    la = ctx.data.read("la_grade", "period_type = 'all_time'")
    if la.empty:
        return []
    order = ["none", "A", "B", "C", "D"]
    if site is None:
        part = la[la["site_id"] != ALL].copy()
        part["site"] = part["site_id"].map(labels)
        pv = _pivot_counts(part, "site", "la_grade", "n_patients", order)
        table, csv = counts_table(
            pv,
            caption="Worst LA grade of esophagitis 3-12 months after POEM, by site (patients with an EGD)",
            index_label="Site",
            suppress=True,
        )
        reg = la[la["site_id"] == ALL]
    else:
        reg = la[la["site_id"].isin([site.site_id, ALL])].copy()
        reg["series"] = reg["site_id"].map({site.site_id: "Your site", ALL: "Registry"})
        pv = _pivot_counts(reg, "series", "la_grade", "n_patients", order)
        table, csv = counts_table(
            pv,
            caption="Worst LA grade of esophagitis 3-12 months after POEM",
            index_label="Series",
            suppress=False,
        )
        reg = la[la["site_id"] == site.site_id]
    pv_reg = _pivot_counts(reg.assign(s="patients"), "la_grade", "s", "n_patients")
    if site is None and not pv_reg.empty:
        s = suppress_table(pv_reg.astype(float), row_totals=False)
        keep = [g for g in pv_reg.index if not s.cells.at[g, "patients"]]
        reg = reg[reg["la_grade"].isin(keep)]
    fig = F.stacked_bars(
        reg.assign(series="patients"),
        "Worst LA grade 3-12 months after POEM",
        x_col="la_grade",
        series_col="series",
        value_col="n_patients",
        series_order=["patients"],
        y_title="patients",
    )
    return [
        FigureBlock(
            "fig-la-grade",
            "Esophagitis by LA grade",
            fig,
            table,
            csv,
            definition="P11",
            description="LA grade A is minor; grades B-D are conclusive evidence of reflux (Lyon 2.0).",
        )
    ]


def durability_blocks(ctx: EditionContext, *, site: SiteInfo | None, labels: dict[str, str]) -> list:
    km = ctx.data.read("km_curve")
    dur = ctx.data.read("durability")
    if km.empty and dur.empty:
        return [
            TableView(["Note"], [["No durability tables yet (analytics.km_curve, analytics.durability)."]])
        ]
    wanted = {ALL: "registry"} | ({site.site_id: "this_site"} if site else {})
    curves = km[km["site_id"].isin(wanted)].assign(series=lambda d: d["site_id"].map(wanted))
    curves = curves.loc[:, ["series", "time_days", "survival", "ci_low", "ci_high"]]
    fig = F.km_chart(curves, "Kaplan-Meier durability of clinical success")
    rows, csv_rows = [], []
    parts = dur[dur["site_id"] != ALL] if site is None else dur[dur["site_id"].isin(wanted)]
    parts = pd.concat([dur[dur["site_id"] == ALL], parts]).drop_duplicates()
    for _, r in parts.sort_values(["site_id", "years"]).iterrows():
        own = site is not None and r["site_id"] == site.site_id
        hidden = not own and (is_small(r["n"]) or is_small(r["events"]))
        name = "Registry" if r["site_id"] == ALL else "Your site" if own else labels.get(r["site_id"], "?")
        rows.append(
            [
                name,
                f"{int(r['years'])} y",
                fmt.count(r["n"]) if not hidden else HIDDEN,
                fmt.count(r["at_risk"]) if not hidden else HIDDEN,
                fmt.rate_with_ci(
                    {"rate": r["survival"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}, hidden
                ),
            ]
        )
        csv_rows.append(
            {
                "series": name,
                "years": r["years"],
                "n": None if hidden else r["n"],
                "at_risk": None if hidden else r["at_risk"],
                "survival": None if hidden else r["survival"],
                "ci_low": None if hidden else r["ci_low"],
                "ci_high": None if hidden else r["ci_high"],
            }
        )
    table = TableView(
        ["Series", "Time", "Patients", "At risk", "Still a success (95% CI)"],
        rows,
        caption="Kaplan-Meier estimate at 1, 2, 3 and 5 years",
        note="Failure = Eckardt > 3 or re-intervention, whichever is first; patients are censored "
        "at their last successful assessment. Benchmark (Li QL 2018 [V]): 94.2 / 92.2 / 91.1 / "
        "87.1% at 1 / 2 / 3 / 5 years. " + (SUPPRESSION_NOTE if site is None else ""),
    )
    return [
        FigureBlock(
            "fig-km",
            "Durability of clinical success",
            fig,
            table,
            pd.DataFrame(csv_rows),
            definition="P4",
            description="The curve shows the share of patients still a clinical "
            "success over time; the shaded band is the 95% Greenwood interval.",
        )
    ]


def subtype_block(ctx: EditionContext, cat: pd.DataFrame) -> list:
    pooled = ctx.data.read("pooled")
    pooled = pooled[pooled["stratum"] != ALL]
    if pooled.empty:
        return [TableView(["Note"], [["No pooled estimates by diagnosis yet (analytics.pooled)."]])]
    bm = ctx.data.read("benchmarks")
    bm = bm[bm["benchmark_key"].str.startswith(SUBTYPE_BENCHMARK_PREFIX, na=False)].copy()
    bm["stratum"] = bm["benchmark_key"].str.slice(len(SUBTYPE_BENCHMARK_PREFIX))
    rows, pts, bench, csv_rows = [], [], [], []
    for _, r in pooled.sort_values(["measure_id", "stratum"]).iterrows():
        hidden = is_small(r["events"]) or is_small(r["n_total"])
        label = f"{r['stratum']} ({r['measure_id']})"
        b = bm[bm["stratum"] == r["stratum"]]
        b_text = (
            f"{fmt.pct(b.iloc[0]['value'])} {b.iloc[0]['provenance_tag']} — {b.iloc[0]['citation']}"
            if not b.empty
            else "-"
        )
        rows.append(
            [
                label,
                fmt.count(r["k"]),
                fmt.fraction(r["events"], r["n_total"], hidden),
                fmt.rate_with_ci(
                    {"rate": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}, hidden
                ),
                fmt.interval(r["pi_low"], r["pi_high"]) if not hidden else HIDDEN,
                f"{fmt.number(r['i2'], 0)}%" if not fmt.missing(r["i2"]) else "-",
                b_text,
            ]
        )
        pts.append(
            {
                "label": label,
                "series": "registry",
                "rate": None if hidden else r["estimate"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
            }
        )
        bench.append({"label": label, "value": b.iloc[0]["value"] if not b.empty else None})
        csv_rows.append(
            {
                "measure_id": r["measure_id"],
                "stratum": r["stratum"],
                "k": r["k"],
                "events": None if hidden else r["events"],
                "n_total": None if hidden else r["n_total"],
                "estimate": None if hidden else r["estimate"],
                "ci_low": None if hidden else r["ci_low"],
                "ci_high": None if hidden else r["ci_high"],
                "pi_low": None if hidden else r["pi_low"],
                "pi_high": None if hidden else r["pi_high"],
                "tau2": r["tau2"],
                "i2": r["i2"],
                "model": r["model"],
                "benchmark": b.iloc[0]["value"] if not b.empty else None,
            }
        )
    model = pooled["model"].dropna()
    table = TableView(
        [
            "Diagnosis (measure)",
            "Sites (k)",
            "Events/N",
            "Pooled rate (95% CI)",
            "95% prediction interval",
            "I²",
            "Published rate (S4 and others)",
        ],
        rows,
        caption="Clinical success by diagnosis subtype, pooled across sites",
        note=f"Random-effects pooling ({model.iloc[0] if not model.empty else 'see analytics.pooled'}) "
        "of site rates; the prediction interval is where a new site's rate would be expected. "
        + PROVENANCE_NOTE
        + " "
        + SUPPRESSION_NOTE,
    )
    fig = F.rate_forest(
        pd.DataFrame(pts), "Clinical success by diagnosis subtype (pooled)", benchmark=pd.DataFrame(bench)
    )
    first = pooled["measure_id"].iloc[0]
    return [
        FigureBlock(
            "fig-subtype",
            "Outcomes by diagnosis subtype",
            fig,
            table,
            pd.DataFrame(csv_rows),
            definition=first,
        )
    ]


def cusum_params(lc: pd.DataFrame) -> str:
    r = lc.iloc[0]
    h1 = lc["bernoulli_h1"].dropna()
    text = (
        f"Bernoulli CUSUM p0={fmt.number(r['p0'])}, p1={fmt.number(r['p1'])}, α={fmt.number(r['alpha'])}, "
        f"β={fmt.number(r['beta'])}" + (f", h1={fmt.number(h1.iloc[0])}" if not h1.empty else "")
    )
    if lc["racusum"].notna().any():
        text += f"; RA-CUSUM odds ratio {fmt.number(r['odds_multiplier'])}, h={fmt.number(lc['racusum_h'].dropna().iloc[0]) if lc['racusum_h'].notna().any() else '-'}"
    return text


def learning_summary(ctx: EditionContext, labels: dict[str, str]) -> list:
    lc = ctx.data.read("learning_curve")
    if lc.empty:
        return [TableView(["Note"], [["No learning curves yet (analytics.learning_curve)."]])]
    rows = []
    for (sid, op), g in lc.groupby(["site_id", "operator_label"], sort=True):
        g = g.sort_values("case_number")
        n = len(g)
        signalled = g["signal"].dropna().astype(str)
        last_signal = signalled.iloc[-1] if not signalled.empty else "none"
        rows.append(
            [
                labels.get(sid, sid),
                str(op),
                fmt.count(n) if not is_small(n) else HIDDEN,
                fmt.number(g["bernoulli_cusum"].iloc[-1]),
                last_signal,
                cusum_params(g),
            ]
        )
    return [
        TableView(
            ["Site", "Operator", "Cases", "Current CUSUM", "Latest signal", "Parameters"],
            rows,
            caption="Operator learning curves (composite failure CUSUM)",
            note="Each site sees its own operators' charts in its site report. Operators are "
            "pseudonymous; operator experience is never a case-mix term. " + SUPPRESSION_NOTE,
        )
    ]


def learning_blocks(ctx: EditionContext, site: SiteInfo) -> list:
    lc = ctx.data.read("learning_curve", "site_id = ?", [site.site_id])
    if lc.empty:
        return [TableView(["Note"], [["No learning curves for your operators yet."]])]
    blocks: list = []
    for i, (op, g) in enumerate(lc.groupby("operator_label", sort=True)):
        params = cusum_params(g)
        fig = F.cusum_chart(g, f"{op}: learning curve", params)
        csv = g.loc[
            :,
            [
                "case_number",
                "composite_failure",
                "bernoulli_cusum",
                "bernoulli_h0",
                "bernoulli_h1",
                "racusum",
                "racusum_h",
                "procedure_minutes",
                "cusum_minutes",
                "signal",
            ],
        ]
        tail = g.sort_values("case_number").tail(10)
        rows = [
            [
                fmt.count(r["case_number"]),
                "yes" if r["composite_failure"] else "no",
                fmt.number(r["bernoulli_cusum"]),
                fmt.number(r["racusum"]),
                str(r["signal"] or ""),
            ]
            for _, r in tail.iterrows()
        ]
        table = TableView(
            ["Case", "Composite failure", "Bernoulli CUSUM", "RA-CUSUM", "Signal"],
            rows,
            caption=f"{op}: last 10 cases (all cases in the CSV)",
            note=params,
        )
        blocks.append(
            FigureBlock(
                f"fig-cusum-{i + 1}",
                f"{op} learning curve",
                fig,
                table,
                csv,
                definition="P14",
                description="The curve rises with each failure and falls "
                "with each success; crossing the upper limit signals a failure rate nearer "
                "p1 than p0.",
            )
        )
    return blocks


# --------------------------------------------------------------------------- pages


def _suppressed_measures(ctx: EditionContext, period_type: str, own_site: str | None = None) -> pd.DataFrame:
    return suppress_measure_rows(measures_for(ctx, period_type), own_site=own_site)


def _quarter_for_edition(quarterly: pd.DataFrame, ctx: EditionContext) -> pd.DataFrame:
    if ctx.period.kind != "quarter":
        return quarterly.iloc[0:0]
    return quarterly[pd.to_datetime(quarterly["period_start"]).dt.date == ctx.period.start]


def _trend_suppression(quarterly: pd.DataFrame, all_time: pd.DataFrame, own_site: str | None) -> pd.DataFrame:
    """Quarter values of one site add up to its all-time value when every quarter is shown: suppress them
    as one line per site and measure, on top of the per-quarter cross-site suppression."""
    out = quarterly.copy()
    for (mid, den, sid), g in out.groupby(["measure_id", "denominator_type", "site_id"], dropna=False):
        if sid == own_site:
            continue
        at = all_time[
            (all_time["measure_id"] == mid)
            & (all_time["denominator_type"] == den)
            & (all_time["site_id"] == sid)
        ]
        if at.empty or at.iloc[0]["suppressed"]:
            continue
        for col in ("numerator", "denominator"):
            vals = pd.to_numeric(g[col], errors="coerce")
            if vals.isna().any() or vals.sum() != at.iloc[0][col]:
                continue
            hidden = g["suppressed"].astype(bool)
            n_hidden = int(hidden.sum())
            hidden_sum = vals[hidden].sum()
            if n_hidden == 1 or (n_hidden > 1 and 1 <= hidden_sum < SMALL_CELL_MIN):
                candidates = vals[~hidden & (vals > 0)].sort_values(kind="mergesort")
                for idx in candidates.index:
                    hidden[idx] = True
                    if not 1 <= vals[hidden].sum() < SMALL_CELL_MIN:
                        break
                out.loc[hidden[hidden].index, "suppressed"] = True
    for col in ("numerator", "denominator", "rate", "ci_low", "ci_high"):
        out[col] = out[col].astype(object).where(~out["suppressed"].astype(bool), None)
    return out


def system_page(ctx: EditionContext) -> Page:
    cat = catalog(ctx.data)
    labels = ctx.site_names
    all_time = _suppressed_measures(ctx, "all_time")
    quarterly = _trend_suppression(_suppressed_measures(ctx, "quarter"), all_time, None)
    this_q = _quarter_for_edition(quarterly, ctx)
    d = "../definitions/index.html"
    sections = [
        Section(
            "headline",
            "Headline measures against the literature",
            "The registry's value for each key measure over all index POEMs to the data-as-of date, its "
            "95% interval, this period's value, and the published benchmark for the same definition.",
            headline_block(ctx, cat, all_time, this_q, site=None, def_href=d),
        ),
        Section(
            "trends",
            "Trends by quarter",
            "How each key measure moved quarter by quarter (procedures done in that quarter). Outcome "
            "measures for recent quarters fill in as follow-up windows close.",
            trend_blocks(ctx, cat, quarterly, all_time, site=None, def_href=d),
        ),
        Section(
            "funnels",
            "Comparing sites: funnel plots",
            "Each site's rate against its number of patients, with 95% and 99.8% control limits around the "
            "target. Sites inside the funnel differ from the target no more than chance allows. Sites are "
            "not ranked: a league table would exaggerate differences between small sites.",
            funnel_blocks(ctx, cat, site=None, labels=labels, def_href=d),
        ),
        Section(
            "adverse-events",
            "Adverse events and incidents",
            "Adverse events within 30 days graded with the ASGE lexicon (mild, moderate, severe, fatal); "
            "intraprocedural incidents are shown separately because they are not adverse events unless "
            "they change management.",
            [
                b
                for b in [
                    measure_table(
                        cat,
                        all_time,
                        ("P5", "P6M", "P6S", "P7"),
                        fig_id="fig-ae-rates",
                        title="Adverse-event rates",
                        site=None,
                        def_href=d,
                    )
                ]
                if b
            ]
            + ae_blocks(ctx, site=None, labels=labels, def_href=d),
        ),
        Section(
            "reflux",
            "Reflux after POEM",
            "Reflux is reported as separate measures because they disagree often: objective acid exposure "
            "(pH study off PPI), esophagitis by LA grade at endoscopy, symptoms (GerdQ) and PPI use.",
            [
                b
                for b in [
                    measure_table(
                        cat,
                        all_time,
                        REFLUX_MEASURES,
                        fig_id="fig-reflux",
                        title="Reflux measures 3-12 months after POEM",
                        site=None,
                        def_href=d,
                    )
                ]
                if b
            ]
            + la_grade_block(ctx, site=None, labels=labels),
        ),
        Section(
            "subtypes",
            "Outcomes by diagnosis subtype",
            "Clinical success pooled across sites for each Chicago Classification subtype, next to the "
            "published subtype rates (Khan 2017 meta-analysis, S4).",
            subtype_block(ctx, cat),
        ),
        Section(
            "durability",
            "Durability (Kaplan-Meier)",
            "How long clinical success lasts after POEM, counting everyone from their index POEM.",
            durability_blocks(ctx, site=None, labels=labels),
        ),
        Section(
            "learning",
            "Operator learning curves",
            "A summary of each operator's CUSUM chart; the charts themselves are in each site's report.",
            learning_summary(ctx, labels),
        ),
        Section(
            "followup",
            "Follow-up completeness",
            "The share of patients whose follow-up window has closed who were actually assessed in it. "
            "Low completeness makes per-protocol success rates optimistic.",
            [
                b
                for b in [
                    measure_table(
                        cat,
                        all_time,
                        FOLLOWUP_MEASURES,
                        fig_id="fig-followup",
                        title="Follow-up completeness",
                        site=None,
                        def_href=d,
                    )
                ]
                if b
            ],
        ),
        Section(
            "data-quality",
            "Data quality",
            "Failing checks and open quarantines per site; details and "
            'what to fix are in the <a href="../quality/index.html">data-quality report</a>.',
            [dq_summary_table(ctx)],
        ),
    ]
    return Page(
        "system",
        "System quality report",
        "The registry's quality report for the steering group: every site is named. Numbers come from "
        "the warehouse marts as of the date above; counts from 1 to 10 are hidden even here, so pages "
        "can be shared inside the registry. Click a measure name for its definition.",
        sections,
        warnings=list(ctx.warnings),
    )


def dq_summary_table(ctx: EditionContext) -> TableView:
    from poem_registry.reports import dq

    latest = dq.latest_checks(ctx.data)
    quarantines = dq.open_quarantines(ctx.data)
    rows = []
    for s in sorted(ctx.sites, key=lambda s: s.name):
        card = dq.site_scorecard(ctx.data, latest, s.site_id)
        summ = dq.score_summary(card)
        rows.append(
            [
                s.name,
                summ["score"],
                str(summ["failed"]),
                str(summ["not_applicable"]),
                str(int((quarantines["site_id"] == s.site_id).sum()) if not quarantines.empty else 0),
            ]
        )
    return TableView(
        ["Site", "Checks passed", "Checks failing", "Not applicable", "Open quarantines"],
        rows,
        caption="Data quality per site (latest result of every check)",
    )


def site_page(ctx: EditionContext, site: SiteInfo) -> Page:
    """A site's own report: its numbers in full, the registry, and peers under blinded labels only."""
    cat = catalog(ctx.data)
    blinded = peer_labels([s.site_id for s in ctx.sites], ctx.edition_id)
    labels = {sid: lab for sid, lab in blinded.items() if sid != site.site_id} | {site.site_id: "Your site"}
    me = site.site_id
    all_time = _suppressed_measures(ctx, "all_time", own_site=me)
    quarterly = _trend_suppression(_suppressed_measures(ctx, "quarter", own_site=me), all_time, me)
    this_q = _quarter_for_edition(quarterly, ctx)
    d = ""
    peers = peer_table(cat, all_time, labels, me)
    from poem_registry.reports import dq

    latest = dq.latest_checks(ctx.data)
    card = dq.site_scorecard(ctx.data, latest, me)
    summ = dq.score_summary(card)
    sections = [
        Section(
            "headline",
            "Your site against the registry and the literature",
            "Your site's value for each key measure (all your index POEMs to the data-as-of date) next to "
            "the whole registry and the published benchmark. Your own counts are shown in full.",
            headline_block(ctx, cat, all_time, this_q, site=site, def_href=d),
        ),
        Section(
            "peers",
            "Your site among blinded peers",
            "Other sites are shown only as Peer A, B, C...; the letters change with each edition. Their "
            "small counts are hidden.",
            [peers],
        ),
        Section(
            "funnels",
            "Funnel plots",
            "Your site is the star; the grey points are other sites, unlabelled.",
            funnel_blocks(ctx, cat, site=site, labels=labels, def_href=d),
        ),
        Section(
            "trends",
            "Your trends by quarter",
            "Your site and the registry, quarter by quarter.",
            trend_blocks(ctx, cat, quarterly, all_time, site=site, def_href=d),
        ),
        Section(
            "adverse-events",
            "Adverse events and incidents at your site",
            "",
            [
                b
                for b in [
                    measure_table(
                        cat,
                        all_time,
                        ("P5", "P6M", "P6S", "P7"),
                        fig_id="fig-ae-rates",
                        title="Adverse-event rates",
                        site=site,
                        def_href=d,
                    )
                ]
                if b
            ]
            + ae_blocks(ctx, site=site, labels=labels, def_href=d),
        ),
        Section(
            "reflux",
            "Reflux after POEM",
            "",
            [
                b
                for b in [
                    measure_table(
                        cat,
                        all_time,
                        REFLUX_MEASURES,
                        fig_id="fig-reflux",
                        title="Reflux measures 3-12 months after POEM",
                        site=site,
                        def_href=d,
                    )
                ]
                if b
            ]
            + la_grade_block(ctx, site=site, labels=labels),
        ),
        Section(
            "durability", "Durability (Kaplan-Meier)", "", durability_blocks(ctx, site=site, labels=labels)
        ),
        Section(
            "learning",
            "Your operators' learning curves",
            "One chart per operator (pseudonymous labels). The parameters of each chart are printed on it.",
            learning_blocks(ctx, site),
        ),
        Section(
            "followup",
            "Follow-up completeness",
            "",
            [
                b
                for b in [
                    measure_table(
                        cat,
                        all_time,
                        FOLLOWUP_MEASURES,
                        fig_id="fig-followup",
                        title="Follow-up completeness",
                        site=site,
                        def_href=d,
                    )
                ]
                if b
            ],
        ),
        Section(
            "data-quality",
            "Your data-quality scorecard",
            f"{summ['score']} of applicable checks pass ({summ['failed']} failing). Failing checks are "
            "listed first with what to fix.",
            [
                dq.scorecard_table(card, "Checks on your deliveries and marts"),
                dq.quarantine_table(dq.open_quarantines(ctx.data, me), show_site=False),
            ],
        ),
        Section(
            "definitions",
            "Measure definitions",
            "How each measure is counted.",
            [definitions_table(cat, anchors=True)],
        ),
    ]
    warnings = warnings_for_site(ctx, site)
    if summ["failed"]:
        warnings.append(
            f"{summ['failed']} data-quality check(s) failing for your site: some numbers may change "
            "once the data are fixed (see the scorecard)."
        )
    return Page(
        f"sites/{me}",
        f"Site report: {site.name}",
        f"This report is for {site.name}. It compares your site with the registry and with other "
        "sites, which are blinded. Share it inside your own team only.",
        sections,
        warnings=warnings,
        depth=2,
        definitions_href="",
        nav=False,
    )


def peer_table(cat: pd.DataFrame, all_time: pd.DataFrame, labels: dict[str, str], own: str) -> TableView:
    keys = cat[cat["key_measure"] & (cat["statistic"].fillna("proportion") == "proportion")][
        "measure_id"
    ].tolist()
    cols, col_keys = ["Site"], []
    for mid in keys:
        dens = sorted(all_time.loc[all_time["measure_id"] == mid, "denominator_type"].dropna().unique())
        for den in dens:
            cols.append(mid + (f" ({den})" if den in ("PP", "ITT") else ""))
            col_keys.append((mid, den))
    order = ["Your site", *sorted(v for k, v in labels.items() if k != own)]
    by_label = {v: k for k, v in labels.items()}
    rows = []
    for lab in order:
        sid = by_label[lab]
        row = [lab]
        for mid, den in col_keys:
            r = all_time[
                (all_time["measure_id"] == mid)
                & (all_time["denominator_type"] == den)
                & (all_time["site_id"] == sid)
            ]
            if r.empty:
                row.append("-")
                continue
            r0 = r.iloc[0]
            hidden = bool(r0["suppressed"])
            row.append(
                HIDDEN
                if hidden
                else f"{fmt.pct(r0['rate'])} ({fmt.fraction(r0['numerator'], r0['denominator'])})"
            )
        rows.append(row)
    return TableView(
        cols,
        rows,
        caption="Key measures: your site and blinded peers (all time)",
        note="Rows are in label order, not ranked. " + SUPPRESSION_NOTE,
    )


def definitions_table(cat: pd.DataFrame, anchors: bool = True) -> TableView:
    rows = []
    for _, r in cat.iterrows():
        bm = "-"
        if not fmt.missing(r.get("bm_value")):
            bm = f"{fmt.pct(r['bm_value'])} {r.get('bm_provenance_tag') or ''} — {r.get('bm_citation') or ''}"
        rows.append(
            [
                f"{r['measure_id']}",
                str(r["name"]),
                str(r["numerator"] or ""),
                str(r["denominator"] or ""),
                "" if fmt.missing(r["exclusions"]) else str(r["exclusions"]),
                str(r["interval_method"] or ""),
                str(r["definition_source"] or ""),
                bm,
            ]
        )
    t = TableView(
        ["ID", "Measure", "Numerator", "Denominator", "Exclusions", "Interval", "Source", "Benchmark"],
        rows,
        caption="Measure definitions (seed measure_catalog)",
        note=PROVENANCE_NOTE,
    )
    t.anchor_prefix = "def-" if anchors else ""  # type: ignore[attr-defined]
    return t


def definitions_page(ctx: EditionContext) -> Page:
    cat = catalog(ctx.data)
    intro = (
        "Every measure in these reports, with exactly what is counted above and below the line, what is "
        "left out, how its interval is computed and where the definition comes from. Charts link here. "
        "Interval methods: Wilson score (default), Clopper-Pearson exact for rare events, Greenwood for "
        "Kaplan-Meier. PP = per protocol (patients assessed in the window); ITT = intention to treat "
        "(everyone eligible, missing counted as failure)."
    )
    return Page(
        "definitions",
        "Measure definitions",
        intro,
        [Section("definitions", "Definitions", "", [definitions_table(cat)])],
    )


def quality_page(ctx: EditionContext, data_docs_href: str | None, data_docs_note: str) -> Page:
    from poem_registry.reports import dq

    latest = dq.latest_checks(ctx.data)
    cadence = {s.site_id: s.cadence_days for s in ctx.sites}
    fresh = dq.freshness(ctx.data, [s.site_id for s in ctx.sites], ctx.as_of, cadence)
    names = ctx.site_names
    fresh_rows = [
        [
            names.get(r["site_id"], r["site_id"]),
            r["last_delivery"] or "never",
            "-" if pd.isna(r["days_since"]) else str(int(r["days_since"])),
            str(r["expected_every_days"]),
            "LATE" if r["late"] else "on time",
        ]
        for _, r in fresh.sort_values("site_id").iterrows()
    ]
    changes = dq.failure_changes(latest)
    change_rows = [
        [
            str(r["change"]),
            names.get(r["site_id"], r["site_id"]) or "(all sites)",
            str(r["stage"]),
            str(r["check_name"]),
            str(r["column_name"]),
            str(r["status"]),
            str(r["previous_status"] or "-"),
            "" if fmt.missing(r["message"]) else str(r["message"]),
        ]
        for _, r in changes.iterrows()
    ]
    score_blocks: list = []
    for s in sorted(ctx.sites, key=lambda s: s.name):
        card = dq.site_scorecard(ctx.data, latest, s.site_id)
        summ = dq.score_summary(card)
        score_blocks.append(
            dq.scorecard_table(
                card,
                f"{s.name}: {summ['score']} of applicable checks pass, {summ['failed']} failing, "
                f"{summ['not_applicable']} not applicable",
            )
        )
    docs = (
        f'<a href="{data_docs_href}">Great Expectations Data Docs</a> show every expectation and its result.'
        if data_docs_href
        else data_docs_note
    )
    sections = [
        Section(
            "freshness",
            "Freshness of deliveries",
            "When each site last delivered data that was loaded, against its expected cadence.",
            [
                TableView(
                    ["Site", "Last loaded delivery", "Days before as-of", "Expected every (days)", "Status"],
                    fresh_rows,
                    caption="Delivery freshness",
                )
            ],
        ),
        Section(
            "quarantines",
            "Open quarantines",
            "Deliveries that failed a critical check and were not loaded.",
            [dq.quarantine_table(dq.open_quarantines(ctx.data), show_site=True)],
        ),
        Section(
            "changes",
            "New, persisting and resolved failures",
            "Each check's latest result compared with its previous result.",
            [
                TableView(
                    ["Change", "Site", "Stage", "Check", "Column", "Now", "Before", "Message"],
                    change_rows or [["no failing checks", "", "", "", "", "", "", ""]],
                    caption="Failure changes since the previous run",
                )
            ],
        ),
        Section(
            "scorecards",
            "Scorecards per site",
            "All checks for each site, failing checks first.",
            score_blocks,
        ),
        Section("data-docs", "Great Expectations Data Docs", docs, []),
    ]
    return Page(
        "quality",
        "Data-quality report",
        "What the quality gates found: whether sites deliver on time, what is quarantined, which checks "
        "fail and what to fix. Internal to the registry team.",
        sections,
        warnings=list(ctx.warnings),
    )


def headline_summary(ctx: EditionContext) -> list[dict]:
    """Registry-wide key measures (suppressed as published) for edition.json, the index and e-mails."""
    cat = catalog(ctx.data)
    m = _suppressed_measures(ctx, "all_time")
    out = []
    for mid in cat.loc[cat["key_measure"], "measure_id"]:
        for _, r in (
            m[(m["measure_id"] == mid) & (m["site_id"] == ALL)].sort_values("denominator_type").iterrows()
        ):
            out.append(
                {
                    "measure_id": mid,
                    "name": measure_label(cat, mid),
                    "denominator_type": r["denominator_type"],
                    "numerator": None if fmt.missing(r["numerator"]) else int(r["numerator"]),
                    "denominator": None if fmt.missing(r["denominator"]) else int(r["denominator"]),
                    "rate": None if fmt.missing(r["rate"]) else round(float(r["rate"]), 6),
                }
            )
    return out
