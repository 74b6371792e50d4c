"""GX Data Docs (static HTML) of the suites and the latest validation results.

GX builds Data Docs only from a file context, so one is created in a temporary
folder, the suites and results are stored in it, the site is built and copied
to ``out_dir``. Results are trimmed to a sample of unexpected values first: a
100k-row file with a systematic failure would otherwise write megabytes of row
indexes into every page.

Offline note: GX's page templates link Bootstrap, jQuery, Font Awesome and Vega
from public CDNs. Without a network the pages still hold all the content (the
HTML is rendered at build time) but lose styling and the sortable index table.
:func:`cdn_references` lists them; the list is also written to
``OFFLINE-NOTE.txt`` in the site.
"""

from __future__ import annotations

import copy
import html
import json
import re
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from poem_registry.quality.catalog import Suite, delivery_suite, load_all

SAMPLE = 20
# Assets a page loads (stylesheets and scripts), not plain links to GX's documentation.
_CDN = re.compile(r"""<(?:link[^>]+href|script[^>]+src|img[^>]+src)=["'](https?://[^"']+)["']""", re.IGNORECASE)


def _escape(value: Any) -> Any:
    """Delivered values as inert text: GX's Data Docs templates insert them into HTML unescaped."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def _trim(result: Any) -> Any:
    """A copy of a GX suite result with unexpected lists cut to a sample, identifier values removed."""
    trimmed = copy.deepcopy(result)
    for r in trimmed.results:
        data = r.result or {}
        identifier = bool(r.expectation_config.meta.get("identifier"))
        for key in ("unexpected_list", "unexpected_index_list", "partial_unexpected_list",
                    "partial_unexpected_index_list", "partial_unexpected_counts"):  # fmt: skip
            if isinstance(data.get(key), list):
                data[key] = [] if identifier and "index" not in key else [_escape(v) for v in data[key][:SAMPLE]]
        data.pop("unexpected_index_query", None)
    return trimmed


def _merge(results: list[Any]) -> Any:
    """One suite result from the chunks GX validated separately."""
    from great_expectations.core import ExpectationSuiteValidationResult

    first = results[0]
    merged = [r for chunk in results for r in chunk.results]
    passed = sum(bool(r.success) for r in merged)
    return ExpectationSuiteValidationResult(
        success=all(r.success for r in merged),
        results=merged,
        suite_name=first.suite_name,
        statistics={
            "evaluated_expectations": len(merged),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(merged) - passed,
            "success_percent": 100.0 * passed / len(merged) if merged else None,
        },
        meta=first.meta,
        batch_id=first.batch_id,
    )


def _collect(items: Iterable[Any]) -> tuple[dict[str, Suite], list[tuple[str, list[Any]]]]:
    """Catalog suites and (label, GX results) pairs from validations, suites or GX results."""
    suites: dict[str, Suite] = {}
    runs: list[tuple[str, list[Any]]] = []
    for item in items:
        if isinstance(item, Suite):
            suites[item.name] = item
        elif hasattr(item, "gx_results"):
            label = getattr(item, "site_id", None) or getattr(item, "run_id", "run")
            if getattr(item, "entity", None):
                suites.setdefault(f"delivery_{item.entity}", delivery_suite(item.entity))
            else:  # a MartValidation: document the mart suites it ran
                suites.update({n: s for n, s in load_all().items() if s.stage == "mart"})
            by_suite: dict[str, list[Any]] = {}
            for r in item.gx_results:
                by_suite.setdefault(r.suite_name, []).append(r)
            runs += [(str(label), chunk) for chunk in by_suite.values()]
        elif hasattr(item, "results") and hasattr(item, "suite_name"):
            runs.append(("run", [item]))
        else:
            raise TypeError(f"build_data_docs cannot document {type(item).__name__}")
    return suites, runs


LATEST_STORED_SQL = """
with latest as (
    select suite, coalesce(site_id, '') as site, max(run_at) as run_at
    from quality.check_results group by suite, coalesce(site_id, '')
)
select r.* from quality.check_results r
join latest l on r.suite = l.suite and coalesce(r.site_id, '') = l.site and r.run_at = l.run_at
order by r.suite, r.site_id, r.check_id
"""


def _stored_results(con: Any, suites: dict[str, Suite]) -> list[tuple[str, list[Any]]]:
    """GX suite results rebuilt from the latest stored run of each suite and site (quality.check_results).

    Only checks still in the catalog are shown; not_applicable checks are left out
    (GX has no such status), errors are shown as raised exceptions.
    """
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    from poem_registry.quality._gx import build_expectation

    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'quality' and table_name = 'check_results'"
    ).fetchone()[0]
    if not exists:
        return []
    runs: list[tuple[str, list[Any]]] = []
    for (suite_name, site), rows in (
        con.execute(LATEST_STORED_SQL).df().groupby(["suite", "site_id"], dropna=False)
    ):
        suite = suites.get(suite_name)
        if suite is None:
            continue
        specs = {c.check_id: c for c in suite.checks}
        results = []
        for row in rows.itertuples():
            if row.check_id not in specs or row.status == "not_applicable":
                continue
            examples = json.loads(row.examples or "[]")
            results.append(
                ExpectationValidationResult(
                    success=row.status == "pass",
                    expectation_config=build_expectation(specs[row.check_id]).configuration,
                    result={
                        "element_count": None if pd.isna(row.element_count) else int(row.element_count),
                        "unexpected_count": None if pd.isna(row.unexpected_count) else int(row.unexpected_count),
                        "unexpected_percent": None if pd.isna(row.unexpected_percent) else float(row.unexpected_percent),
                        "partial_unexpected_list": examples,
                    },
                    exception_info={"raised_exception": row.status == "error", "exception_message": row.message,
                                    "exception_traceback": None},
                )
            )  # fmt: skip
        if results:
            label = f"{site if isinstance(site, str) else 'all'}-{rows['run_id'].iloc[0]}"
            passed = sum(bool(r.success) for r in results)
            runs.append((label, [ExpectationSuiteValidationResult(
                success=passed == len(results), results=results, suite_name=suite_name,
                statistics={"evaluated_expectations": len(results), "successful_expectations": passed,
                            "unsuccessful_expectations": len(results) - passed,
                            "success_percent": 100.0 * passed / len(results)},
                meta={"run_id": rows["run_id"].iloc[0], "stored_at": str(rows["run_at"].iloc[0])},
            )]))  # fmt: skip
    return runs


def cdn_references(site_dir: Path) -> list[str]:
    """Distinct external (http/https) asset URLs the HTML pages load."""
    found: set[str] = set()
    for page in Path(site_dir).rglob("*.html"):
        found.update(_CDN.findall(page.read_text(encoding="utf-8", errors="replace")))
    return sorted(u for u in found if not u.startswith("https://greatexpectations.io"))


def build_data_docs(
    results_or_suites: Iterable[Any] | None = None, out_dir: Path | None = None, *, con: Any = None
) -> Path:
    """Build GX Data Docs for suites and validation results into ``out_dir``; returns its index.html.

    ``results_or_suites``: DeliveryValidation / MartValidation objects, catalog
    :class:`Suite` objects or GX suite results; None documents every catalog suite.
    ``con``: a warehouse connection; the latest stored results of each suite and site
    (``quality.check_results``) are documented too, so an edition built in another
    process than the validation still shows them.
    """
    if out_dir is None:
        raise TypeError("build_data_docs needs out_dir")
    from poem_registry.quality._gx import build_suite, gx_modules

    gx, _ = gx_modules()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    items = list(results_or_suites) if results_or_suites is not None else list(load_all().values())
    suites, runs = _collect(items)
    if con is not None:
        suites.update({n: s for n, s in load_all().items() if n not in suites})
        runs += _stored_results(con, suites)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="poem_gx_docs_") as tmp:
        context = gx.get_context(mode="file", project_root_dir=tmp)
        for suite in suites.values():
            gx_suite = copy.deepcopy(build_suite(suite.name, list(suite.checks)))
            context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=gx_suite.expectations,
                                                   meta={"notes": f"POEM Registry check catalog {suite.path.name}"}))  # fmt: skip
        run_time = datetime.now(UTC)
        for i, (label, chunks) in enumerate(runs):
            result = _trim(_merge(chunks))
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=RunIdentifier(run_name=f"{label}", run_time=run_time),
                batch_identifier=f"{label}-{i}",
            )
            context.validation_results_store.set(key, result)
        context.build_data_docs()
        site = Path(tmp) / "gx" / "uncommitted" / "data_docs" / "local_site"
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(site, out_dir, dirs_exist_ok=True)
    cdn = cdn_references(out_dir)
    removed = strip_external_assets(out_dir)
    (out_dir / "OFFLINE-NOTE.txt").write_text(
        "GX's Data Docs templates load styling and scripts from public CDNs. Editions must work offline\n"
        f"and make no outside requests, so those {removed} tag(s) were removed: the pages keep all their\n"
        "content with simpler styling. The removed URLs:\n" + "".join(f"  {u}\n" for u in cdn),
        encoding="utf-8",
    )
    return out_dir / "index.html"


_EXTERNAL_TAG = re.compile(
    r"""<link[^>]+href=["']https?://[^"']+["'][^>]*>|<script[^>]+src=["']https?://[^"']+["'][^>]*>\s*</script>"""
    r"""|<img[^>]+src=["']https?://[^"']+["'][^>]*>""",
    re.IGNORECASE,
)
_LOCAL_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}.hide{display:none}</style>"
)


_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)


def strip_external_assets(site_dir: Path) -> int:
    """Remove CDN <link>/<script>/<img> tags from the Data Docs pages (offline editions, no outside requests).

    GX's inline scripts need the jQuery/Bootstrap just removed, so they go too: the pages are static HTML
    whose content is all server-rendered.
    """
    removed = 0
    for page in Path(site_dir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new, n = _EXTERNAL_TAG.subn("", text)
        if n:
            new = _INLINE_SCRIPT.sub("", new)
            removed += n
            page.write_text(new.replace("</head>", _LOCAL_STYLE + "</head>", 1), encoding="utf-8")
    return removed
