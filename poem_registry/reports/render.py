"""Render an edition's pages to static HTML: Jinja2 templates from ``settings.templates_dir``.

Every page of an edition links one local ``assets/plotly.min.js`` (copied from the
templates' ``static/`` folder, never a CDN); the single-file site report inlines it
with the CSS and its CSV downloads (as ``data:`` links) so it works as an e-mail
attachment. Output depends only on the warehouse rows, the period, the as-of date
and the run id, so two renders of the same data are byte-identical.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from dataclasses import asdict
from pathlib import Path

import jinja2
import pandas as pd

from poem_registry.reports.figures import PLOTLY_CONFIG, FigureBlock
from poem_registry.reports.pages import EditionContext, Page
from poem_registry.reports.suppression import SMALL_CELL_MIN
from poem_registry.safe_csv import write_csv


def environment(templates_dir: Path) -> jinja2.Environment:
    if not (Path(templates_dir) / "page.html").exists():
        raise FileNotFoundError(
            f"report templates not found in {templates_dir} (expected page.html there); set "
            "POEM_TEMPLATES_DIR to the repository's reports/ folder"
        )
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


#: The plotly.js "basic" bundle (npm ``plotly.js-basic-dist-min``, the plotly.js version the installed
#: plotly package ships): scatter, bar and pie traces, all the reports draw
#: (:data:`~poem_registry.reports.figures.BUNDLE_TRACE_TYPES`). 1.2 MB instead of the full bundle's
#: 4.8 MB, which took a browser seconds to parse on every page.
PLOTLY_BUNDLE = "plotly-basic.min.js"


@functools.lru_cache(maxsize=8)
def plotly_js(templates_dir: str) -> str:
    return (Path(templates_dir) / "static" / PLOTLY_BUNDLE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _read_css(templates_dir: str) -> str:
    return (Path(templates_dir) / "static" / "report.css").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _inline_js(templates_dir: str) -> str:
    return plotly_js(templates_dir).replace("</script", "<\\/script")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _figure_html(block: FigureBlock) -> str:
    if block.figure is None:
        return ""
    return block.figure.to_html(block.fig_id, PLOTLY_CONFIG)


def _csv_text(frame: pd.DataFrame, tmp: Path) -> str:
    write_csv(frame, tmp)
    text = tmp.read_text(encoding="utf-8")
    tmp.unlink()
    return text


class Renderer:
    """Writes pages of one edition under ``root`` (the edition folder)."""

    def __init__(self, ctx: EditionContext, templates_dir: Path, root: Path) -> None:
        self.ctx = ctx
        self.templates_dir = Path(templates_dir)
        self.env = environment(self.templates_dir)
        self.root = Path(root)
        self.files: list[Path] = []

    def common(self) -> dict:
        return {
            "registry_name": self.ctx.registry_name,
            "period": self.ctx.period,
            "as_of": self.ctx.as_of.isoformat(),
            "run_id": self.ctx.run_id,
            "min_cell": SMALL_CELL_MIN,
        }

    def write_assets(self) -> None:
        write_text(self.root / "assets" / "plotly.min.js", plotly_js(str(self.templates_dir)))
        write_text(self.root / "assets" / "report.css", self.css())
        self.files += [self.root / "assets" / "plotly.min.js", self.root / "assets" / "report.css"]

    def css(self) -> str:
        return _read_css(str(self.templates_dir))

    def _blocks(self, page: Page):
        for section in page.sections:
            yield from section.blocks

    def render_page(self, page: Page, *, single_file: Path | None = None) -> Path:
        """Write ``<root>/<slug>/index.html`` (and its CSVs), or one self-contained file at ``single_file``."""
        page_dir = self.root / page.slug
        has_figures = False
        for block in self._blocks(page):
            if isinstance(block, FigureBlock):
                has_figures = has_figures or block.figure is not None
                if not block.html:
                    block.html = _figure_html(block)
                extra = getattr(block, "extra_csv", {}) or {}
                if single_file is None:
                    write_csv(block.data, page_dir / "data" / block.csv_name)
                    self.files.append(page_dir / "data" / block.csv_name)
                    block.csv_href = f"data/{block.csv_name}"  # type: ignore[attr-defined]
                    # the single-file report of the same page embeds the same CSV: keep its text
                    block.csv_text = (page_dir / "data" / block.csv_name).read_text(encoding="utf-8")  # type: ignore[attr-defined]
                    for name, frame in sorted(extra.items()):
                        write_csv(frame, page_dir / "data" / name)
                        self.files.append(page_dir / "data" / name)
                else:
                    text = getattr(block, "csv_text", None)
                    if text is None:
                        text = _csv_text(block.data, single_file.parent / f".{block.csv_name}.tmp")
                    block.csv_href = "data:text/csv;charset=utf-8," + urllib.parse.quote(text)  # type: ignore[attr-defined]
        template = self.env.get_template("page.html")
        html = template.render(
            page=page,
            root="../" * page.depth,
            has_figures=has_figures,
            inline_css=self.css() if single_file else None,
            inline_js=_inline_js(str(self.templates_dir)) if single_file else None,
            **self.common(),
        )
        out = single_file or page_dir / "index.html"
        write_text(out, html)
        self.files.append(out)
        return out

    def render_edition_index(self, sites: list) -> Path:
        from types import SimpleNamespace

        page = SimpleNamespace(
            title="Edition overview",
            nav=True,
            warnings=list(self.ctx.warnings),
            intro="This edition of the registry reports. Start with the system report for the "
            "whole registry, or open a site's own report.",
        )
        html = self.env.get_template("edition_index.html").render(
            page=page,
            root="",
            has_figures=False,
            inline_css=None,
            inline_js=None,
            sites=sorted(sites, key=lambda s: s.name),
            **self.common(),
        )
        out = self.root / "index.html"
        write_text(out, html)
        self.files.append(out)
        return out

    def write_json(self, name: str, payload: dict) -> Path:
        out = self.root / name
        write_text(out, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        self.files.append(out)
        return out


def render_published_index(
    templates_dir: Path, registry_name: str, editions: list[dict], blocked: dict | None
) -> str:
    env = environment(templates_dir)
    css = (Path(templates_dir) / "static" / "report.css").read_text(encoding="utf-8")
    return env.get_template("published_index.html").render(
        registry_name=registry_name, editions=editions, blocked=blocked, css=css
    )


def page_as_dict(page: Page) -> dict:
    """A page's outline (titles only), for edition.json."""
    return {
        "slug": page.slug,
        "title": page.title,
        "sections": [{"id": s.id, "title": s.title} for s in page.sections],
    }


__all__ = ["Renderer", "asdict", "page_as_dict", "render_published_index", "write_text"]
