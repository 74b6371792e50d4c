"""Plotly figures for the report pages, built so two renders are byte-identical.

Figures are plain plotly.js specifications (:class:`Fig`: a list of trace dicts and a
layout dict) written straight to JSON: building them through ``plotly.graph_objects``
validated and deep-copied every property and cost seconds per edition. plotly.js (the
local ``assets/plotly.min.js``) draws them in the browser exactly as before, lazily: a page holds
each figure's JSON and draws it when it nears the viewport (``reports/base.html``).

Conventions: fixed element ids (``div_id``), categories sorted before plotting,
one fixed colour-blind-safe colour per series (Okabe-Ito), no generated ids or
timestamps. Every figure travels with the table of numbers behind it
(:class:`FigureBlock`), which the page shows as a table view and a CSV download.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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
    "patients": OKABE_ITO["blue"],
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
#: Axis style shared by every figure (the built-in plotly templates are large and slow).
_AXIS = {"showline": True, "linecolor": "#444", "ticks": "outside", "zeroline": False, "automargin": True}
#: Trace types in the plotly.js bundle the pages load (:data:`poem_registry.reports.render.PLOTLY_BUNDLE`).
BUNDLE_TRACE_TYPES = frozenset({"scatter", "bar", "pie"})
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}


def _clean(value):
    """JSON-ready: numpy scalars to Python, NaN/NA to None, floats rounded to 6 digits."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray | pd.Series):
        return [_clean(v) for v in value.tolist()]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else round(f, 6)
    return value


def _num(values) -> list:
    """A column as a JSON list of numbers rounded to 6 digits (missing -> None)."""
    arr = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    arr = np.round(arr, 6)
    out = arr.astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def _default(value):
    """json.dumps fallback for numpy and pandas scalars (figures are otherwise plain Python)."""
    cleaned = _clean(value)
    if cleaned is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return cleaned


def _dumps(obj) -> str:
    kwargs = {"separators": (",", ":"), "sort_keys": True, "ensure_ascii": False, "default": _default}
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:  # a NaN outside _num: clean the whole structure
        return json.dumps(_clean(obj), allow_nan=False, **kwargs)


@dataclass
class Fig:
    """A plotly.js figure: ``data`` (trace dicts) and ``layout``; rendered to a div + its JSON."""

    data: list[dict] = field(default_factory=list)
    layout: dict = field(default_factory=dict)

    def add_trace(self, trace: dict) -> None:
        self.data.append(trace)

    def to_html(self, div_id: str, config: dict | None = None) -> str:
        """An empty chart container and the figure's JSON; the page's chart loader draws it lazily.

        The loader (``reports/base.html``) calls ``Plotly.newPlot`` when the container nears the
        viewport, and for every chart at once before printing or when IntersectionObserver is missing.
        """
        missing = {t.get("type", "scatter") for t in self.data} - BUNDLE_TRACE_TYPES
        if missing:
            raise ValueError(f"{div_id}: trace type(s) {sorted(missing)} are not in the pages' plotly.js bundle")
        height = self.layout.get("height", 380)
        conf = json.dumps(config or PLOTLY_CONFIG, separators=(",", ":"), sort_keys=True)
        spec = f'{{"config":{conf},"data":{_dumps(self.data)},"layout":{_dumps(self.layout)}}}'
        # "<" only occurs inside JSON strings: escaped, no "</script" or "<!--" can end the element early
        spec = spec.replace("<", "\\u003c")
        return (
            f'<div id="{div_id}" class="plotly-graph-div" data-figure="{div_id}-spec" '
            f'style="height:{int(height)}px; width:100%;"></div>\n'
            f'<script type="application/json" id="{div_id}-spec">{spec}</script>'
        )


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
    figure: Fig | None
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
    title: str,
    *,
    y_title: str = "",
    x_title: str = "",
    height: int = 380,
    percent_y: bool = False,
) -> dict:
    layout = {
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "title": {"text": title, "x": 0, "font": {"size": 15}},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.2, "traceorder": "normal"},
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12, "color": "#1d2733"},
        "hovermode": "closest",
        "xaxis": {**_AXIS, "showgrid": False, "title": {"text": x_title}},
        "yaxis": {**_AXIS, "showgrid": True, "gridcolor": "#e8ebef", "title": {"text": y_title}},
    }
    if percent_y:
        layout["yaxis"].update(tickformat=".0%", rangemode="tozero")
    return layout


def _err(rate: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    rate, low, high = (pd.to_numeric(x, errors="coerce") for x in (rate, low, high))
    return {
        "type": "data",
        "symmetric": False,
        "array": _num((high - rate).clip(lower=0)),
        "arrayminus": _num((rate - low).clip(lower=0)),
        "thickness": 1.5,
        "width": 4,
    }


def rate_range(*columns) -> list[float]:
    """x/y range for rates: 0-100%, or zoomed to 0..1.25 x max when every value is below 45%."""
    values = pd.concat([pd.to_numeric(pd.Series(list(c), dtype=object), errors="coerce") for c in columns])
    top = values.max()
    if pd.isna(top) or top >= 0.45:
        return [0, 1.02]
    return [0, round(max(0.05, float(top) * 1.25), 4)]


def rate_forest(
    points: pd.DataFrame,
    title: str,
    *,
    label_col: str = "label",
    series_col: str = "series",
    benchmark: pd.DataFrame | None = None,
) -> Fig:
    """Horizontal point-and-interval chart: one row per label, one colour per series, benchmarks as diamonds.

    ``points``: label, series, rate, ci_low, ci_high. ``benchmark``: label, value (and optional low/high).
    """
    fig = Fig()
    labels = list(dict.fromkeys(points[label_col].tolist())) if not points.empty else []
    ranged = [points["ci_high"], points["rate"]] if not points.empty else []
    for series in sorted(points[series_col].dropna().unique()) if not points.empty else []:
        sub = points[(points[series_col] == series) & pd.to_numeric(points["rate"], errors="coerce").notna()]
        if sub.empty:
            continue
        rate = pd.to_numeric(sub["rate"])
        fig.add_trace(
            {
                "type": "scatter",
                "x": _num(rate),
                "y": sub[label_col].tolist(),
                "mode": "markers",
                "name": SERIES_NAMES.get(str(series), str(series)),
                "marker": {"color": SERIES_COLOURS.get(str(series), OKABE_ITO["blue"]), "size": 9},
                "error_x": _err(
                    rate,
                    pd.to_numeric(sub["ci_low"], errors="coerce").fillna(rate),
                    pd.to_numeric(sub["ci_high"], errors="coerce").fillna(rate),
                ),
                "hovertemplate": "%{y}: %{x:.1%}<extra>" + str(series) + "</extra>",
            }
        )
    if benchmark is not None and not benchmark.empty:
        bm = benchmark[pd.to_numeric(benchmark["value"], errors="coerce").notna()]
        ranged.append(bm["value"])
        if not bm.empty:
            fig.add_trace(
                {
                    "type": "scatter",
                    "x": _num(bm["value"]),
                    "y": bm[label_col].tolist(),
                    "mode": "markers",
                    "name": "Literature benchmark",
                    "marker": {
                        "symbol": "diamond-open",
                        "size": 12,
                        "color": SERIES_COLOURS["benchmark"],
                        "line": {"width": 2},
                    },
                    "hovertemplate": "benchmark %{x:.1%}<extra></extra>",
                }
            )
    layout = base_layout(title, height=max(280, 120 + 34 * len(labels)))
    left = min(520, 40 + 6 * max((len(str(lab)) for lab in labels), default=10))
    layout["margin"].update(l=left, b=90)
    layout["legend"]["y"] = -0.28 if len(labels) > 4 else -0.45
    layout["xaxis"].update(tickformat=".0%", range=rate_range(*ranged), title={"text": "rate (95% interval)"})
    layout["yaxis"].update(
        categoryorder="array", categoryarray=list(reversed(labels)), type="category", automargin=False
    )
    fig.layout = layout
    return fig


def trend_chart(
    trend: pd.DataFrame, title: str, *, benchmark: float | None = None, benchmark_label: str = ""
) -> Fig:
    """Rate with interval per period and series (``quarter`` label, series, rate, ci_low, ci_high)."""
    fig = Fig()
    quarters = sorted(trend["quarter"].unique().tolist())
    for series in sorted(trend["series"].unique()):
        sub = trend[trend["series"] == series].sort_values("quarter")
        rate = pd.to_numeric(sub["rate"], errors="coerce")
        fig.add_trace(
            {
                "type": "scatter",
                "x": sub["quarter"].tolist(),
                "y": _num(rate),
                "mode": "lines+markers",
                "name": SERIES_NAMES.get(str(series), str(series)),
                "line": {"color": SERIES_COLOURS.get(str(series), OKABE_ITO["blue"])},
                "connectgaps": False,
                "error_y": _err(
                    rate,
                    pd.to_numeric(sub["ci_low"], errors="coerce").fillna(rate),
                    pd.to_numeric(sub["ci_high"], errors="coerce").fillna(rate),
                ),
                "hovertemplate": "%{x}: %{y:.1%}<extra>" + str(series) + "</extra>",
            }
        )
    if benchmark is not None and quarters:
        fig.add_trace(
            {
                "type": "scatter",
                "x": [quarters[0], quarters[-1]],
                "y": [benchmark, benchmark],
                "mode": "lines",
                "name": benchmark_label or "Literature benchmark",
                "line": {"color": SERIES_COLOURS["benchmark"], "dash": "dash", "width": 1.5},
                "hoverinfo": "skip",
            }
        )
    layout = base_layout(title, y_title="rate", percent_y=True)
    layout["xaxis"].update(type="category", categoryorder="array", categoryarray=quarters)
    layout["yaxis"]["range"] = rate_range(trend["ci_high"], trend["rate"], [benchmark])
    fig.layout = layout
    return fig


def funnel_chart(
    curve: pd.DataFrame,
    points: pd.DataFrame,
    title: str,
    *,
    highlight: str | None = None,
    label_points: bool = True,
) -> Fig:
    """Funnel plot: target, 95% and 99.8% limits over n, one point per site.

    ``points``: label, denominator, rate (rows already filtered for suppression).
    ``highlight``: the label drawn as "this site"; others are "peer" points, unlabelled
    when ``label_points`` is False.
    """
    fig = Fig()
    curve = curve.sort_values("n")
    n = _num(curve["n"])
    for col, name, colour, dash in (
        ("upper_998", "99.8% limits", SERIES_COLOURS["limit_998"], "dot"),
        ("lower_998", None, SERIES_COLOURS["limit_998"], "dot"),
        ("upper_95", "95% limits", SERIES_COLOURS["limit_95"], "dash"),
        ("lower_95", None, SERIES_COLOURS["limit_95"], "dash"),
        ("target", "Target", SERIES_COLOURS["target"], "solid"),
    ):
        fig.add_trace(
            {
                "type": "scatter",
                "x": n,
                "y": _num(curve[col]),
                "mode": "lines",
                "name": name or col,
                "showlegend": name is not None,
                "legendgroup": col.split("_")[-1],
                "line": {"color": colour, "dash": dash, "width": 1.5},
                "hoverinfo": "skip",
            }
        )
    pts = points.sort_values(["label", "denominator"]).reset_index(drop=True)
    others = pts[pts["label"] != highlight] if highlight else pts
    if not others.empty:
        trace = {
            "type": "scatter",
            "x": _num(others["denominator"]),
            "y": _num(others["rate"]),
            "mode": "markers+text" if label_points else "markers",
            "name": "Sites" if label_points else "Other sites (blinded)",
            "marker": {"color": SERIES_COLOURS["site" if label_points else "peer"], "size": 9},
            "hovertemplate": ("%{text}: " if label_points else "") + "%{y:.1%} of %{x}<extra></extra>",
        }
        if label_points:
            trace["text"] = others["label"].tolist()
            trace["textposition"] = [
                "top center" if i % 2 == 0 else "bottom center" for i in range(len(others))
            ]
        fig.add_trace(trace)
    if highlight:
        me = pts[pts["label"] == highlight]
        if not me.empty:
            fig.add_trace(
                {
                    "type": "scatter",
                    "x": _num(me["denominator"]),
                    "y": _num(me["rate"]),
                    "mode": "markers",
                    "name": highlight,
                    "marker": {"color": SERIES_COLOURS["this_site"], "size": 14, "symbol": "star"},
                    "hovertemplate": highlight + ": %{y:.1%} of %{x}<extra></extra>",
                }
            )
    layout = base_layout(title, x_title="number of patients (denominator)", y_title="rate", percent_y=True)
    # Zoom on the part of the funnel where the sites are: limits from the smallest site's n upwards.
    n_min = pd.to_numeric(pts["denominator"], errors="coerce").min() if not pts.empty else None
    near = curve[curve["n"] >= (n_min or 0) * 0.8] if n_min and not pd.isna(n_min) else curve
    values = pd.concat(
        [pd.to_numeric(near[c], errors="coerce") for c in ("lower_998", "upper_998", "target")]
        + [pd.to_numeric(pts["rate"], errors="coerce")]
    ).dropna()
    if not values.empty:
        span = max(0.02, float(values.max() - values.min()))
        lo = max(0.0, float(values.min()) - 0.1 * span)
        hi = min(1.02, float(values.max()) + 0.1 * span)
        layout["yaxis"].update(range=[round(lo, 4), round(hi, 4)], rangemode="normal")
        layout["xaxis"]["range"] = [0, round(float(pd.to_numeric(curve["n"]).max()) * 1.05, 1)]
    fig.layout = layout
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
    categories: list[str] | None = None,
) -> Fig:
    """Stacked bar chart with a fixed series order and colours (hidden cells already removed)."""
    fig = Fig()
    cats = categories or sorted(frame[x_col].dropna().unique().tolist())
    for series in series_order:
        sub = frame[frame[series_col] == series].groupby(x_col)[value_col].sum().reindex(cats)
        if sub.notna().sum() == 0:
            continue
        fig.add_trace(
            {
                "type": "bar",
                "x": cats,
                "y": _num(sub),
                "name": series,
                "marker": {"color": SERIES_COLOURS.get(series, OKABE_ITO["grey"])},
                "hovertemplate": "%{x}: %{y}<extra>" + series + "</extra>",
            }
        )
    layout = base_layout(title, y_title=y_title)
    layout["barmode"] = "stack"
    layout["xaxis"].update(type="category", categoryorder="array", categoryarray=cats)
    fig.layout = layout
    return fig


def km_chart(curves: pd.DataFrame, title: str) -> Fig:
    """Kaplan-Meier step curves with Greenwood bands (``series``, time_days, survival, ci_low, ci_high)."""
    fig = Fig()
    for series in sorted(curves["series"].unique()):
        sub = curves[curves["series"] == series].sort_values("time_days")
        years = _num(pd.to_numeric(sub["time_days"]) / 365.25)
        colour = SERIES_COLOURS.get(series, OKABE_ITO["blue"])
        fig.add_trace(
            {
                "type": "scatter",
                "x": years,
                "y": _num(sub["ci_high"]),
                "mode": "lines",
                "line": {"width": 0, "shape": "hv"},
                "showlegend": False,
                "hoverinfo": "skip",
                "legendgroup": series,
            }
        )
        fig.add_trace(
            {
                "type": "scatter",
                "x": years,
                "y": _num(sub["ci_low"]),
                "mode": "lines",
                "fill": "tonexty",
                "fillcolor": "rgba(0,114,178,0.12)" if series == "registry" else "rgba(213,94,0,0.12)",
                "line": {"width": 0, "shape": "hv"},
                "showlegend": False,
                "hoverinfo": "skip",
                "legendgroup": series,
            }
        )
        fig.add_trace(
            {
                "type": "scatter",
                "x": years,
                "y": _num(sub["survival"]),
                "mode": "lines",
                "name": SERIES_NAMES.get(series, series),
                "line": {"color": colour, "shape": "hv", "width": 2},
                "legendgroup": series,
                "hovertemplate": "%{x:.1f} y: %{y:.1%}<extra>" + series + "</extra>",
            }
        )
    layout = base_layout(
        title, x_title="years after index POEM", y_title="still a clinical success", percent_y=True
    )
    layout["yaxis"]["range"] = [0, 1.02]
    fig.layout = layout
    return fig


def cusum_chart(lc: pd.DataFrame, title: str, params: str) -> Fig:
    """One operator's Bernoulli CUSUM (and RA-CUSUM when present) with decision limits and parameters."""
    lc = lc.sort_values("case_number")
    x = _num(lc["case_number"])
    fig = Fig()
    fig.add_trace(
        {
            "type": "scatter",
            "x": x,
            "y": _num(lc["bernoulli_cusum"]),
            "mode": "lines+markers",
            "name": "Bernoulli CUSUM",
            "line": {"color": SERIES_COLOURS["registry"]},
            "marker": {"size": 4},
            "hovertemplate": "case %{x}: %{y:.2f}<extra></extra>",
        }
    )
    if lc["racusum"].notna().any():
        fig.add_trace(
            {
                "type": "scatter",
                "x": x,
                "y": _num(lc["racusum"]),
                "mode": "lines",
                "name": "Risk-adjusted CUSUM",
                "line": {"color": SERIES_COLOURS["this_site"], "dash": "dash"},
                "hovertemplate": "case %{x}: %{y:.2f}<extra></extra>",
            }
        )
    for col, name, colour in (
        ("bernoulli_h1", "Decision limit h1 (unacceptable)", SERIES_COLOURS["limit_998"]),
        ("bernoulli_h0", "Decision limit h0 (acceptable)", SERIES_COLOURS["target"]),
        ("racusum_h", "RA-CUSUM limit h", SERIES_COLOURS["limit_95"]),
    ):
        h = pd.to_numeric(lc[col], errors="coerce").dropna()
        if h.empty or not x:
            continue
        fig.add_trace(
            {
                "type": "scatter",
                "x": [x[0], x[-1]],
                "y": [float(h.iloc[-1])] * 2,
                "mode": "lines",
                "name": name,
                "line": {"color": colour, "dash": "dot"},
                "hoverinfo": "skip",
            }
        )
    layout = base_layout(title, x_title="operator case number", y_title="CUSUM")
    layout["annotations"] = [
        {
            "text": params,
            "xref": "paper",
            "yref": "paper",
            "x": 0,
            "y": 1.0,
            "yanchor": "bottom",
            "xanchor": "left",
            "showarrow": False,
            "font": {"size": 11},
        }
    ]
    layout["margin"]["t"] = 70
    fig.layout = layout
    return fig
