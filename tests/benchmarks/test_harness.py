"""A tiny-scale run of the performance harness (benchmarks/): well-formed results, every stage and
ratio present, the report renders. No time assertions: timings on a shared CI machine mean nothing."""

from __future__ import annotations

import json

import pytest

from benchmarks import harness, report

pytestmark = [pytest.mark.xdist_group("bench"), pytest.mark.slow]

STAGES = ("generate", "floor_read", "floor_mart", "delivery_validation", "ingest_canonical", "ingest_other",
          "ingest", "build", "analytics", "validate", "publish", "pipeline_sum", "end_to_end", "floor_total")
RATIOS = ("ingest_canonical", "ingest", "delivery_validation", "build", "analytics", "validate", "publish",
          "pipeline_sum", "end_to_end")
MEASURED = ("wall_s", "cpu_s", "peak_rss_mb", "exit_code", "rows", "rows_per_s")


def test_tiny_harness_run(tmp_path):
    """One test (not a module fixture shared by several): the harness takes minutes even this small,
    and a fixture would run once per xdist worker if the tests were spread over workers."""
    root = tmp_path
    out, scratch = root / "results", root / "scratch"
    code = harness.main(["--scales", "300", "--sites", "3", "--out", str(out), "--scratch", str(scratch),
                         "--end-to-end-max", "300", "--incremental", "largest", "--no-report"])
    assert code == 0
    files = sorted(out.glob("bench_*.json"))
    assert [f.name for f in files] == ["bench_300_3sites.json"]
    assert not list(out.glob("*.partial.json"))
    result = json.loads(files[0].read_text(encoding="utf-8"))
    check_results_json(result)
    check_stages(result)
    check_ratios(result)
    check_incremental(result)
    check_report(root)


def check_results_json(result):
    assert result["schema"] == "poem-bench/1"
    scale = result["scale"]
    assert scale["sites"] == 3 and scale["seed"] == harness.SEED
    assert 150 <= scale["procedures"] <= 600
    assert scale["delivered_rows_total"] > scale["procedures"]
    assert scale["floor_rows"] > 0
    machine = result["machine"]
    assert machine["cpu_count"] and machine["python"].startswith("3.11")
    assert machine["versions"]["duckdb"] and machine["versions"]["dbt-core"]


def check_stages(result):
    stages = result["stages"]
    assert set(STAGES) <= set(stages)
    for name in STAGES:
        m = stages[name]
        assert all(k in m for k in MEASURED), name
        assert m["error"] is None, f"{name}: {m['error']}"
        assert m["exit_code"] == 0
        assert m["wall_s"] > 0 and m["cpu_s"] >= 0 and m["peak_rss_mb"] > 0, name
    assert stages["ingest"]["wall_s"] == pytest.approx(
        stages["ingest_canonical"]["wall_s"] + stages["ingest_other"]["wall_s"], abs=0.01)
    assert stages["floor_read"]["details"]["rows_total"] == result["scale"]["floor_rows"]
    assert stages["floor_mart"]["details"]["mart_rows"] > 0
    assert stages["delivery_validation"]["details"]["rows_validated"] == result["scale"]["floor_rows"]


def check_ratios(result):
    for name in RATIOS:
        q = result["ratios"][name]
        assert q["floor"] in ("floor_read", "floor_mart", "floor_total")
        assert q["ratio"] > 0 and q["floor_s"] > 0, name


def check_incremental(result):
    inc = result["incremental"]
    assert set(inc["stages"]) == {"ingest", "build", "analytics", "validate"}
    assert all(s["error"] is None for s in inc["stages"].values())
    assert inc["delivery"]["new_rows"] > 0 and inc["delivery"]["corrections"] > 0
    assert inc["ratio_to_full"] > 0


def check_report(root):
    readme = root / "README.md"
    readme.write_text("# Benchmarks\n\nhand-written part\n", encoding="utf-8")
    assert report.main(["--results", str(root / "results"), "--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "hand-written part" in text and report.BEGIN in text and report.END in text
    for stage in ("dbt build", "report rendering", "floor: DuckDB read_csv"):
        assert stage in text
    assert "| incremental 1% < 10% of a full run |" in text
    html = (root / "results" / "cost_vs_scale.html").read_text(encoding="utf-8")
    # plotly.js embedded (a few MB), not fetched from a CDN: the chart works offline
    assert len(html) > 1_000_000 and '<script src="http' not in html
