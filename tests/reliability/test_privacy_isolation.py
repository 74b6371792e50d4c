"""Leak scan over every artifact of the end-to-end run, site isolation, hostile text, the secret.

The scan looks for every clear patient and operator identifier (``truth/identifiers.csv``), the
planted names, phones and emails, and the session's pseudonymization secret, in: every warehouse
table (raw history, ledger, findings, quality results, marts), every file under POEM_HOME except the
site deliveries in ``landing/`` (logs incl. the captured pipeline log and dbt logs, quarantine reports
and rejected-row CSVs, published HTML/CSV/JSON, GX Data Docs). ``truth/`` lives outside POEM_HOME.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.reliability.helpers import (
    FORMULAS,
    HOSTILE_CODE,
    HOSTILE_NAME,
    HOSTILE_SITE,
    REPO,
    SCRIPT_MARKER,
    SESSION_SECRET,
)

pytestmark = pytest.mark.xdist_group("reliability")

TEXT_SUFFIXES = {".html", ".csv", ".json", ".md", ".log", ".txt", ".js", ".yml", ".yaml", ".sql", ".xml", ""}
#: Third-party libraries copied verbatim into editions: no data, and full of digit runs.
VENDOR = re.compile(r"plotly[^/]*\.js$")
_BIG_SCRIPT = re.compile(r"<script[^>]*>.{20000,}?</script>", re.S)


def _identifiers(e2e) -> list[str]:
    ids = set(pd.read_csv(e2e.truth_dir / "identifiers.csv", dtype=str)["value"].dropna())
    planted = e2e.generation.planted_identifiers
    for values in (planted.get("values") or {}).values():
        ids |= set(values)
    ids |= set(e2e.generation.clear_identifiers.get("operator_ids", []))
    assert len(ids) > 50 and planted.get("values"), "the demo must plant names, phones and emails"
    return sorted(ids, key=len, reverse=True)


def _pattern(values: list[str]) -> re.Pattern:
    # bounded so that an id is not found inside a longer number or word (e.g. 0.12345678 or a hash)
    return re.compile(r"(?<![\w.])(?:" + "|".join(re.escape(v) for v in values) + r")(?![\w])")


def _artifact_files(e2e) -> list[Path]:
    home = e2e.settings.home
    skip = {e2e.settings.landing_dir, e2e.settings.secret_file.parent}
    files = []
    for p in sorted(home.rglob("*")):
        if p.is_symlink() or not p.is_file() or any(s in p.parents for s in skip):
            continue
        if p.suffix.lower() in TEXT_SUFFIXES and not VENDOR.search(p.name):
            files.append(p)
    return files


def _warehouse_text(warehouse: Path) -> dict[str, str]:
    out = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
        for schema, table in tables:
            frame = con.execute(f'select * from "{schema}"."{table}"').df()
            out[f"{schema}.{table}"] = frame.to_csv(index=False)
    return out


def test_leak_scan_finds_no_identifier_nor_secret_in_any_artifact(e2e, scoreboard):
    ids = _identifiers(e2e)
    pattern = _pattern([*ids, SESSION_SECRET])
    files = _artifact_files(e2e)
    kinds = {p.suffix for p in files}
    assert {".html", ".csv", ".json", ".md", ".log"} <= kinds, kinds
    assert any("quarantine" in p.parts for p in files) and any(p.name.startswith("rejected_") for p in files)
    assert e2e.log_file in files and e2e.log_file.stat().st_size > 1000
    hits: list[str] = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        hits += [f"{p.relative_to(e2e.settings.home)}: {m.group(0)}" for m in pattern.finditer(text)]
    tables = _warehouse_text(e2e.settings.warehouse_path)
    assert {"raw.procedures", "ingest.findings", "ingest.batches"} <= set(tables)
    for name, text in tables.items():
        hits += [f"warehouse {name}: {m.group(0)}" for m in pattern.finditer(text)]
    # the scan itself works: the same pattern finds the identifiers in the site deliveries
    landing = next(e2e.settings.landing_dir.glob("riverside/*/procedures.csv")).read_text(encoding="utf-8")
    assert pattern.search(landing)
    scoreboard.leak_scan = {
        "hits": len(hits),
        "files": len(files),
        "tables": len(tables),
        "identifiers": len(ids),
    }
    assert hits == [], hits[:20]


def test_data_docs_are_scanned_when_present(e2e):
    docs = list((e2e.edition / "quality" / "data-docs").rglob("*.html"))
    scanned = set(_artifact_files(e2e))
    for p in docs:
        assert p.resolve() in {s.resolve() for s in scanned}


def test_secret_is_nowhere_in_the_repository_logs_or_settings(e2e):
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    demo_key = REPO / "var" / "secrets" / "pseudonym.key"
    secrets = [SESSION_SECRET] + ([demo_key.read_text().strip()] if demo_key.is_file() else [])
    for rel in tracked:
        p = REPO / rel
        if p.is_file() and p.stat().st_size < 5_000_000:
            data = p.read_bytes()
            assert not any(s.encode() in data for s in secrets if s), rel
    check = subprocess.run(["git", "check-ignore", "-q", "var/secrets/pseudonym.key"], cwd=REPO)
    assert check.returncode == 0, "the demo secret's folder must be git-ignored"
    # what the pipeline hands to subprocesses (dbt, Airflow workers) names the secret's file, never its value
    assert SESSION_SECRET not in json.dumps(e2e.settings.as_env())
    airflow_logs = e2e.settings.airflow_home / "logs"
    for p in airflow_logs.rglob("*") if airflow_logs.exists() else []:
        if p.is_file():
            assert SESSION_SECRET not in p.read_text(errors="replace"), p


# --------------------------------------------------------------------------- isolation


def _site_texts(edition: Path, site_id: str) -> dict[Path, str]:
    out = {}
    for p in sorted((edition / "sites" / site_id).rglob("*")):
        if p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace")
            out[p] = _BIG_SCRIPT.sub("<script></script>", text)  # the inlined plotly library
    return out


def _names(e2e) -> dict[str, str]:
    from poem_registry.sites import load_sites

    return {s.site_id: s.name for s in load_sites(e2e.settings.sites_dir)}


COUNT_COLUMNS = re.compile(
    r"^(n|count|numerator|denominator|events|n_\w+|\w+_n|\w+_count|patients|procedures)$"
)
OWN_ROW = re.compile(r"your site|^you$|^this site$", re.I)


def _cross_site_small_counts(path: Path, site_id: str, site_name: str) -> list[str]:
    """Counts of other sites (peers, registry) in a site's figure data that are between 1 and 10."""
    try:
        frame = pd.read_csv(path, dtype=str)
    except pd.errors.EmptyDataError:
        return []
    if "-limits" in path.name:  # funnel control limits over n = 1..N: a grid, not counts of anyone
        return []
    label_cols = [c for c in frame.columns if c in ("label", "series", "site", "site_id", "group")]
    if not label_cols:
        return []
    bad = []
    for _, row in frame.iterrows():
        labels = " ".join(str(row[c]) for c in label_cols)
        if OWN_ROW.search(labels) or site_id in labels.split() or site_name in labels:
            continue
        for col in (c for c in frame.columns if COUNT_COLUMNS.match(c)):
            try:
                v = float(row[col])
            except (TypeError, ValueError):
                continue
            if 1 <= v <= 10:
                bad.append(f"{path.name}: {labels} {col}={row[col]}")
    return bad


def test_each_site_report_shows_only_its_own_site(e2e, scoreboard):
    names = _names(e2e)
    sites = json.loads((e2e.edition / "edition.json").read_text(encoding="utf-8"))["sites"]
    assert len(sites) >= 5  # a tiny demo site may have its only delivery quarantined
    violations = []
    for site in sites:
        texts = _site_texts(e2e.edition, site)
        assert any(p.name == "index.html" for p in texts) and any(p.suffix == ".csv" for p in texts)
        for other in set(names) - {site}:
            words = [re.escape(other), re.escape(names[other]), re.escape(_html_escape(names[other]))]
            pat = re.compile(r"(?<![\w-])(?:" + "|".join(words) + r")(?![\w-])")
            violations += [f"{site}: {p.name} mentions {other}" for p, t in texts.items() if pat.search(t)]
        for p in texts:
            if p.suffix == ".csv":
                violations += [f"{site}: {v}" for v in _cross_site_small_counts(p, site, names[site])]
    scoreboard.isolation = {"sites": len(sites), "violations": len(violations)}
    assert violations == [], violations[:20]


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _nginx_locations(conf: str) -> list[tuple[str, str | None, str]]:
    """(kind, regex or prefix, auth_basic_user_file) for each location block, in file order."""
    out = []
    for m in re.finditer(r"location\s+(~\s+|=\s+)?(\S+)\s*\{(.*?)\n    \}", conf, re.S):
        kind = (m.group(1) or "").strip() or "prefix"
        auth = re.search(r"auth_basic_user_file\s+(\S+);", m.group(3))
        deny = "deny all" in m.group(3)
        out.append((kind, m.group(2), auth.group(1) if auth else ("DENY" if deny else None)))
    return out


def _auth_for(uri: str, locations) -> str | None:
    """nginx's choice: an exact match, else the first matching regex, else the longest prefix."""
    for kind, loc, auth in locations:
        if kind == "=" and uri == loc:
            return auth
    for kind, loc, auth in locations:
        if kind == "~":
            m = re.search(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", loc), uri)  # PCRE named groups -> Python
            if m:
                return auth.replace("$site_id", m.groupdict().get("site_id") or "") if auth else auth
    prefixes = [(loc, auth) for kind, loc, auth in locations if kind == "prefix" and uri.startswith(loc)]
    return max(prefixes, key=lambda x: len(x[0]))[1] if prefixes else None


def test_nginx_opens_each_site_folder_only_to_that_site(e2e):
    locations = _nginx_locations((REPO / "deploy" / "nginx" / "reports.conf").read_text(encoding="utf-8"))
    published = e2e.settings.published_dir
    edition = e2e.edition.resolve()
    checked = 0
    for p in sorted(edition.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(edition).as_posix()
        for prefix in ("/latest/", f"/editions/{edition.name}/"):
            auth = _auth_for(prefix + rel, locations)
            parts = rel.split("/")
            if any(part.startswith(".") for part in parts):
                assert auth == "DENY", (rel, auth)  # hidden files are never served
            elif parts[0] == "sites":
                assert auth == f"/etc/nginx/auth/sites/{parts[1]}.htpasswd", (rel, auth)
            elif parts[0] == "assets":
                assert p.suffix in (".js", ".css") and auth == "/etc/nginx/auth/all.htpasswd", (rel, auth)
            else:
                assert auth == "/etc/nginx/auth/quality.htpasswd", (rel, auth)
            checked += 1
    for top in ("index.html", "editions.json", "latest.json"):
        assert _auth_for("/" + top, locations) == "/etc/nginx/auth/quality.htpasswd"
    # tricks: a lookalike site id, a site folder under another name, hidden staging folders
    assert _auth_for("/latest/sites/harbor_x/index.html", locations).endswith("/harbor_x.htpasswd")
    assert _auth_for("/latest/sitesharbor/index.html", locations).endswith("quality.htpasswd")
    assert _auth_for("/.published-staging-abc/x/index.html", locations) == "DENY"
    assert _auth_for("/latest/sites/HARBOR/index.html", locations).endswith("quality.htpasswd")
    assert checked > 100 and published.is_dir()


# --------------------------------------------------------------------------- hostile text in the outputs


def test_html_and_script_in_site_and_code_names_render_as_text(e2e, scoreboard):
    published = sorted(e2e.edition.rglob("*.html"))
    site_pages = [p for p in published if f"sites/{HOSTILE_SITE}/" in p.as_posix()]
    assert site_pages
    escaped_name = _html_escape(HOSTILE_NAME)
    assert any(
        escaped_name in p.read_text(encoding="utf-8")
        or "&lt;script&gt;alert(" in p.read_text(encoding="utf-8")
        for p in site_pages
    ), "the hostile site name must be shown, escaped"
    for p in published:
        text = p.read_text(encoding="utf-8")
        assert SCRIPT_MARKER not in text, f"{p} contains live script from a site or code name"
        assert "<b>Clinic</b>" not in text, p
    # the hostile code was rejected and is reported as text
    reports = list(e2e.settings.quarantine_dir.rglob("report.md"))
    assert any(
        HOSTILE_CODE in r.read_text(encoding="utf-8") or "alert('code')" in r.read_text(encoding="utf-8")
        for r in reports
    )
    scoreboard.bad_input("html/script in a site name (published reports)")
    scoreboard.bad_input("html/script in a code value (reports and quarantine)")


def test_gx_data_docs_escape_site_delivered_values(e2e):
    docs = [p for p in e2e.edition.rglob("*.html") if "data-docs" in p.parts]
    assert docs
    live = [p.name for p in docs if SCRIPT_MARKER in p.read_text(encoding="utf-8")]
    assert live == []


def _csv_cells(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def test_no_exported_csv_cell_is_a_spreadsheet_formula(e2e, scoreboard):
    csvs = [*e2e.settings.quarantine_dir.rglob("*.csv"), *e2e.edition.rglob("*.csv")]
    assert any(p.name == "measures.csv" for p in csvs) and any(p.name.startswith("rejected_") for p in csvs)
    live = [
        (p.name, c)
        for p in csvs
        for c in _csv_cells(p)
        if c.startswith(FORMULA_START) and not NUMBER.match(c)
    ]
    assert live == [], live[:10]
    rejected = "\n".join(
        p.read_text(encoding="utf-8") for p in e2e.settings.quarantine_dir.rglob("rejected_*.csv")
    )
    cells = set(_csv_cells_text(rejected))
    for formula in FORMULAS:  # each planted formula was quarantined and is present, neutralised
        assert "'" + formula in cells, formula
        scoreboard.bad_input(f"csv formula injection {formula[:12]!r}")


def _csv_cells_text(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]
