"""Open every page of an edition from file:// in headless Chromium (Playwright).

Checks: no console errors, every plotly div rendered an svg once scrolled to (charts are drawn
lazily, as they near the viewport), every chart draws when printing and without
IntersectionObserver, no request leaves the edition folder. Screenshots of the first screen of each
page go to tests/artifacts/screenshots/ (git-ignored); load times are recorded in
tests/artifacts/page_load_times.json, not asserted. One browser for the whole test.

Load time of a page: from navigation to the load event *and* every chart on the first screen drawn
(with eagerly drawn charts the second part is already true at the load event, so the measure is
the same for both ways of drawing).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHARTS = "Array.from(document.querySelectorAll('.plotly-graph-div'))"
DRAWN = "(d => d.querySelector('svg.main-svg'))"
#: Every chart whose container is on the first screen has been drawn.
FIRST_SCREEN_DRAWN = (
    f"{CHARTS}.filter(d => {{ const r = d.getBoundingClientRect(); "
    f"return r.bottom > 0 && r.top < window.innerHeight; }}).every{DRAWN}"
)
#: Scroll to every chart in turn, giving the page two frames to draw each.
SCROLL_TO_EACH_CHART = f"""async () => {{
  for (const d of {CHARTS}) {{
    d.scrollIntoView();
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  }}
  window.scrollTo(0, 0);
}}"""
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]


def test_every_page_renders_offline(published):
    from playwright.sync_api import sync_playwright

    _settings, result = published
    edition = Path(result["edition_path"]).resolve()
    # Every page of the edition: index, system, quality, definitions, each site's page and its single-file
    # report, and the entry page of the GX Data Docs (its inner pages are GX's own templates).
    pages = sorted(
        p for p in edition.rglob("*.html") if "data-docs" not in p.parts or p.parent.name == "data-docs"
    )
    assert len(pages) >= 4 + 2 * 2, [str(p.relative_to(edition)) for p in pages]
    shots = ARTIFACTS / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    outside: list[str] = []
    problems: list[str] = []
    with_charts: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def route(r):
            url = r.request.url
            parsed = urlparse(url)
            if parsed.scheme == "data" or (
                parsed.scheme == "file" and Path(unquote(parsed.path)).resolve().is_relative_to(edition)
            ):
                return r.continue_()
            outside.append(url)
            return r.abort()

        context.route("**/*", route)
        for path in pages:
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load")  # file:// only: nothing left to fetch after load
            page.wait_for_function(FIRST_SCREEN_DRAWN, timeout=15_000)
            timings[str(path.relative_to(edition))] = round(time.perf_counter() - start, 3)
            n_div = page.locator(".plotly-graph-div").count()
            rendered = True
            if n_div:
                page.evaluate(SCROLL_TO_EACH_CHART)
                try:
                    page.wait_for_function(f"{CHARTS}.every{DRAWN}", timeout=15_000)
                except Exception:
                    rendered = False
            n_svg = page.locator(".plotly-graph-div .main-svg").count()
            n_drawn = page.locator(".plotly-graph-div .plot-container").count()
            if errors:
                problems.append(f"{path}: console errors {errors[:3]}")
            if n_div and (not rendered or n_drawn != n_div):
                problems.append(f"{path}: {n_div} plotly divs, {n_drawn} drawn, {n_svg} svgs")
            if n_div > 10:
                with_charts.append(path)
            name = str(path.relative_to(edition)).replace("/", "__").replace(".html", ".png")
            page.screenshot(path=str(shots / name))
            page.close()
        assert with_charts, "no page with more than 10 charts"
        # the fallbacks draw every chart without scrolling: printing, and browsers without IntersectionObserver
        for path in (with_charts[0], with_charts[-1]):
            page = context.new_page()
            page.goto(path.as_uri(), wait_until="load")
            page.emulate_media(media="print")
            _all_drawn(page, f"{path} when printing", problems)
            page.close()
            page = context.new_page()
            page.add_init_script("delete window.IntersectionObserver;")
            page.goto(path.as_uri(), wait_until="load")
            _all_drawn(page, f"{path} without IntersectionObserver", problems)
            page.close()
        browser.close()
    (ARTIFACTS / "page_load_times.json").write_text(json.dumps(timings, indent=2, sort_keys=True))
    assert not outside, f"requests outside the edition folder: {outside[:5]}"
    assert not problems, "\n".join(problems)
    assert len(timings) == len(pages)


def _all_drawn(page, what: str, problems: list[str]) -> None:
    """Every chart on ``page`` draws without any scrolling."""
    n_div = page.locator(".plotly-graph-div").count()
    try:
        page.wait_for_function(f"{CHARTS}.every{DRAWN}", timeout=15_000)
    except Exception:
        n_drawn = page.locator(".plotly-graph-div .plot-container").count()
        problems.append(f"{what}: {n_drawn} of {n_div} charts drawn")
