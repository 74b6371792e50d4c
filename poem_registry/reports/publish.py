"""Publishing an edition: render into a temporary folder, then swap it in atomically.

Layout under ``settings.published_dir``::

    index.html                  every edition, newest first, with what changed
    editions.json               edition ids in publishing order (feeds index.html)
    editions/<period>__<run_id>/  one edition (see README "Reports")
    latest -> editions/<id>     symlink, replaced atomically (rename of a new link)
    latest.json                 the same for platforms without symlinks
    last_blocked.json           why the last attempt did not publish, if it did not

A failed quality gate publishes nothing and leaves ``latest`` alone. A write error
(disk full, permissions) removes the half-written temporary folder, leaves the
previous edition online and raises :class:`PublishError` naming what failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from poem_registry.faults import fault_point
from poem_registry.reports import pages as P
from poem_registry.reports.data import ReportData
from poem_registry.reports.measures_export import measures_frame
from poem_registry.reports.periods import parse_period
from poem_registry.reports.render import Renderer, page_as_dict, render_published_index
from poem_registry.safe_csv import write_csv
from poem_registry.settings import Settings

log = logging.getLogger(__name__)


def edition_name(period_label: str, run_id: str) -> str:
    """Folder name of an edition: the period and the run, safe in paths and URLs (Airflow run ids hold ':' and '+')."""
    return f"{period_label}__{re.sub(r'[^A-Za-z0-9_.-]+', '-', run_id).strip('-')}"
Progress = Callable[[str], None]


class PublishError(RuntimeError):
    """Writing the edition failed; the previous edition is still the latest."""


def _quiet(msg: str) -> None:
    log.info(msg)


def _site_infos(data: ReportData, settings: Settings) -> list[P.SiteInfo]:
    """Sites in the edition: those in dim_site or with rows in the measures mart, named from the site YAML.

    ``marts.dim_site`` carries no names; a site without a YAML file (removed since it delivered) is shown
    under its site_id.
    """
    configs = {}
    try:
        from poem_registry.sites import load_sites

        configs = {s.site_id: s for s in load_sites(settings.sites_dir)}
    except Exception as exc:  # a report without readable site YAML still works, named by site_id
        log.warning(
            "site configs not read from %s (%s); sites are named by their site_id", settings.sites_dir, exc
        )
    dim = data.read("sites")
    ids = {str(s) for s in dim["site_id"].dropna()}
    measures = data.read("measures")
    ids |= {str(s) for s in measures["site_id"].dropna()} - {P.ALL}
    out = []
    for sid in sorted(ids):
        cfg = configs.get(sid)
        out.append(
            P.SiteInfo(
                site_id=sid,
                name=str(cfg.name) if cfg and cfg.name else sid,
                landing=cfg.landing_name if cfg else sid,
                cadence_days=int(cfg.expected_cadence_days) if cfg else 31,
            )
        )
    return out


def _gate_warnings(gate: dict | None) -> list[str]:
    warnings = []
    for w in (gate or {}).get("warnings") or []:
        warnings.append(w if isinstance(w, str) else str(w.get("message") or w))
    return sorted(warnings)


DOCS_KEY_FILE = ".data_docs_key"


def _data_docs_key(settings: Settings, con: duckdb.DuckDBPyConnection) -> str | None:
    """What the Data Docs are built from: the stored check results and the expectation catalog."""
    try:
        row = con.execute(
            "select count(*), max(run_at), max(run_id), count(distinct run_id) from quality.check_results"
        ).fetchone()
    except duckdb.Error:
        return None
    digest = hashlib.sha256(repr(tuple(str(v) for v in row)).encode())
    for path in sorted(Path(settings.expectations_dir).rglob("*")) if settings.expectations_dir else []:
        if path.is_file():
            digest.update(str(path.relative_to(settings.expectations_dir)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _previous_docs(settings: Settings, key: str) -> Path | None:
    """The Data Docs folder of the latest published edition when it was built from the same inputs."""
    latest = Path(settings.published_dir) / "latest.json"
    if not latest.exists():
        return None
    try:
        edition = Path(json.loads(latest.read_text(encoding="utf-8"))["path"])
    except (ValueError, KeyError, OSError):
        return None
    docs = edition / "quality" / "data-docs"
    marker = docs / DOCS_KEY_FILE
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == key:
        return docs
    return None


def _warehouse_docs(settings: Settings, out_dir: Path) -> str | None:
    """The dbt docs of the build behind this edition (one static HTML file written by the build stage)."""
    from poem_registry.build import static_docs_path
    from poem_registry.quality.docs import strip_external_assets

    source = static_docs_path(settings)
    if not source.is_file():
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_dir / "warehouse-docs.html")
    strip_external_assets(out_dir)  # offline editions: no fonts or scripts from outside
    return "warehouse-docs.html"


def _data_docs(settings: Settings, con: duckdb.DuckDBPyConnection, out_dir: Path) -> tuple[str | None, str]:
    """Build GX Data Docs into the edition when the quality module provides them.

    Building them takes seconds (Great Expectations renders every suite); when the stored check results
    and the expectation catalog have not changed since the latest edition, its Data Docs are copied.
    """
    key = _data_docs_key(settings, con)
    previous = _previous_docs(settings, key) if key else None
    if previous is not None:
        shutil.copytree(previous, out_dir)
    else:
        try:
            from poem_registry.quality import build_data_docs
        except ImportError:
            return None, (
                "Great Expectations Data Docs are not part of this installation yet "
                "(poem_registry.quality.build_data_docs is not available)."
            )
        try:
            params = inspect.signature(build_data_docs).parameters
            kwargs = {"out_dir": out_dir}
            if "settings" in params:
                kwargs["settings"] = settings
            if "con" in params:
                kwargs["con"] = con
            build_data_docs(**kwargs)
        except Exception as exc:
            log.warning("GX Data Docs could not be built: %s", exc)
            return None, f"Great Expectations Data Docs could not be built for this edition: {exc}"
        if key:
            (out_dir / DOCS_KEY_FILE).write_text(key + "\n", encoding="utf-8")
    index = next((p for p in sorted(out_dir.rglob("index.html"))), None)
    if index is None:
        return None, "Great Expectations Data Docs were built but contain no index.html."
    return os.path.relpath(index, out_dir.parent), ""


def build_edition(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    out_dir: Path,
    *,
    run_id: str,
    as_of: date,
    period: str | None,
    gate: dict | None = None,
    data_docs: bool = True,
    progress: Progress = _quiet,
) -> dict:
    """Render every page of one edition into ``out_dir`` (which must not exist yet); returns its summary."""
    per = parse_period(period, as_of)
    edition_id = edition_name(per.label, run_id)
    data = ReportData(con)
    sites = _site_infos(data, settings)
    ctx = P.EditionContext(
        registry_name=settings.registry_name,
        period=per,
        as_of=as_of,
        run_id=run_id,
        edition_id=edition_id,
        sites=sites,
        warnings=_gate_warnings(gate),
        data=data,
        gate=gate or {},
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)
    r = Renderer(ctx, settings.templates_dir, out_dir)
    r.write_assets()
    progress(f"  edition {edition_id}: system report")
    system = P.system_page(ctx)
    r.render_page(system)
    progress("  definitions and data-quality pages")
    r.render_page(P.definitions_page(ctx, _warehouse_docs(settings, out_dir / "definitions")))
    docs_href, docs_note = (None, "Data Docs were not built for this render.")
    if data_docs:
        docs_href, docs_note = _data_docs(settings, con, out_dir / "quality" / "data-docs")
    r.render_page(P.quality_page(ctx, docs_href, docs_note))
    for site in sites:
        progress(f"  site report {site.site_id}")
        page = P.site_page(ctx, site)
        r.render_page(page)
        r.render_page(page, single_file=out_dir / "sites" / site.site_id / f"report_{site.site_id}.html")
    r.render_edition_index(sites)
    measures = measures_frame(data)
    write_csv(measures, out_dir / "measures.csv")
    from poem_registry.reports import dq

    quarantines = dq.open_quarantines(data)
    summary = {
        "edition": edition_id,
        "period": per.label,
        "period_start": per.start.isoformat(),
        "period_end": per.end.isoformat(),
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "sites": [s.site_id for s in sites],
        "headline": P.headline_summary(ctx),
        "open_quarantines": sorted(quarantines["batch_id"].astype(str).tolist())
        if not quarantines.empty
        else [],
        "warnings": ctx.warnings,
        "measures_rows": len(measures),
        "pages": [page_as_dict(system)],
    }
    r.write_json("edition.json", summary)
    return summary


# --------------------------------------------------------------------------- atomic file operations


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _point_latest(published: Path, edition_id: str) -> None:
    """Repoint ``latest`` by renaming a fresh symlink over it (atomic on POSIX), then write latest.json."""
    target = Path("editions") / edition_id
    link = published / "latest"
    tmp = published / f".latest.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise
        log.info("symlinks not available here (%s); latest.json alone marks the latest edition", exc)
    _atomic_write(
        published / "latest.json",
        json.dumps(
            {
                "edition": edition_id,
                "path": str(published / target),
                "index_html": str(published / target / "index.html"),
            },
            indent=2,
        )
        + "\n",
    )


def _load_editions(published: Path) -> list[str]:
    f = published / "editions.json"
    if f.exists():
        return list(json.loads(f.read_text(encoding="utf-8")).get("editions", []))
    root = published / "editions"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def _changes(new: dict, old: dict | None) -> list[str]:
    if old is None:
        return []
    out = []
    old_h = {(h["measure_id"], h.get("denominator_type")): h for h in old.get("headline", [])}
    for h in new.get("headline", []):
        o = old_h.get((h["measure_id"], h.get("denominator_type")))
        if o and h.get("rate") is not None and o.get("rate") is not None and h["rate"] != o["rate"]:
            den = f" {h['denominator_type']}" if h.get("denominator_type") in ("PP", "ITT") else ""
            out.append(
                f"{h['name']}{den}: {100 * o['rate']:.1f}% → {100 * h['rate']:.1f}% "
                f"({100 * (h['rate'] - o['rate']):+.1f} pp)"
            )
    new_sites = sorted(set(new.get("sites", [])) - set(old.get("sites", [])))
    if new_sites:
        out.append("new sites: " + ", ".join(new_sites))
    new_q = sorted(set(new.get("open_quarantines", [])) - set(old.get("open_quarantines", [])))
    if new_q:
        out.append(f"{len(new_q)} new quarantine(s): " + ", ".join(new_q))
    resolved = sorted(set(old.get("open_quarantines", [])) - set(new.get("open_quarantines", [])))
    if resolved:
        out.append(f"{len(resolved)} quarantine(s) resolved")
    return out or ["no change in headline measures, sites or quarantines"]


def write_published_index(settings: Settings) -> Path:
    """(Re)write ``<published>/index.html`` from the editions on disk, newest first."""
    published = settings.published_dir
    ids = [e for e in _load_editions(published) if (published / "editions" / e / "edition.json").exists()]
    summaries = {
        e: json.loads((published / "editions" / e / "edition.json").read_text(encoding="utf-8")) for e in ids
    }
    latest = None
    if (published / "latest.json").exists():
        latest = json.loads((published / "latest.json").read_text(encoding="utf-8")).get("edition")
    rows = []
    for i, e in enumerate(ids):
        s = summaries[e]
        rows.append(
            {
                "edition": e,
                "period": s.get("period"),
                "as_of": s.get("as_of"),
                "run_id": s.get("run_id"),
                "latest": e == latest,
                "changes": _changes(s, summaries[ids[i - 1]] if i else None),
            }
        )
    blocked = None
    if (published / "last_blocked.json").exists():
        blocked = json.loads((published / "last_blocked.json").read_text(encoding="utf-8"))
        last_pub = summaries.get(latest or "", {}).get("run_id")
        if blocked.get("published_after") or blocked.get("run_id") == last_pub:
            blocked = None
    html = render_published_index(
        settings.templates_dir, settings.registry_name, list(reversed(rows)), blocked
    )
    out = published / "index.html"
    _atomic_write(out, html)
    return out


def _block(settings: Settings, run_id: str, gate: dict, progress: Progress) -> dict:
    reasons = [str(r) for r in gate.get("reasons") or ["the quality gate did not allow publishing"]]
    message = "publishing stopped: " + "; ".join(reasons)
    progress(message)
    published = settings.published_dir
    latest = None
    if (published / "latest.json").exists():
        latest = json.loads((published / "latest.json").read_text(encoding="utf-8")).get("edition")
    record = {
        "run_id": run_id,
        "reasons": reasons,
        "blocked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "latest_edition": latest,
    }
    try:
        published.mkdir(parents=True, exist_ok=True)
        _atomic_write(published / "last_blocked.json", json.dumps(record, indent=2) + "\n")
        if (published / "editions.json").exists():
            write_published_index(settings)
    except OSError as exc:
        log.warning("could not record the blocked publish in %s: %s", published, exc)
    return {
        "status": "blocked",
        "message": message,
        "reasons": reasons,
        "run_id": run_id,
        "latest_edition": latest,
    }


def publish_edition(
    settings: Settings,
    *,
    run_id: str,
    as_of: date | None = None,
    period: str | None = None,
    gate: dict | None = None,
    progress: Progress = _quiet,
    data_docs: bool = True,
) -> dict:
    """Render and publish one edition, unless the gate says ``publish_allowed: False``.

    ``data_docs=False`` leaves the Great Expectations Data Docs out (the quality page says so).

    Returns ``{"status": "published", "edition", "edition_path", "index_html", "system_report", "sites",
    "files", "measures_rows", "headline", "warnings"}`` or ``{"status": "blocked", "message", "reasons"}``.
    Raises :class:`PublishError` when writing fails (the previous edition stays the latest).
    """
    if gate is not None and not gate.get("publish_allowed", True):
        return _block(settings, run_id, gate, progress)
    from poem_registry.warehouse import connect

    started = time.perf_counter()
    as_of = as_of or date.today()
    published = Path(settings.published_dir)
    per = parse_period(period, as_of)
    edition_id = edition_name(per.label, run_id)
    final = published / "editions" / edition_id
    staging: Path | None = None
    step = f"creating a temporary folder next to {published}"
    try:
        published.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{published.name}-staging-", dir=published.parent))
        step = f"rendering the edition into {staging}"
        progress(f"publishing edition {edition_id} ...")
        with connect(settings.warehouse_path, read_only=True, timeout=settings.warehouse_lock_timeout) as con:
            summary = build_edition(
                con,
                settings,
                staging / edition_id,
                run_id=run_id,
                as_of=as_of,
                period=period,
                gate=gate,
                progress=progress,
                data_docs=data_docs,
            )
        fault_point("publish.after_render")
        step = f"moving the edition into {final.parent}"
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # the same run published again: swap, then drop the old copy
            old = staging / "replaced"
            os.rename(final, old)
        os.rename(staging / edition_id, final)
        fault_point("publish.before_latest")
        step = f"repointing {published / 'latest'}"
        _point_latest(published, edition_id)
        step = f"updating {published / 'index.html'}"
        ids = [e for e in _load_editions(published) if e != edition_id] + [edition_id]
        _atomic_write(published / "editions.json", json.dumps({"editions": ids}, indent=2) + "\n")
        if (published / "last_blocked.json").exists():
            blocked = json.loads((published / "last_blocked.json").read_text(encoding="utf-8"))
            blocked["published_after"] = edition_id
            _atomic_write(published / "last_blocked.json", json.dumps(blocked, indent=2) + "\n")
        index = write_published_index(settings)
    except OSError as exc:
        latest = None
        with contextlib.suppress(Exception):
            latest = json.loads((published / "latest.json").read_text(encoding="utf-8")).get("edition")
        raise PublishError(
            f"publishing failed while {step}: {exc.strerror or exc} ({exc.filename or ''}). Nothing was "
            f"half-published: the latest edition is still {latest or 'none (no edition published yet)'}. Free "
            f"disk space or fix the permissions of {published}, then run the publish step again."
        ) from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    files = sum(1 for p in final.rglob("*") if p.is_file())
    progress(
        f"published {edition_id}: {len(summary['sites'])} site reports, {files} files in "
        f"{time.perf_counter() - started:.1f} s -> {final}"
    )
    return {
        "status": "published",
        "edition": edition_id,
        "edition_path": str(final),
        "index_html": str(index),
        "latest": str(published / "latest"),
        "system_report": str(final / "system" / "index.html"),
        "sites": len(summary["sites"]),
        "files": files,
        "measures_rows": summary["measures_rows"],
        "headline": summary["headline"],
        "warnings": summary["warnings"],
        "period": per.label,
        "as_of": as_of.isoformat(),
        "run_id": run_id,
    }
