"""Plotly figures for the report pages, built so two renders are byte-identical.

Conventions: fixed element ids (``div_id``), categories sorted before plotting,
one fixed colour-blind-safe colour per series (Okabe-Ito), no generated ids or
timestamps. Every figure travels with the table of numbers behind it
(:class:`FigureBlock`), which the page shows as a table view and a CSV download.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

#: Okabe & Ito (2008) colour-blind-safe palette, one fixed colour per series.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}
SERIES_COLOURS = {
    "registry": OKABE_ITO["blue"],
    "this_site": OKABE_ITO["vermillion"],
    "peer": OKABE_ITO["grey"],
    "site": OKABE_ITO["blue"],
    "benchmark": OKABE_ITO["black"],
    "target": OKABE_ITO["bluish_green"],
    "limit_95": OKABE_ITO["orange"],
    "limit_998": OKABE_ITO["reddish_purple"],
    "mild": OKABE_ITO["sky_blue"],
    "moderate": OKABE_ITO["orange"],
    "severe": OKABE_ITO["vermillion"],
    "fatal": OKABE_ITO["black"],
    "incident": OKABE_ITO["bluish_green"],
    "PP": OKABE_ITO["blue"],
    "ITT": OKABE_ITO["orange"],
}
SERIES_NAMES = {"registry": "Registry (all sites)", "this_site": "Your site"}
SEVERITY_ORDER = ["mild", "moderate", "severe", "fatal"]
#: A small fixed template (the built-in ones are large and slow to copy into every figure).
TEMPLATE = go.layout.Template(
    layout={
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": "#1d2733"},
        "xaxis": {
            "showline": True,
            "linecolor": "#444",
            "ticks": "outside",
            "showgrid": False,
            "zeroline": False,
        },
        "yaxis": {
            "showline": True,
            "linecolor": "#444",
            "ticks": "outside",
            "showgrid": True,
            "gridcolor": "#e8ebef",
            "zeroline": False,
        },
    }
)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}


@dataclass
class TableView:
    """A table as display strings (already formatted and suppressed)."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    note: str = ""
    #: Column index whose cells are HTML links (measure names to their definition).
    link_column: int | None = None
    links: list[str] = field(default_factory=list)


@dataclass
class FigureBlock:
    """One chart: its plotly figure, the table view of its numbers and the CSV behind it."""

    fig_id: str
    title: str
    figure: go.Figure | None
    table: TableView
    data: pd.DataFrame
    definition: str | None = None  # measure_id whose definition anchor the chart links to
    description: str = ""
    csv_name: str = ""
    html: str = ""  # filled by the renderer

    def __post_init__(self) -> None:
        if not self.csv_name:
            self.csv_name = f"{self.fig_id}.csv"


def base_layout(
    fig: go.Figure,
    title: str,
    *,
    y_title: str = "",
    x_title: str = "",
    height: int = 380,
    percent_y: bool = False,
) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0, "font": {"size": 15}},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2, "traceorder": "normal"},
        font={"family": "Helvetica, Arial, sans-serif", "size": 12},
        hovermode="closest",
    )
    fig.update_xaxes(title_text=x_title, automargin=True)
    fig.update_yaxes(title_text=y_title, automargin=True)
    if percent_y:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig


def _err(rate: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": (high - rate).round(6).tolist(),
        "arrayminus": (rate - low).round(6).tolist(),
        "thickness": 1.5,
        "width": 4,
    }


def rate_forest(
    points: pd.DataFrame,
    title: str,
    *,
    label_col: str = "label",
    series_col: str = "series",
    benchmark: pd.DataFrame | None = None,
) -> go.Figure:
    """Horizontal point-and-interval chart: one row per label, one colour per series, benchmarks as diamonds.

    ``points``: label, series, rate, ci_low, ci_high. ``benchmark``: label, value (and optional low/high).
    """
    fig = go.Figure()
    labels = list(dict.fromkeys(points[label_col].tolist()))
    for series in sorted(points[series_col].dropna().unique()):
        sub = points[(points[series_col] == series) & points["rate"].notna()]
        if sub.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=sub["rate"].round(6).tolist(),
                y=sub[label_col].tolist(),
                mode="markers",
                name=SERIES_NAMES.get(str(series), str(series)),
                marker={"color": SERIES_COLOURS.get(str(series), OKABE_ITO["blue"]), "size": 9},
                error_x=_err(
                    sub["rate"], sub["ci_low"].fillna(sub["rate"]), sub["ci_high"].fillna(sub["rate"])
                ),
                hovertemplate="%{y}: %{x:.1%}<extra>" + str(series) + "</extra>",
            )
        )
    if benchmark is not None and not benchmark.empty:
        bm = benchmark[benchmark["value"].notna()]
        fig.add_trace(
            go.Scatter(
                x=bm["value"].round(6).tolist(),
                y=bm[label_col].tolist(),
                mode="markers",
                name="Literature benchmark",
                marker={
                    "symbol": "diamond-open",
                    "size": 12,
                    "color": SERIES_COLOURS["benchmark"],
                    "line": {"width": 2},
                },
                hovertemplate="benchmark %{x:.1%}<extra></extra>",
            )
        )
    base_layout(fig, title, height=max(260, 60 + 42 * len(labels)))
    fig.update_xaxes(tickformat=".0%", range=[0, 1.02], title_text="rate (95% interval)")
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(labels)), type="category")
    return fig


def trend_chart(
    trend: pd.DataFrame, title: str, *, benchmark: float | None = None, benchmark_label: str = ""
) -> go.Figure:
    """Quarterly rate with interval per series (``quarter`` label, series, rate, ci_low, ci_high)."""
    fig = go.Figure()
    quarters = sorted(trend["quarter"].unique().tolist())
    for series in sorted(trend["series"].unique()):
        sub = trend[trend["series"] == series].sort_values("quarter")
        fig.add_trace(
            go.Scatter(
                x=sub["quarter"].tolist(),
                y=sub["rate"].round(6).tolist(),
                mode="lines+markers",
                name=SERIES_NAMES.get(str(series), str(series)),
                line={"color": SERIES_COLOURS.get(str(series), OKABE_ITO["blue"])},
                connectgaps=False,
                error_y=_err(
                    sub["rate"], sub["ci_low"].fillna(sub["rate"]), sub["ci_high"].fillna(sub["rate"])
                ),
                hovertemplate="%{x}: %{y:.1%}<extra>" + str(series) + "</extra>",
            )
        )
    if benchmark is not None and quarters:
        fig.add_trace(
            go.Scatter(
                x=[quarters[0], quarters[-1]],
                y=[round(benchmark, 6)] * 2,
                mode="lines",
                name=benchmark_label or "Literature benchmark",
                line={"color": SERIES_COLOURS["benchmark"], "dash": "dash", "width": 1.5},
                hoverinfo="skip",
            )
        )
    base_layout(fig, title, y_title="rate", percent_y=True)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=quarters)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def funnel_chart(
    curve: pd.DataFrame,
    points: pd.DataFrame,
    title: str,
    *,
    highlight: str | None = None,
    label_points: bool = True,
) -> go.Figure:
    """Funnel plot: target, 95% and 99.8% limits over n, one point per site.

    ``points``: label, denominator, rate (rows already filtered for suppression).
    ``highlight``: the label drawn as "this site"; others are "peer" points, unlabelled
    when ``label_points`` is False.
    """
    fig = go.Figure()
    curve = curve.sort_values("n")
    n = curve["n"].tolist()
    for col, name, colour, dash in (
        ("upper_998", "99.8% limits", SERIES_COLOURS["limit_998"], "dot"),
        ("lower_998", None, SERIES_COLOURS["limit_998"], "dot"),
        ("upper_95", "95% limits", SERIES_COLOURS["limit_95"], "dash"),
        ("lower_95", None, SERIES_COLOURS["limit_95"], "dash"),
        ("target", "Target", SERIES_COLOURS["target"], "solid"),
    ):
        fig.add_trace(
            go.Scatter(
                x=n,
                y=curve[col].round(6).tolist(),
                mode="lines",
                name=name or col,
                showlegend=name is not None,
                legendgroup=col.split("_")[-1],
                line={"color": colour, "dash": dash, "width": 1.5},
                hoverinfo="skip",
            )
        )
    pts = points.sort_values(["label", "denominator"]).reset_index(drop=True)
    others = pts[pts["label"] != highlight] if highlight else pts
    if not others.empty:
        fig.add_trace(
            go.Scatter(
                x=others["denominator"].tolist(),
                y=others["rate"].round(6).tolist(),
                mode="markers+text" if label_points else "markers",
                text=others["label"].tolist() if label_points else None,
                textposition="top center",
                name="Sites" if label_points else "Other sites (blinded)",
                marker={"color": SERIES_COLOURS["site" if label_points else "peer"], "size": 9},
                hovertemplate=("%{text}: " if label_points else "") + "%{y:.1%} of %{x}<extra></extra>",
            )
        )
    if highlight:
        me = pts[pts["label"] == highlight]
        if not me.empty:
            fig.add_trace(
                go.Scatter(
                    x=me["denominator"].tolist(),
                    y=me["rate"].round(6).tolist(),
                    mode="markers",
                    name=highlight,
                    marker={"color": SERIES_COLOURS["this_site"], "size": 13, "symbol": "star"},
                    hovertemplate=highlight + ": %{y:.1%} of %{x}<extra></extra>",
                )
            )
    base_layout(fig, title, x_title="number of patients (denominator)", y_title="rate", percent_y=True)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def stacked_bars(
    frame: pd.DataFrame,
    title: str,
    *,
    x_col: str,
    series_col: str,
    value_col: str,
    series_order: list[str],
    y_title: str = "count",
) -> go.Figure:
    """Stacked bar chart with a fixed series order and colours (hidden cells already removed)."""
    fig = go.Figure()
    categories = sorted(frame[x_col].dropna().unique().tolist())
    for series in series_order:
        sub = frame[frame[series_col] == series].set_index(x_col).reindex(categories)
        if sub[value_col].notna().sum() == 0:
            continue
        fig.add_trace(
            go.Bar(
                x=categories,
                y=sub[value_col].tolist(),
                name=series,
                marker={"color": SERIES_COLOURS.get(series, OKABE_ITO["grey"])},
                hovertemplate="%{x}: %{y}<extra>" + series + "</extra>",
            )
        )
    base_layout(fig, title, y_title=y_title)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=categories)
    return fig


def km_chart(curves: pd.DataFrame, title: str) -> go.Figure:
    """Kaplan-Meier step curves with Greenwood bands (``series``, time_days, survival, ci_low, ci_high)."""
    fig = go.Figure()
    for series in sorted(curves["series"].unique()):
        sub = curves[curves["series"] == series].sort_values("time_days")
        years = (sub["time_days"] / 365.25).round(4).tolist()
        colour = SERIES_COLOURS.get(series, OKABE_ITO["blue"])
        fig.add_trace(
            go.Scatter(
                x=years,
                y=sub["ci_high"].round(6).tolist(),
                mode="lines",
                line={"width": 0, "shape": "hv"},
                showlegend=False,
                hoverinfo="skip",
                legendgroup=series,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=years,
                y=sub["ci_low"].round(6).tolist(),
                mode="lines",
                fill="tonexty",
                fillcolor="rgba(0,114,178,0.12)" if series == "registry" else "rgba(213,94,0,0.12)",
                line={"width": 0, "shape": "hv"},
                showlegend=False,
                hoverinfo="skip",
                legendgroup=series,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=years,
                y=sub["survival"].round(6).tolist(),
                mode="lines",
                name=SERIES_NAMES.get(series, series),
                line={"color": colour, "shape": "hv", "width": 2},
                legendgroup=series,
                hovertemplate="%{x:.1f} y: %{y:.1%}<extra>" + series + "</extra>",
            )
        )
    base_layout(
        fig, title, x_title="years after index POEM", y_title="still a clinical success", percent_y=True
    )
    fig.update_yaxes(range=[0, 1.02])
    return fig


def cusum_chart(lc: pd.DataFrame, title: str, params: str) -> go.Figure:
    """One operator's Bernoulli CUSUM (and RA-CUSUM when present) with decision limits and parameters."""
    lc = lc.sort_values("case_number")
    x = lc["case_number"].astype(int).tolist()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=lc["bernoulli_cusum"].round(6).tolist(),
            mode="lines+markers",
            name="Bernoulli CUSUM",
            line={"color": SERIES_COLOURS["registry"]},
            marker={"size": 4},
            hovertemplate="case %{x}: %{y:.2f}<extra></extra>",
        )
    )
    if lc["racusum"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=lc["racusum"].round(6).tolist(),
                mode="lines",
                name="Risk-adjusted CUSUM",
                line={"color": SERIES_COLOURS["this_site"], "dash": "dash"},
                hovertemplate="case %{x}: %{y:.2f}<extra></extra>",
            )
        )
    h1 = lc["bernoulli_h1"].dropna()
    if not h1.empty:
        fig.add_trace(
            go.Scatter(
                x=[x[0], x[-1]],
                y=[round(float(h1.iloc[0]), 6)] * 2,
                mode="lines",
                name="Decision limit h1 (unacceptable)",
                line={"color": SERIES_COLOURS["limit_998"], "dash": "dot"},
                hoverinfo="skip",
            )
        )
    h0 = lc["bernoulli_h0"].dropna()
    if not h0.empty:
        fig.add_trace(
            go.Scatter(
                x=[x[0], x[-1]],
                y=[round(float(h0.iloc[0]), 6)] * 2,
                mode="lines",
                name="Decision limit h0 (acceptable)",
                line={"color": SERIES_COLOURS["target"], "dash": "dot"},
                hoverinfo="skip",
            )
        )
    base_layout(fig, title, x_title="operator case number", y_title="CUSUM")
    fig.add_annotation(
        text=params,
        xref="paper",
        yref="paper",
        x=0,
        y=1.0,
        yanchor="bottom",
        showarrow=False,
        font={"size": 11},
    )
    fig.update_layout(margin={"t": 70})
    return fig
