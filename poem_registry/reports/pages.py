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

import numpy as np
import pandas as pd

from poem_registry.reports import figures as F
from poem_registry.reports import format as fmt
from poem_registry.reports.blinding import peer_labels
from poem_registry.reports.data import SUBTYPE_BENCHMARK_PREFIX, ReportData
from poem_registry.reports.figures import FigureBlock, TableView
from poem_registry.reports.measures_export import measure_suppression, suppressed_measures
from poem_registry.reports.periods import Period
from poem_registry.reports.suppression import (
    HIDDEN,
    SMALL_CELL_MIN,
    is_small,
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
    """Measure catalogue with the benchmark row (value, citation, provenance tag) joined on (once per edition)."""
    return data.memo(("catalog",), lambda: _catalog(data)).copy()


def _catalog(data: ReportData) -> pd.DataFrame:
    cat = data.read("measure_catalog")
    bm = data.read("benchmarks")
    out = cat.merge(bm.add_prefix("bm_"), left_on="benchmark_key", right_on="bm_benchmark_key", how="left")
    out["key_measure"] = out["key_measure"].map(_as_bool).astype(bool)
    return out.sort_values("measure_id", key=_measure_sort_key).reset_index(drop=True)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "t", "1", "yes")
    return bool(value) if not fmt.missing(value) else False


def key_measures(cat: pd.DataFrame) -> pd.DataFrame:
    """Key proportion measures (funnels, trends, headline)."""
    return cat[cat["key_measure"] & (cat["statistic"].fillna("proportion") == "proportion")]


def by_measure(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rows per measure_id (one groupby instead of a boolean filter per measure)."""
    return {str(k): g for k, g in frame.groupby("measure_id", sort=False)}


def _empty_like(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[0:0]


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
    """Measure rows of one period type (quarters and years up to the edition's end); one query per edition."""
    m = ctx.data.read("measures", "period_type = ?", [period_type])
    if period_type in ("quarter", "year"):
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
    this_quarter: tuple[pd.DataFrame, str],
    *,
    site: SiteInfo | None,
    def_href: str,
) -> list:
    """Key measures: value, interval, benchmark with citation (and this site's value in a site report)."""
    quarter, quarter_label = this_quarter
    keys = key_measures(cat)
    rows, links, csv_rows, points, bench = [], [], [], [], []
    m_by, q_by = by_measure(measures), by_measure(quarter)
    for _, mrow in keys.iterrows():
        mid = mrow["measure_id"]
        sub = m_by.get(mid, _empty_like(measures))
        q_mid = q_by.get(mid, _empty_like(quarter))
        for den_type in sorted(sub["denominator_type"].dropna().unique().tolist()) or ["na"]:
            one = sub[sub["denominator_type"] == den_type]
            reg = one[one["site_id"] == ALL]
            if reg.empty:
                continue
            r = reg.iloc[0].to_dict() | {"bm_provenance_tag": mrow.get("bm_provenance_tag")}
            label = f"{mid} {mrow['name']}" + (f" ({den_type})" if den_type in ("PP", "ITT") else "")
            if site is None:
                label += f" [{fmt.fraction(r['numerator'], r['denominator'], bool(r['suppressed']))}]"
            q = q_mid[
                (q_mid["denominator_type"] == den_type)
                & (q_mid["site_id"] == (site.site_id if site else ALL))
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
                    label += f" [you {fmt.fraction(m0['numerator'], m0['denominator'])}]"
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
        f"This period ({quarter_label})"
        if quarter_label == ctx.period.label
        else f"Latest quarter ({quarter_label})",
        "Literature benchmark",
    ]
    table = TableView(
        columns,
        rows,
        caption="Key measures, all index POEMs up to the data-as-of date",
        note=PROVENANCE_NOTE
        + (
            ""
            if quarter_label == ctx.period.label
            else f" No index POEMs in {ctx.period.label} yet: the quarter column shows {quarter_label}, the "
            "latest quarter with data."
        ),
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
            description="Each dot is a rate with its 95% interval; [n/N] is the numerator over the "
            "denominator. The open diamond is the published benchmark for the same definition.",
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
    m_by = by_measure(measures[measures["measure_id"].isin(ids)])
    for mid in ids:
        sub = m_by.get(mid, _empty_like(measures))
        if sub.empty:
            continue
        for den_type in sorted(sub["denominator_type"].dropna().unique().tolist()):
            one = sub[sub["denominator_type"] == den_type]
            label = measure_label(cat, mid) + (f" ({den_type})" if den_type in ("PP", "ITT") else "")
            frac_of = site.site_id if site else ALL
            mine = one[one["site_id"] == frac_of]
            if not mine.empty:
                m0 = mine.iloc[0]
                label += f" [{fmt.fraction(m0['numerator'], m0['denominator'], bool(m0['suppressed']))}]"
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
    table = TableView(
        columns,
        rows,
        caption=title,
        note=PROVENANCE_NOTE + (" " + SUPPRESSION_NOTE if site is None else ""),
        link_column=0,
        links=links,
    )
    pts_frame = pd.DataFrame(pts, columns=["label", "series", "rate", "ci_low", "ci_high"])
    fig = F.rate_forest(pts_frame, title, benchmark=pd.DataFrame(bench, columns=["label", "value"]))
    n_hidden = int(pts_frame["rate"].isna().sum())
    if n_hidden:
        description = (
            description + f" {n_hidden} value(s) not drawn: their counts are hidden (fewer than "
            f"{SMALL_CELL_MIN}); see the table."
        ).strip()
    return FigureBlock(
        fig_id, title, fig, table, pd.DataFrame(csv_rows), definition=ids[0], description=description
    )


def _period_label(start, period_type: str) -> str:
    d = pd.Timestamp(start)
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}" if period_type == "quarter" else str(d.year)


def trend_blocks(
    ctx: EditionContext,
    cat: pd.DataFrame,
    quarterly: pd.DataFrame,
    yearly: pd.DataFrame,
    all_time: pd.DataFrame,
    *,
    site: SiteInfo | None,
    def_href: str,
) -> list:
    """Rate per quarter for each key measure (registry; and this site in its own report).

    A measure whose registry values are hidden in more than a third of the quarters (rare events such as
    severe adverse events) is shown by year instead, so the chart has points to draw.
    """
    blocks = []
    keys = key_measures(cat)
    own = site.site_id if site else ALL
    q_by, y_by, a_by = by_measure(quarterly), by_measure(yearly), by_measure(all_time)
    for _, mrow in keys.iterrows():
        mid = mrow["measure_id"]
        q = q_by.get(mid, _empty_like(quarterly))
        if q.empty:
            continue
        den_type = "PP" if "PP" in set(q["denominator_type"]) else sorted(q["denominator_type"].dropna())[0]
        period_type, frame = "quarter", q[q["denominator_type"] == den_type]
        reg = frame[frame["site_id"] == own]
        if len(reg) and reg["suppressed"].astype(bool).mean() > 1 / 3:
            y = y_by.get(mid, _empty_like(yearly))
            y = y[y["denominator_type"] == den_type]
            if not y.empty:
                period_type, frame = "year", y
        frame = frame.assign(quarter=[_period_label(v, period_type) for v in frame["period_start"]])
        series = [("registry", ALL)] + ([("this_site", site.site_id)] if site else [])
        parts, rows, csv_rows = [], [], []
        n_hidden = 0
        for name, sid in series:
            part = frame[frame["site_id"] == sid].sort_values("quarter")
            for r in part.itertuples(index=False):
                hidden = bool(r.suppressed)
                n_hidden += hidden
                parts.append(
                    {
                        "quarter": r.quarter,
                        "series": name,
                        "rate": None if hidden else r.rate,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                    }
                )
                rows.append(
                    [
                        r.quarter,
                        "Your site" if name == "this_site" else "Registry",
                        fmt.fraction(r.numerator, r.denominator, hidden),
                        fmt.rate_with_ci({"rate": r.rate, "ci_low": r.ci_low, "ci_high": r.ci_high}, hidden),
                    ]
                )
                csv_rows.append(
                    {
                        period_type: r.quarter,
                        "series": "your site" if name == "this_site" else "registry",
                        "numerator": r.numerator,
                        "denominator": r.denominator,
                        "rate": r.rate,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                    }
                )
        chart = pd.DataFrame(parts, columns=["quarter", "series", "rate", "ci_low", "ci_high"])
        for c in ("rate", "ci_low", "ci_high"):
            chart[c] = pd.to_numeric(chart[c], errors="coerce")
        a_mid = a_by.get(mid, _empty_like(all_time))
        bench = a_mid[a_mid["site_id"] == ALL]["benchmark_value"]
        bm = None if bench.empty or fmt.missing(bench.iloc[0]) else float(bench.iloc[0])
        by = "quarter" if period_type == "quarter" else "year"
        title = (
            f"{measure_label(cat, mid)}"
            + (f" ({den_type})" if den_type in ("PP", "ITT") else "")
            + f" by {by}"
        )
        fig = F.trend_chart(
            chart,
            title,
            benchmark=bm,
            benchmark_label=f"Benchmark {mrow.get('bm_provenance_tag') or ''}".strip(),
        )
        note = (
            SUPPRESSION_NOTE if not site else "Your site's own counts are shown in full. " + SUPPRESSION_NOTE
        )
        description = f"Procedures grouped by the {by} they were done in; bars are 95% Wilson intervals."
        if period_type == "year":
            description += " Shown by year because most quarters have fewer than 11 events."
        if n_hidden:
            description += f" {n_hidden} point(s) not drawn: their counts are hidden (see the table)."
        table = TableView([by.capitalize(), "Series", "n/N", "Rate (95% CI)"], rows, caption=title, note=note)
        blocks.append(
            FigureBlock(
                f"fig-trend-{mid.lower()}",
                title,
                fig,
                table,
                pd.DataFrame(csv_rows),
                definition=mid,
                description=description,
            )
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


CLASSIFICATION_TEXT = {
    "within": "inside the 95% limits",
    "above_95": "above the 95% limit",
    "below_95": "below the 95% limit",
    "above_998": "above the 99.8% limit",
    "below_998": "below the 99.8% limit",
}


def _classification_text(value) -> str:
    if fmt.missing(value):
        return "-"
    return CLASSIFICATION_TEXT.get(str(value), str(value).replace("_", " "))


def _funnel_parts(
    data: ReportData,
) -> tuple[dict[str, pd.DataFrame], dict[tuple, pd.DataFrame], pd.DataFrame]:
    """analytics.funnel rows per measure and analytics.funnel_curve rows per funnel; once per edition."""
    funnel_all = data.read("funnel")
    curve_all = data.read("funnel_curve")
    funnels = {str(k): g for k, g in funnel_all.groupby("measure_id", sort=False)}
    curves = dict(tuple(curve_all.groupby(["measure_id", "denominator_type", "period_type", "period_start"])))
    return funnels, curves, curve_all.iloc[0:0]


def funnel_blocks(
    ctx: EditionContext,
    cat: pd.DataFrame,
    *,
    site: SiteInfo | None,
    labels: dict[str, str],
    def_href: str,
    point_labels: dict[str, str] | None = None,
) -> list:
    """One funnel plot per key measure (analytics.funnel, all-time period). Sites whose counts are hidden
    in the measures (same suppression as every other cross-site number) are not drawn, except this site
    in its own report. Tables list sites by name (system) or blinded label, never ranked by their rate."""
    data = ctx.data
    blocks = []
    if not data.size("funnel"):
        return [
            TableView(["Note"], [["No funnel statistics yet (analytics.funnel): run the statistics step."]])
        ]
    funnels, curves, empty_curve = data.memo(("funnel_parts",), lambda: _funnel_parts(data))
    own = site.site_id if site else None
    shown_measures = _suppressed_measures(ctx, "all_time", own)
    flags = dict(
        zip(
            zip(
                shown_measures["measure_id"],
                shown_measures["denominator_type"],
                shown_measures["site_id"],
                strict=True,
            ),
            shown_measures["suppressed"].astype(bool),
            strict=True,
        )
    )
    for mid in key_measures(cat)["measure_id"]:
        fun = _funnel_period(funnels[mid], ctx) if mid in funnels else None
        if fun is None or fun.empty:
            continue
        den_type = sorted(fun["denominator_type"].dropna().unique().tolist(), key=lambda d: d != "PP")[0]
        fun = fun[(fun["denominator_type"] == den_type) & (fun["site_id"] != ALL)].copy()
        p_type, p_start = fun["period_type"].iloc[0], fun["period_start"].iloc[0]
        curve = curves.get((mid, den_type, p_type, p_start), empty_curve)
        fun["suppressed"] = [
            flags.get((mid, den_type, sid), is_small(n) or is_small(d)) and sid != own
            for sid, n, d in zip(fun["site_id"], fun["numerator"], fun["denominator"], strict=True)
        ]
        fun["label"] = fun["site_id"].map(labels)
        fun["point_label"] = fun["site_id"].map(point_labels or labels)
        shown = fun[~fun["suppressed"]]
        highlight = labels.get(site.site_id) if site else None
        n_hidden = int(fun["suppressed"].sum())
        den_text = f" ({den_type})" if den_type in ("PP", "ITT") else ""
        title = f"Funnel plot: {measure_label(cat, mid)}{den_text}"
        fig = F.funnel_chart(
            curve,
            shown.assign(label=shown["point_label"] if site is None else shown["label"]),
            title,
            highlight=highlight,
            label_points=site is None,
        )
        fun = fun.sort_values("label")
        rows = [
            [
                r.label,
                fmt.fraction(r.numerator, r.denominator, r.suppressed),
                fmt.pct(r.rate) if not r.suppressed else HIDDEN,
                _classification_text(r.classification) if not r.suppressed else HIDDEN,
            ]
            for r in fun.itertuples(index=False)
        ]
        method = fun["method"].dropna()
        od = fun["overdispersion"].dropna()
        target = fun["target"].dropna()
        period_text = (
            "all index POEMs to the data-as-of date" if p_type == "all_time" else f"{p_type} from {p_start}"
        )
        note = (
            f"Target = registry pooled rate{' ' + fmt.pct(target.iloc[0]) if not target.empty else ''} "
            f"({period_text}); limits from analytics.funnel_curve "
            f"(method {method.iloc[0] if not method.empty else 'exact'}, over-dispersion "
            f"{od.iloc[0] if not od.empty else 'none'}). Sites are listed alphabetically, not ranked. "
        )
        if n_hidden:
            note += f"{n_hidden} site(s) not drawn because their counts are hidden. "
        hide = fun["suppressed"].to_numpy()
        csv = pd.DataFrame(
            {
                "site" if site is None else "label": fun["label"].to_numpy(),
                "numerator": fun["numerator"].astype(object).where(~hide, None).to_numpy(),
                "denominator": fun["denominator"].astype(object).where(~hide, None).to_numpy(),
                "suppressed": hide,
                "rate": fun["rate"].astype(object).where(~hide, None).to_numpy(),
                "classification": fun["classification"].astype(object).where(~hide, None).to_numpy(),
            }
        )
        curve_csv = curve.loc[:, ["n", "target", "lower_95", "upper_95", "lower_998", "upper_998"]]
        table = TableView(
            ["Site" if site is None else "Site (blinded)", "n/N", "Rate", "Position vs control limits"],
            rows,
            caption=title,
            note=note + SUPPRESSION_NOTE,
        )
        description = (
            "Each point is a site; the funnel lines are the 95% and 99.8% control limits around the target. "
            "A point outside the 99.8% lines is unlikely to be chance."
        )
        if n_hidden:
            description += f" {n_hidden} site(s) with hidden counts are not drawn."
        block = FigureBlock(
            f"fig-funnel-{mid.lower()}", title, fig, table, csv, definition=mid, description=description
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
    """Adverse events by ASGE severity and type, and incidents separately (clinical-spec §2).

    From marts.mart_adverse_events (all-time rows): ``ae_type = 'all'`` rows count each patient once under
    the worst severity of their events; the other rows break events down by type.
    """
    ae = ctx.data.read("adverse_events", "period_type = 'all_time'")
    if ae.empty:
        return [TableView(["Note"], [["No adverse-event mart yet (marts.mart_adverse_events)."]])]
    scope = site.site_id if site else ALL
    suppress = site is None
    blocks: list = []
    is_ae = ae["event_class"] == "adverse_event"
    by_type = ae["ae_type"] != "all"
    events = ae[is_ae & by_type & (ae["site_id"] == scope)]
    pv = _pivot_counts(events, "ae_type", "asge_severity", "n_events", F.SEVERITY_ORDER)
    table, csv = counts_table(
        pv,
        caption="Adverse events within 30 days of the index POEM, by type and ASGE severity (events)",
        index_label="AE type",
        suppress=suppress,
    )
    # the chart: patients by their worst severity (one bar per severity), from the 'all' rows
    worst = ae[is_ae & ~by_type & (ae["site_id"] == scope)]
    pvw = _pivot_counts(worst.assign(s="patients"), "asge_severity", "s", "n_patients")
    pvw = pvw.reindex([s for s in F.SEVERITY_ORDER if s in pvw.index])
    n_hidden_bars = 0
    if suppress and not pvw.empty:
        sw = suppress_table(pvw.astype(float), row_totals=False)
        keep = [g for g in pvw.index if not sw.cells.at[g, "patients"]]
        n_hidden_bars = len(pvw.index) - len(keep)
        worst = worst[worst["asge_severity"].isin(keep)]
    fig = F.stacked_bars(
        worst,
        "Patients with an adverse event, by worst ASGE severity",
        x_col="asge_severity",
        series_col="asge_severity",
        value_col="n_patients",
        series_order=F.SEVERITY_ORDER,
        y_title="patients",
        categories=[s for s in F.SEVERITY_ORDER if s in set(pvw.index)] or None,
    )
    description = (
        "Each patient is counted once, under the worst ASGE severity of their adverse events within 30 days; "
        "the table breaks the events down by type (a patient can have more than one event)."
    )
    if n_hidden_bars:
        description += f" {n_hidden_bars} severity bar(s) not drawn: fewer than {SMALL_CELL_MIN} patients."
    blocks.append(
        FigureBlock(
            "fig-ae-type-severity",
            "Adverse events by severity and type",
            fig,
            table,
            csv,
            definition="P5",
            description=description,
        )
    )
    if site is None:
        per_site = ae[is_ae & ~by_type & (ae["site_id"] != ALL)].copy()
        per_site["site"] = per_site["site_id"].map(labels)
        pv2 = _pivot_counts(per_site, "site", "asge_severity", "n_patients", F.SEVERITY_ORDER)
        t2, _ = counts_table(
            pv2,
            caption="Patients with an adverse event, by site and worst ASGE severity",
            index_label="Site",
            suppress=True,
            note="Row totals are the P5 numerators.",
        )
        blocks.append(t2)
    inc = ae[(ae["event_class"] == "incident") & by_type & (ae["site_id"] == scope)]
    pv3 = _pivot_counts(inc.assign(kind="incidents"), "ae_type", "kind", "n_events")
    t3, _ = counts_table(
        pv3,
        caption="Intraprocedural incidents (not counted as adverse events)",
        index_label="Incident type",
        suppress=suppress,
        note="Incidents such as capnoperitoneum or mucosotomy without an ASGE criterion "
        "are recorded separately (clinical-spec §2.4).",
    )
    if pv3.empty:
        t3 = TableView(["Note"], [["No intraprocedural incidents recorded."]], caption=t3.caption)
    blocks.append(t3)
    return blocks


LA_ORDER = ["none", "A", "B", "C", "D"]


def la_grade_block(ctx: EditionContext, *, site: SiteInfo | None, labels: dict[str, str]) -> list:
    """Worst LA grade 3-12 months after POEM (marts.mart_reflux_la_grade, all-time rows)."""
    la = ctx.data.read("la_grade", "period_type = 'all_time'")
    if la.empty:
        return [TableView(["Note"], [["No LA-grade mart yet (marts.mart_reflux_la_grade)."]])]
    if site is None:
        part = la[la["site_id"] != ALL].copy()
        part["site"] = part["site_id"].map(labels)
        pv = _pivot_counts(part, "site", "la_grade", "n_patients", LA_ORDER)
        table, csv = counts_table(
            pv,
            caption="Worst LA grade of esophagitis 3-12 months after POEM, by site (patients with an EGD)",
            index_label="Site",
            suppress=True,
            note="Row totals are the P11 denominators; grades B-D are the P11 numerator.",
        )
        reg = la[la["site_id"] == ALL]
    else:
        reg = la[la["site_id"].isin([site.site_id, ALL])].copy()
        reg["series"] = reg["site_id"].map({site.site_id: "Your site", ALL: "Registry"})
        pv = _pivot_counts(reg, "series", "la_grade", "n_patients", LA_ORDER)
        table, csv = counts_table(
            pv,
            caption="Worst LA grade of esophagitis 3-12 months after POEM (patients with an EGD)",
            index_label="Series",
            suppress=False,
        )
        reg = la[la["site_id"] == site.site_id]
    pv_reg = _pivot_counts(reg.assign(s="patients"), "la_grade", "s", "n_patients")
    n_hidden = 0
    if site is None and not pv_reg.empty:
        s = suppress_table(pv_reg.astype(float), row_totals=False)
        keep = [g for g in pv_reg.index if not s.cells.at[g, "patients"]]
        n_hidden = len(pv_reg.index) - len(keep)
        reg = reg[reg["la_grade"].isin(keep)]
    fig = F.stacked_bars(
        reg.assign(series="patients"),
        "Worst LA grade 3-12 months after POEM" + (" (your site)" if site else " (registry)"),
        x_col="la_grade",
        series_col="series",
        value_col="n_patients",
        series_order=["patients"],
        y_title="patients",
        categories=LA_ORDER,
    )
    description = "LA grade A is minor; grades B-D are conclusive evidence of reflux (Lyon 2.0)."
    if n_hidden:
        description += f" {n_hidden} grade(s) not drawn: fewer than {SMALL_CELL_MIN} patients."
    return [
        FigureBlock(
            "fig-la-grade",
            "Esophagitis by LA grade",
            fig,
            table,
            csv,
            definition="P11",
            description=description,
        )
    ]


def durability_blocks(ctx: EditionContext, *, site: SiteInfo | None, labels: dict[str, str]) -> list:
    if not ctx.data.size("km_curve") and not ctx.data.size("durability"):
        return [
            TableView(["Note"], [["No durability tables yet (analytics.km_curve, analytics.durability)."]])
        ]
    wanted = {ALL: "registry"} | ({site.site_id: "this_site"} if site else {})
    km = ctx.data.rows_for("km_curve", list(wanted))
    dur = ctx.data.read("durability") if site is None else ctx.data.rows_for("durability", list(wanted))
    curves = km[km["site_id"].isin(wanted)].assign(series=lambda d: d["site_id"].map(wanted))
    # Draw each curve while at least SMALL_CELL_MIN patients are at risk: the tail of a Kaplan-Meier
    # curve rests on a handful of patients (and would show their individual events).
    at_risk = pd.to_numeric(curves["at_risk"], errors="coerce")
    curves = curves[at_risk.isna() | (at_risk >= SMALL_CELL_MIN)]
    curves = curves.loc[:, ["series", "time_days", "survival", "ci_low", "ci_high"]]
    fig = F.km_chart(curves, "Kaplan-Meier durability of clinical success")
    rows, csv_rows = [], []
    parts = dur[dur["site_id"] != ALL] if site is None else dur[dur["site_id"].isin(wanted)]
    parts = pd.concat([dur[dur["site_id"] == ALL], parts]).drop_duplicates()
    for _, r in parts.sort_values(["site_id", "years"]).iterrows():
        own = site is not None and r["site_id"] == site.site_id
        hidden = not own and (is_small(r["n"]) or is_small(r["events"]) or is_small(r["at_risk"]))
        if fmt.missing(r["survival"]) and not hidden:
            name = (
                "Registry" if r["site_id"] == ALL else "Your site" if own else labels.get(r["site_id"], "?")
            )
            rows.append(
                [name, f"{int(r['years'])} y", fmt.count(r["n"]), "-", "not reached (follow-up too short)"]
            )
            csv_rows.append(
                {
                    "series": name,
                    "years": r["years"],
                    "n": r["n"],
                    "at_risk": None,
                    "survival": None,
                    "ci_low": None,
                    "ci_high": None,
                }
            )
            continue
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
        f"87.1% at 1 / 2 / 3 / 5 years. Curves stop where fewer than {SMALL_CELL_MIN} patients remain at "
        "risk. " + (SUPPRESSION_NOTE if site is None else ""),
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


#: Clinical-success measures compared with the subtype benchmarks of clinical-spec §9.1 (S4).
SUBTYPE_MEASURES = (("P2", "PP"), ("P3", "PP"))


def _diagnosis_names(ctx: EditionContext) -> dict[str, str]:
    def compute() -> dict[str, str]:
        try:
            rows = ctx.data.con.execute(
                "select code, description from seeds.code_sets where code_set = 'diagnosis'"
            ).fetchall()
        except Exception:  # seeds not built: show codes
            rows = []
        return {str(c): str(d) for c, d in rows}

    return ctx.data.memo(("diagnosis_names",), compute)


def subtype_block(ctx: EditionContext, cat: pd.DataFrame) -> list:
    """Clinical success by diagnosis, pooled across sites (analytics.pooled, default tau² method)."""
    pooled = ctx.data.read("pooled")
    pooled = pooled[(pooled["stratum"] != ALL) & pooled["is_default"].map(_as_bool)]
    wanted = pooled[
        [
            (m, d) in SUBTYPE_MEASURES
            for m, d in zip(pooled["measure_id"], pooled["denominator_type"], strict=True)
        ]
    ]
    if wanted.empty:
        return [
            TableView(
                ["Note"], [["No pooled clinical-success estimates by diagnosis yet (analytics.pooled)."]]
            )
        ]
    names = _diagnosis_names(ctx)
    bm = ctx.data.read("benchmarks")
    bm = bm[bm["benchmark_key"].str.startswith(SUBTYPE_BENCHMARK_PREFIX, na=False)].copy()
    bm["stratum"] = bm["benchmark_key"].str.slice(len(SUBTYPE_BENCHMARK_PREFIX))
    rows, pts, bench, csv_rows = [], [], [], []
    n_hidden = 0
    order = {m: i for i, (m, _) in enumerate(SUBTYPE_MEASURES)}
    wanted = wanted.assign(_o=wanted["measure_id"].map(order)).sort_values(["_o", "stratum"])
    for r in wanted.itertuples(index=False):
        hidden = is_small(r.events) or is_small(r.n_total)
        n_hidden += hidden
        label = f"{names.get(r.stratum, r.stratum)} · {r.measure_id} ({r.denominator_type})"
        b = bm[bm["stratum"] == r.stratum]
        b_text = (
            f"{fmt.pct(b.iloc[0]['value'])} {b.iloc[0]['provenance_tag']} — {b.iloc[0]['citation']}"
            if not b.empty
            else "-"
        )
        rows.append(
            [
                label,
                fmt.count(r.k),
                fmt.fraction(r.events, r.n_total, hidden),
                fmt.rate_with_ci({"rate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high}, hidden),
                fmt.interval(r.pi_low, r.pi_high) if not hidden else HIDDEN,
                f"{fmt.number(r.i2, 0)}%" if not fmt.missing(r.i2) else "-",
                b_text,
            ]
        )
        if not hidden:
            pts.append(
                {
                    "label": label + f" [{fmt.fraction(r.events, r.n_total)}]",
                    "series": "registry",
                    "rate": r.estimate,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                }
            )
            bench.append({"label": pts[-1]["label"], "value": b.iloc[0]["value"] if not b.empty else None})
        csv_rows.append(
            {
                "measure_id": r.measure_id,
                "denominator_type": r.denominator_type,
                "stratum": r.stratum,
                "k": r.k,
                "events": None if hidden else r.events,
                "n_total": None if hidden else r.n_total,
                "estimate": None if hidden else r.estimate,
                "ci_low": None if hidden else r.ci_low,
                "ci_high": None if hidden else r.ci_high,
                "pi_low": None if hidden else r.pi_low,
                "pi_high": None if hidden else r.pi_high,
                "tau2": r.tau2,
                "i2": r.i2,
                "model": r.model,
                "tau2_method": r.tau2_method,
                "benchmark": b.iloc[0]["value"] if not b.empty else None,
            }
        )
    sed = bm[bm["stratum"] == "all_sed"]
    sed_text = (
        f" All spastic esophageal disorders together: {fmt.pct(sed.iloc[0]['value'])} "
        f"({fmt.interval(sed.iloc[0]['low'], sed.iloc[0]['high'])}) {sed.iloc[0]['provenance_tag']} — "
        f"{sed.iloc[0]['citation']}."
        if not sed.empty
        else ""
    )
    model = wanted["model"].dropna()
    method = wanted["tau2_method"].dropna()
    table = TableView(
        [
            "Diagnosis · measure",
            "Sites (k)",
            "Events/N",
            "Pooled rate (95% CI)",
            "95% prediction interval",
            "I²",
            "Published rate (S4)",
        ],
        rows,
        caption="Clinical success by diagnosis, pooled across sites",
        note=f"Random-effects pooling ({model.iloc[0] if not model.empty else 'random'} effects, tau² by "
        f"{method.iloc[0] if not method.empty else 'REML'}) of site rates; the prediction interval is where a new "
        "site's rate would be expected. S4 defines success as Eckardt ≤ 3 and/or improved dysphagia."
        + sed_text
        + " "
        + PROVENANCE_NOTE
        + " "
        + SUPPRESSION_NOTE,
    )
    fig = F.rate_forest(
        pd.DataFrame(pts, columns=["label", "series", "rate", "ci_low", "ci_high"]),
        "Clinical success by diagnosis (pooled across sites)",
        benchmark=pd.DataFrame(bench, columns=["label", "value"]),
    )
    description = (
        "Each dot is the pooled clinical success of one diagnosis with its 95% interval; diamonds are the "
        "published rates for spastic disorders (Khan 2017, S4)."
    )
    if n_hidden:
        description += (
            f" {n_hidden} diagnosis row(s) not drawn: fewer than {SMALL_CELL_MIN} patients or events."
        )
    return [
        FigureBlock(
            "fig-subtype",
            "Outcomes by diagnosis subtype",
            fig,
            table,
            pd.DataFrame(csv_rows),
            definition=SUBTYPE_MEASURES[0][0],
            description=description,
        )
    ]


SIGNAL_TEXT = {
    "racusum": "risk-adjusted CUSUM above its limit",
    "bernoulli_h1": "crossed the unacceptable limit (h1)",
    "bernoulli_h0": "crossed the acceptable limit (h0)",
}


def signal_text(value) -> str:
    """``racusum,bernoulli_h1`` (analytics.learning_curve.signal) in words; '' for none."""
    if fmt.missing(value) or not str(value).strip():
        return ""
    return "; ".join(SIGNAL_TEXT.get(p.strip(), p.strip()) for p in str(value).split(",") if p.strip())


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
    lc = lc.sort_values(["site_id", "operator_label", "case_number"], kind="mergesort")
    for (sid, op), g in lc.groupby(["site_id", "operator_label"], sort=True):
        n = len(g)
        small = is_small(n)
        signalled = g[g["signal"].map(lambda v: bool(signal_text(v)))]
        last_signal = "none"
        if not signalled.empty:
            last_signal = signal_text(signalled["signal"].iloc[-1])
            if not small:
                last_signal = f"case {int(signalled['case_number'].iloc[-1])}: {last_signal}"
        last = g.iloc[-1]
        rows.append(
            [
                labels.get(sid, sid),
                str(op),
                fmt.count(n) if not small else HIDDEN,
                f"{fmt.number(last['bernoulli_cusum'])} (limits {fmt.number(last['bernoulli_h0'])} / "
                f"{fmt.number(last['bernoulli_h1'])})",
                f"{fmt.number(last['racusum'])} (h {fmt.number(last['racusum_h'])})",
                last_signal,
            ]
        )
    first = lc.iloc[0]
    params = (
        f"Bernoulli CUSUM of the composite failure with p0={fmt.number(first['p0'])}, p1={fmt.number(first['p1'])}, "
        f"α={fmt.number(first['alpha'])}, β={fmt.number(first['beta'])}; risk-adjusted CUSUM odds ratio "
        f"{fmt.number(first['odds_multiplier'])} with a limit h simulated per operator."
    )
    return [
        TableView(
            [
                "Site",
                "Operator",
                "Cases",
                "Bernoulli CUSUM now (h0 / h1)",
                "RA-CUSUM now (limit)",
                "Latest signal",
            ],
            rows,
            caption="Operator learning curves (composite failure CUSUM)",
            note=params + " Each site sees its own operators' charts in its site report. Operators are "
            "pseudonymous; operator experience is never a case-mix term. " + SUPPRESSION_NOTE,
        )
    ]


def learning_blocks(ctx: EditionContext, site: SiteInfo) -> list:
    lc = ctx.data.rows_for("learning_curve", [site.site_id])
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
                signal_text(r["signal"]),
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


def _period_rows(ctx: EditionContext, period_type: str) -> dict[str | None, np.ndarray]:
    """Positions of the measure rows of one period type per site (quarters and years up to the edition's
    end), in mart order; once per edition."""

    def compute() -> dict[str | None, np.ndarray]:
        m = measure_suppression(ctx.data).frame
        keep = (m["period_type"] == period_type).to_numpy(copy=True)
        if period_type in ("quarter", "year"):
            keep &= (pd.to_datetime(m["period_start"]).dt.date <= ctx.period.end).to_numpy()
        rows = np.flatnonzero(keep)
        sites = m["site_id"].astype(str).to_numpy()[rows]
        groups = pd.Series(rows).groupby(sites, sort=False).indices
        return {str(site): rows[idx] for site, idx in groups.items()} | {None: rows}

    return ctx.data.memo(("period_rows", period_type), compute)


def _suppressed_measures(ctx: EditionContext, period_type: str, own_site: str | None = None) -> pd.DataFrame:
    """Suppressed measure rows of one period type as ``own_site`` sees them (None: the system report).

    Suppression runs once per edition over every period at once (sites add up to ALL, quarters and years
    add up to all time; see :class:`~poem_registry.reports.suppression.MeasureSuppression`); quarters and
    years after the edition's end are left out. A site's page gets every site's all-time rows (peers,
    funnels) but only its own and the registry's quarters and years (trends).
    """
    by_site = _period_rows(ctx, period_type)
    if own_site is None:
        return ctx.data.memo(
            ("suppressed", period_type), lambda: suppressed_measures(ctx.data, None, by_site[None])
        )
    if period_type == "all_time":
        rows = by_site[None]
    else:
        empty = np.array([], dtype=np.int64)
        rows = np.sort(np.concatenate([by_site.get(ALL, empty), by_site.get(own_site, empty)]))
    return suppressed_measures(ctx.data, own_site, rows)


def _quarter_for_edition(quarterly: pd.DataFrame, ctx: EditionContext) -> tuple[pd.DataFrame, str]:
    """Rows of the edition's quarter, or of the latest quarter with data before its end; and that quarter."""
    if quarterly.empty:
        return quarterly, ctx.period.label
    starts = pd.to_datetime(quarterly["period_start"]).dt.date
    if ctx.period.kind == "quarter":
        this = quarterly[starts == ctx.period.start]
        if not this.empty:
            return this, ctx.period.label
    ok = starts[starts <= ctx.period.end]
    if ok.empty:
        return quarterly.iloc[0:0], ctx.period.label
    latest = ok.max()
    return quarterly[starts == latest], f"{latest.year}-Q{(latest.month - 1) // 3 + 1}"


#: Measure tables shown on the system page and on every site page: figure id -> (measures, title).
SHARED_MEASURE_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "fig-ae-rates": (("P5", "P6M", "P6S", "P7"), "Adverse-event rates"),
    "fig-reflux": (REFLUX_MEASURES, "Reflux measures 3-12 months after POEM"),
    "fig-followup": (FOLLOWUP_MEASURES, "Follow-up completeness"),
}


def shared_measure_blocks(
    cat: pd.DataFrame, measures: pd.DataFrame, fig_id: str, *, site: SiteInfo | None, def_href: str
) -> list[FigureBlock]:
    """One of the shared measure tables, for the registry (site=None) or a site; empty when it has no rows."""
    ids, title = SHARED_MEASURE_TABLES[fig_id]
    block = measure_table(cat, measures, ids, fig_id=fig_id, title=title, site=site, def_href=def_href)
    return [block] if block else []


def system_page(ctx: EditionContext) -> Page:
    cat = catalog(ctx.data)
    labels = ctx.site_names
    all_time = _suppressed_measures(ctx, "all_time")
    quarterly = _suppressed_measures(ctx, "quarter")
    yearly = _suppressed_measures(ctx, "year")
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
            trend_blocks(ctx, cat, quarterly, yearly, all_time, site=None, def_href=d),
        ),
        Section(
            "funnels",
            "Comparing sites: funnel plots",
            "Each site's rate against its number of patients, with 95% and 99.8% control limits around the "
            "target. Sites inside the funnel differ from the target no more than chance allows. Sites are "
            "not ranked: a league table would exaggerate differences between small sites.",
            funnel_blocks(
                ctx,
                cat,
                site=None,
                labels=labels,
                def_href=d,
                point_labels={s.site_id: s.site_id for s in ctx.sites},
            ),
        ),
        Section(
            "adverse-events",
            "Adverse events and incidents",
            "Adverse events within 30 days graded with the ASGE lexicon (mild, moderate, severe, fatal); "
            "intraprocedural incidents are shown separately because they are not adverse events unless "
            "they change management.",
            shared_measure_blocks(cat, all_time, "fig-ae-rates", site=None, def_href=d)
            + ae_blocks(ctx, site=None, labels=labels, def_href=d),
        ),
        Section(
            "reflux",
            "Reflux after POEM",
            "Reflux is reported as separate measures because they disagree often: objective acid exposure "
            "(pH study off PPI), esophagitis by LA grade at endoscopy, symptoms (GerdQ) and PPI use.",
            shared_measure_blocks(cat, all_time, "fig-reflux", site=None, def_href=d)
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
            shared_measure_blocks(cat, all_time, "fig-followup", site=None, def_href=d),
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
    # every block but the peer table and the funnels shows only this site and the registry
    mine = all_time[all_time["site_id"].isin([me, ALL])].reset_index(drop=True)
    quarterly = _suppressed_measures(ctx, "quarter", own_site=me)
    yearly = _suppressed_measures(ctx, "year", own_site=me)
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
            headline_block(ctx, cat, mine, this_q, site=site, def_href=d),
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
            trend_blocks(ctx, cat, quarterly, yearly, mine, site=site, def_href=d),
        ),
        Section(
            "adverse-events",
            "Adverse events and incidents at your site",
            "",
            shared_measure_blocks(cat, mine, "fig-ae-rates", site=site, def_href=d)
            + ae_blocks(ctx, site=site, labels=labels, def_href=d),
        ),
        Section(
            "reflux",
            "Reflux after POEM",
            "",
            shared_measure_blocks(cat, mine, "fig-reflux", site=site, def_href=d)
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
            shared_measure_blocks(cat, mine, "fig-followup", site=site, def_href=d),
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
    keys = key_measures(cat)["measure_id"].tolist()
    cols, col_keys = ["Site"], []
    for mid in keys:
        dens = sorted(all_time.loc[all_time["measure_id"] == mid, "denominator_type"].dropna().unique())
        for den in dens:
            cols.append(mid + (f" ({den})" if den in ("PP", "ITT") else ""))
            col_keys.append((mid, den))
    order = ["Your site", *sorted(v for k, v in labels.items() if k != own)]
    by_label = {v: k for k, v in labels.items()}
    cells = {(r.measure_id, r.denominator_type, r.site_id): r for r in all_time.itertuples(index=False)}
    rows = []
    for lab in order:
        sid = by_label[lab]
        row = [lab]
        for mid, den in col_keys:
            r0 = cells.get((mid, den, sid))
            if r0 is None:
                row.append("-")
                continue
            row.append(
                HIDDEN
                if bool(r0.suppressed)
                else f"{fmt.pct(r0.rate)} ({fmt.fraction(r0.numerator, r0.denominator)})"
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


def definitions_page(ctx: EditionContext, warehouse_docs_href: str | None = None) -> Page:
    cat = catalog(ctx.data)
    intro = (
        "Every measure in these reports, with exactly what is counted above and below the line, what is "
        "left out, how its interval is computed and where the definition comes from. Charts link here. "
        "Interval methods: Wilson score (default), Clopper-Pearson exact for rare events, Greenwood for "
        "Kaplan-Meier. PP = per protocol (patients assessed in the window); ITT = intention to treat "
        "(everyone eligible, missing counted as failure)."
    )
    if warehouse_docs_href:
        intro += (
            f' The <a href="{warehouse_docs_href}">warehouse documentation</a> (dbt docs) shows every model '
            "behind these numbers, its grain, columns, tests and lineage back to the delivered files."
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
            "" if fmt.missing(r["column_name"]) else str(r["column_name"]),
            str(r["status"]),
            "-" if fmt.missing(r["previous_status"]) else str(r["previous_status"]),
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
