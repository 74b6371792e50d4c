"""Editions: atomic publishing, the gate, write errors, determinism, blinding, measures.csv."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from poem_registry.reports import publish as publish_mod
from poem_registry.reports.measures_export import MEASURES_CSV_COLUMNS, export_measures
from poem_registry.reports.publish import PublishError, build_edition, publish_edition
from poem_registry.warehouse import connect
from tests.reports.report_fixtures import AS_OF, GATE_OK, RUN_ID, SITES

# shares the session-scoped demo edition with the browser test
pytestmark = pytest.mark.xdist_group("browser")


def test_published_layout(published):
    settings, result = published
    root = settings.published_dir
    assert result["status"] == "published"
    edition = Path(result["edition_path"])
    assert edition == root / "editions" / f"2026-Q3__{RUN_ID}"
    assert (root / "latest").resolve() == edition.resolve()
    assert json.loads((root / "latest.json").read_text())["edition"] == edition.name
    for rel in (
        "index.html",
        "system/index.html",
        "quality/index.html",
        "definitions/index.html",
        "measures.csv",
        "assets/plotly.min.js",
        "edition.json",
    ):
        assert (edition / rel).is_file(), rel
    for sid in SITES:
        assert (edition / "sites" / sid / "index.html").is_file()
        single = (edition / "sites" / sid / f"report_{sid}.html").read_text(encoding="utf-8")
        assert "<script src=" not in single and "Plotly.newPlot" in single and "data:text/csv" in single
    # one local plotly per edition, never a CDN
    assert len(list(edition.rglob("plotly*.js"))) == 1
    # every page, GX Data Docs included (their CDN tags are stripped), loads nothing from outside
    for page in edition.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', text), page
    system = (edition / "system" / "index.html").read_text(encoding="utf-8")
    assert 'src="../assets/plotly.min.js"' in system
    assert "2026-Q3" in system and AS_OF.isoformat() in system and RUN_ID in system
    assert "Data-quality warning" in system  # gate warnings show as a banner
    assert "../definitions/index.html#def-P1" in system
    index = (root / "index.html").read_text(encoding="utf-8")
    assert edition.name in index and "latest" in index


def test_every_page_shows_period_as_of_and_run(published):
    _settings, result = published
    for page in Path(result["edition_path"]).rglob("*.html"):
        if "data-docs" in page.parts:
            continue
        text = page.read_text(encoding="utf-8")
        assert "2026-Q3" in text and AS_OF.isoformat() in text and RUN_ID in text, page


def test_site_reports_identify_no_other_site(published):
    _settings, result = published
    edition = Path(result["edition_path"])
    for sid in SITES:
        others = {
            i.lower() for o, (name, landing, _) in SITES.items() if o != sid for i in (o, name, landing)
        }
        files = [p for p in (edition / "sites" / sid).rglob("*") if p.is_file()]
        assert files
        for f in files:
            text = f.read_text(encoding="utf-8").lower()
            leaked = sorted(o for o in others if o in text)
            assert not leaked, f"{f} mentions {leaked}"
            assert "patient_key" not in text and "patient_sk" not in text and "opkey_" not in text
        own = (edition / "sites" / sid / "index.html").read_text(encoding="utf-8")
        assert "Peer A" in own


def test_peer_labels_consistent_within_edition(published):
    _, result = published
    edition = Path(result["edition_path"])
    a = (edition / "sites" / "harbourview" / "index.html").read_text(encoding="utf-8")
    b = (edition / "sites" / "harbourview" / "report_harbourview.html").read_text(encoding="utf-8")
    assert sorted(set(re.findall(r"Peer [A-Z]\b", a))) == sorted(set(re.findall(r"Peer [A-Z]\b", b)))


def test_small_counts_hidden_in_cross_site_outputs(published):
    _, result = published
    edition = Path(result["edition_path"])
    rows = list(csv.DictReader((edition / "measures.csv").open(encoding="utf-8")))
    for r in rows:
        for col in ("numerator", "denominator"):
            if r[col] != "":
                assert not 1 <= int(r[col]) <= 10, r
        if r["suppressed"] == "true":
            assert r["numerator"] == r["denominator"] == r["rate"] == r["ci_low"] == ""
    # the tiny site is suppressed in the system report but sees its own counts
    assert any(r["site"] == "pinecrest" and r["suppressed"] == "true" for r in rows)
    funnel_csv = edition / "system" / "data" / "fig-funnel-p1.csv"
    f = pd.read_csv(funnel_csv)
    for col in ("numerator", "denominator"):
        assert not f[col].dropna().between(1, 10).any()


def test_measures_csv_columns_and_formula_neutralised(tmp_path):
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    con.execute("create schema marts")
    con.execute("""create table marts.mart_measures as select * from (values
        ('P1', '=HYPERLINK("http://x")', 'ALL', 'all_time', date '2025-01-01', date '2026-09-30', 'standard', 40,
         50, 0.8, 0.67, 0.89, 'wilson', false, 0.97, 'Barbieri'),
        ('P1', '=HYPERLINK("http://x")', '@site', 'all_time', date '2025-01-01', date '2026-09-30', 'standard', 35,
         40, 0.875, 0.74, 0.95, 'wilson', false, 0.97, 'Barbieri'),
        ('P1', '=HYPERLINK("http://x")', 'tiny', 'all_time', date '2025-01-01', date '2026-09-30', 'standard', 5,
         10, 0.5, 0.2, 0.8, 'wilson', true, 0.97, 'Barbieri'))
        t(measure_id, measure_name, site_id, period_type, period_start, period_end, denominator_variant, numerator,
          denominator, rate, ci_lower, ci_upper, ci_method, suppressed, benchmark_value, benchmark_citation)""")
    out = tmp_path / "measures.csv"
    n = export_measures(con, out)
    assert n == 3
    with out.open(encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header == MEASURES_CSV_COLUMNS
    assert all(r[1].startswith("'=") for r in rows)
    assert any(r[2] == "'@site" for r in rows)
    tiny = next(r for r in rows if r[2] == "tiny")
    assert tiny[5:10] == ["", "", "", "", ""] and tiny[11] == "true"
    # tiny (5/10) could be recomputed as ALL - @site, so @site is hidden too
    site = next(r for r in rows if r[2] == "'@site")
    assert site[11] == "true"


def test_two_renders_are_byte_identical(tmp_path, small_settings):
    settings = small_settings
    outs = []
    with connect(settings.warehouse_path, read_only=True) as con:
        for name in ("a", "b"):
            build_edition(
                con,
                settings,
                tmp_path / name / "edition",
                run_id=RUN_ID,
                as_of=AS_OF,
                period="2026-Q3",
                gate=GATE_OK,
                data_docs=False,
            )
            outs.append(tmp_path / name / "edition")
    files_a = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 30
    different = [str(f) for f in files_a if (outs[0] / f).read_bytes() != (outs[1] / f).read_bytes()]
    assert not different


def test_failed_gate_keeps_latest(small_settings):
    settings = small_settings
    # first a real edition in this settings' folder
    first = publish_edition(
        settings, run_id="run_a", as_of=AS_OF, period="2026-Q2", gate=GATE_OK, data_docs=False
    )
    assert first["status"] == "published"
    blocked = publish_edition(
        settings,
        run_id="run_b",
        as_of=AS_OF,
        period="2026-Q3",
        gate={"publish_allowed": False, "reasons": ["mart check X failed for northgate"]},
    )
    assert blocked["status"] == "blocked"
    assert blocked["message"].startswith("publishing stopped: mart check X failed")
    root = settings.published_dir
    assert (root / "latest").resolve().name == "2026-Q2__run_a"
    assert json.loads((root / "latest.json").read_text())["edition"] == "2026-Q2__run_a"
    assert not (root / "editions" / "2026-Q3__run_b").exists()
    record = json.loads((root / "last_blocked.json").read_text())
    assert record["run_id"] == "run_b" and record["latest_edition"] == "2026-Q2__run_a"
    assert "publishing was stopped" in (root / "index.html").read_text(encoding="utf-8").replace(
        "publishing attempt was stopped", "publishing was stopped"
    )


def test_second_edition_index_lists_changes(small_settings):
    settings = small_settings
    publish_edition(settings, run_id="run_1", as_of=AS_OF, period="2026-Q2", gate=GATE_OK, data_docs=False)
    publish_edition(settings, run_id="run_2", as_of=AS_OF, period="2026-Q3", gate=GATE_OK, data_docs=False)
    index = (settings.published_dir / "index.html").read_text(encoding="utf-8")
    assert index.index("2026-Q3__run_2") < index.index("2026-Q2__run_1")  # newest first
    assert "no change in headline measures" in index
    assert (settings.published_dir / "latest").resolve().name == "2026-Q3__run_2"


def test_write_error_leaves_previous_edition(small_settings, monkeypatch):
    settings = small_settings
    publish_edition(settings, run_id="run_ok", as_of=AS_OF, period="2026-Q2", gate=GATE_OK, data_docs=False)
    real_rename = os.rename

    def deny(src, dst, *a, **k):
        if "editions" in str(dst):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(publish_mod.os, "rename", deny)
    with pytest.raises(PublishError, match=r"Permission denied.*latest edition is still 2026-Q2__run_ok"):
        publish_edition(
            settings, run_id="run_bad", as_of=AS_OF, period="2026-Q3", gate=GATE_OK, data_docs=False
        )
    root = settings.published_dir
    assert (root / "latest").resolve().name == "2026-Q2__run_ok"
    assert not (root / "editions" / "2026-Q3__run_bad").exists()
    assert not list(root.parent.glob(f".{root.name}-staging-*"))  # no half-written temp folder left


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root ignores directory permissions; covered by the monkeypatched write-error test",
)
def test_read_only_published_dir(small_settings):
    settings = small_settings
    publish_edition(settings, run_id="run_ok", as_of=AS_OF, period="2026-Q2", gate=GATE_OK, data_docs=False)
    editions = settings.published_dir / "editions"
    editions.chmod(0o555)
    try:
        with pytest.raises(PublishError, match="latest edition is still 2026-Q2__run_ok"):
            publish_edition(
                settings, run_id="run_bad", as_of=AS_OF, period="2026-Q3", gate=GATE_OK, data_docs=False
            )
    finally:
        editions.chmod(0o755)
    assert (settings.published_dir / "latest").resolve().name == "2026-Q2__run_ok"
