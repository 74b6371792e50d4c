"""Report fixtures: a small warehouse with the tables the reports read, for six sites (one tiny, to exercise suppression).

Tables and column names are the real warehouse's (dbt marts, analytics.* as written by
poem_registry.analytics, quality.check_results as written by poem_registry.quality): the reports
map them in poem_registry.reports.data.TABLES. Numbers are plausible, fixed by a seeded generator.
``build_warehouse(path, small=True)`` makes a three-site, three-quarter version for the
determinism test (two full renders).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from poem_registry.settings import REPO_ROOT, Settings

SITES = {
    # site_id: (name, landing, annual volume)
    "harbourview": ("Harbourview General Hospital", "hv_landing", 60),
    "kestrel_gi": ("Kestrel GI Institute", "kestrel_drop", 45),
    "maple_ridge": ("Maple Ridge Medical Centre", "mapleridge_in", 30),
    "northgate": ("Northgate University Clinic", "ngate_files", 40),
    "oakhurst": ("Oakhurst Digestive Unit", "oak_sftp", 25),
    "pinecrest": ("Pinecrest Community Hospital", "pine_inbox", 4),
}
AS_OF = date(2026, 9, 30)
RUN_ID = "run_20260930_demo"
QUARTERS = [
    date(2025, 1, 1),
    date(2025, 4, 1),
    date(2025, 7, 1),
    date(2025, 10, 1),
    date(2026, 1, 1),
    date(2026, 4, 1),
    date(2026, 7, 1),
]
SEEDS = REPO_ROOT / "dbt_project" / "seeds"
#: Session-wide memo: tests/reports and tests/browser register the same fixtures from two conftests.
_SESSION: dict = {}


def wilson(x: int, n: int, z: float = 1.959963984540054) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    p = x / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _quarter_end(q: date) -> date:
    nxt = date(q.year + (q.month == 10), (q.month + 2) % 12 + 1, 1)
    return nxt - timedelta(days=1)


def build_measures(
    rng: np.random.Generator, catalog: pd.DataFrame, sites: dict = SITES, quarters: list = QUARTERS
) -> pd.DataFrame:
    rates = {
        "P1": 0.97,
        "P2": 0.92,
        "P2C": 0.9,
        "P3": 0.89,
        "P3E": 0.9,
        "P3Y2": 0.85,
        "P5": 0.08,
        "P6M": 0.03,
        "P6S": 0.006,
        "P7": 0.03,
        "P8": 0.85,
        "P9": 0.82,
        "P9A": 0.88,
        "P9B": 0.7,
        "P10": 0.6,
        "P11": 0.15,
        "P11A": 0.3,
        "P11C": 0.05,
        "P11G": 0.38,
        "P11S": 0.2,
        "P11L": 0.1,
        "P12": 0.22,
    }
    bm = pd.read_csv(SEEDS / "benchmarks.csv")
    rows = []
    for _, m in catalog.iterrows():
        mid = m["measure_id"]
        if mid not in rates:
            continue
        dens = ["PP", "ITT"] if "PP" in str(m["denominator_variants"]) else ["standard"]
        bmr = bm[bm["benchmark_key"] == m["benchmark_key"]]
        for den_type in dens:
            per_q: dict[tuple[str, date], tuple[int, int]] = {}
            for sid, (_, _, vol) in sites.items():
                for q in quarters:
                    n = int(rng.poisson(vol / 4 * (0.9 if den_type == "PP" else 1.0)))
                    x = int(rng.binomial(n, rates[mid])) if n else 0
                    per_q[(sid, q)] = (x, n)

            def add(sid, ptype, start, end, x, n, mid=mid, den_type=den_type, m=m, bmr=bmr):
                p, lo, hi = wilson(x, n)
                rows.append(
                    {
                        "measure_id": mid,
                        "measure_name": m["name"],
                        "site_id": sid,
                        "period_type": ptype,
                        "period_start": start,
                        "period_end": end,
                        "denominator_variant": den_type,
                        "statistic": "proportion",
                        "numerator": x,
                        "denominator": n,
                        "rate": p,
                        "ci_lower": lo,
                        "ci_upper": hi,
                        "ci_method": "wilson",
                        "suppressed": (1 <= x < 11) or (1 <= n < 11),
                        "benchmark_value": bmr["value"].iloc[0] if not bmr.empty else None,
                        "benchmark_citation": bmr["citation"].iloc[0] if not bmr.empty else None,
                        "benchmark_provenance_tag": bmr["provenance_tag"].iloc[0] if not bmr.empty else None,
                    }
                )

            for sid in [*sites, "ALL"]:
                sids = list(sites) if sid == "ALL" else [sid]
                for q in quarters:
                    x = sum(per_q[(s, q)][0] for s in sids)
                    n = sum(per_q[(s, q)][1] for s in sids)
                    add(sid, "quarter", q, _quarter_end(q), x, n)
                for year in sorted({q.year for q in quarters}):
                    qs = [q for q in quarters if q.year == year]
                    x = sum(per_q[(s, q)][0] for s in sids for q in qs)
                    n = sum(per_q[(s, q)][1] for s in sids for q in qs)
                    add(sid, "year", date(year, 1, 1), date(year, 12, 31), x, n)
                x = sum(per_q[(s, q)][0] for s in sids for q in quarters)
                n = sum(per_q[(s, q)][1] for s in sids for q in quarters)
                add(sid, "all_time", quarters[0], AS_OF, x, n)
    return pd.DataFrame(rows)


def build_funnel(measures: pd.DataFrame, catalog: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = catalog.loc[catalog["key_measure"].astype(str).str.lower() == "true", "measure_id"]
    fun, curve = [], []
    for mid in keys:
        m = measures[(measures["measure_id"] == mid) & (measures["period_type"] == "all_time")]
        if m.empty:
            continue
        den_type = sorted(m["denominator_variant"].unique())[0]  # PP before ITT, else standard
        m = m[m["denominator_variant"] == den_type]
        tot = m[m["site_id"] == "ALL"].iloc[0]
        p0 = tot["numerator"] / tot["denominator"]
        for _, r in m[m["site_id"] != "ALL"].iterrows():
            n = r["denominator"]
            sd = math.sqrt(p0 * (1 - p0) / n) if n else 0
            y = r["rate"]
            cls = "within"
            if y is not None and sd:
                z = (y - p0) / sd
                cls = (
                    "above_998"
                    if z > 3.09
                    else "below_998"
                    if z < -3.09
                    else "above_95"
                    if z > 1.96
                    else "below_95"
                    if z < -1.96
                    else "within"
                )
            fun.append(
                {
                    "measure_id": mid,
                    "denominator_type": den_type,
                    "period_type": "all_time",
                    "period_start": QUARTERS[0],
                    "period_end": AS_OF,
                    "site_id": r["site_id"],
                    "numerator": r["numerator"],
                    "denominator": n,
                    "rate": y,
                    "target": p0,
                    "target_source": "registry",
                    "method": "exact",
                    "overdispersion": "none",
                    "phi": 1.1,
                    "tau2": 0.0,
                    "lower_95": p0 - 1.96 * sd,
                    "upper_95": p0 + 1.96 * sd,
                    "lower_998": p0 - 3.09 * sd,
                    "upper_998": p0 + 3.09 * sd,
                    "classification": cls,
                }
            )
        for n in range(5, 260, 5):
            sd = math.sqrt(p0 * (1 - p0) / n)
            curve.append(
                {
                    "measure_id": mid,
                    "denominator_type": den_type,
                    "period_type": "all_time",
                    "period_start": QUARTERS[0],
                    "period_end": AS_OF,
                    "n": n,
                    "target": p0,
                    "lower_95": max(0, p0 - 1.96 * sd),
                    "upper_95": min(1, p0 + 1.96 * sd),
                    "lower_998": max(0, p0 - 3.09 * sd),
                    "upper_998": min(1, p0 + 3.09 * sd),
                }
            )
    return pd.DataFrame(fun), pd.DataFrame(curve)


SMALL_SITES = ("harbourview", "oakhurst", "pinecrest")


def _ae_rows(rng: np.random.Generator, sites: dict, start: date) -> pd.DataFrame:
    """marts.mart_adverse_events (all-time rows): per type, plus 'all' rows by worst severity."""
    rows = []
    types = ["bleeding_delayed", "capnothorax", "leak_mucosal", "pneumonia_aspiration"]
    for sid, (_, _, vol) in sites.items():
        worst = {"mild": 0, "moderate": 0, "severe": 0}
        for t in types:
            for sev in ["mild", "moderate", "severe"]:
                n = int(rng.poisson(vol / 25 * {"mild": 3, "moderate": 1.2, "severe": 0.3}[sev]))
                worst[sev] += n
                rows.append(("adverse_event", sid, t, sev, n, n))
        for sev, n in worst.items():
            rows.append(("adverse_event", sid, "all", sev, n, n))
        inc = {t: int(rng.poisson(vol / 3)) for t in ["capnoperitoneum", "mucosotomy_intraop"]}
        for t, n in inc.items():
            rows.append(("incident", sid, t, None, n, n))
        rows.append(("incident", sid, "all", None, sum(inc.values()), sum(inc.values())))
    ae = pd.DataFrame(
        rows, columns=["event_class", "site_id", "ae_type", "asge_severity", "n_events", "n_patients"]
    )
    ae = ae[ae["n_events"] > 0]
    total = (
        ae.groupby(["event_class", "ae_type", "asge_severity"], dropna=False, as_index=False)[
            ["n_events", "n_patients"]
        ]
        .sum()
        .assign(site_id="ALL")
    )
    ae = pd.concat([ae, total], ignore_index=True)
    rank = {"mild": 1, "moderate": 2, "severe": 3, "fatal": 4}
    return ae.assign(
        period_type="all_time",
        period_start=start,
        asge_severity_rank=ae["asge_severity"].map(rank),
    )


def build_warehouse(path: Path, small: bool = False) -> None:
    rng = np.random.default_rng(20260930)
    sites = {k: v for k, v in SITES.items() if not small or k in SMALL_SITES}
    quarters = QUARTERS[-3:] if small else QUARTERS
    catalog = pd.read_csv(SEEDS / "measure_catalog.csv")
    if small:
        catalog = catalog[catalog["measure_id"].isin(["P1", "P2", "P5", "P11", "P11A", "P9"])]
    bm = pd.read_csv(SEEDS / "benchmarks.csv")
    measures = build_measures(rng, catalog, sites, quarters)
    funnel, curve = build_funnel(measures, catalog)
    dim_site = pd.DataFrame([{"site_id": s, "n_index_poems": v[2] * 2} for s, v in sites.items()])

    ae = _ae_rows(rng, sites, quarters[0])
    la_rows = []
    for sid, (_, _, vol) in sites.items():
        for rank, (g, p) in enumerate(
            zip(["none", "A", "B", "C", "D"], [0.6, 0.2, 0.12, 0.06, 0.02], strict=True)
        ):
            la_rows.append(
                {
                    "site_id": sid,
                    "period_type": "all_time",
                    "period_start": quarters[0],
                    "la_grade": g,
                    "la_grade_rank": rank,
                    "n_patients": int(rng.poisson(vol * 1.2 * p)),
                }
            )
    la = pd.DataFrame(la_rows)
    la = la[la["n_patients"] > 0]
    la = pd.concat(
        [
            la,
            la.groupby(["period_type", "period_start", "la_grade", "la_grade_rank"], as_index=False)[
                "n_patients"
            ]
            .sum()
            .assign(site_id="ALL"),
        ],
        ignore_index=True,
    )

    lc_rows = []
    for sid, (_, _, vol) in sites.items():
        for k in range(1, 3 if vol > 10 else 2):
            s, ra = 0.0, 0.0
            for case in range(1, min(40, vol) + 1):
                fail = bool(rng.random() < (0.25 if case < 15 else 0.08))
                s = max(0.0, s + (0.9 if fail else -0.11))
                ra = max(0.0, ra + (0.7 if fail else -0.09))
                lc_rows.append(
                    {
                        "operator_key": f"opkey_{sid}_{k}",
                        "operator_label": f"Operator {k}",
                        "site_id": sid,
                        "case_number": case,
                        "procedure_sk": f"{sid}:p{k}{case}",
                        "procedure_date": QUARTERS[0] + timedelta(days=9 * case),
                        "procedure_minutes": 60 + int(rng.integers(-15, 30)),
                        "cusum_minutes": 0.0,
                        "composite_failure": fail,
                        "bernoulli_cusum": s,
                        "bernoulli_h0": -2.9,
                        "bernoulli_h1": 2.9,
                        "racusum": ra,
                        "racusum_h": 3.2,
                        "predicted_risk": 0.1,
                        "p0": 0.1,
                        "p1": 0.2,
                        "alpha": 0.1,
                        "beta": 0.1,
                        "odds_multiplier": 2.0,
                        "signal": "bernoulli_h1" if s > 2.9 else None,
                    }
                )
    km_rows, dur_rows = [], []
    for sid, (_, _, vol) in [*sites.items(), ("ALL", ("", "", sum(v[2] for v in sites.values())))]:
        n = vol * 2
        surv, at_risk = 1.0, n
        km_rows.append(
            {
                "site_id": sid,
                "time_days": 0,
                "at_risk": n,
                "events": 0,
                "censored": 0,
                "survival": 1.0,
                "ci_low": 1.0,
                "ci_high": 1.0,
            }
        )
        for t in range(60, 1900, 60):
            d = int(rng.binomial(at_risk, 0.006)) if at_risk else 0
            c = int(rng.binomial(max(at_risk - d, 0), 0.03))
            if at_risk:
                surv *= 1 - d / at_risk
            half = 1.96 * surv * math.sqrt(max(1e-9, (1 - surv) / max(at_risk, 1)))
            km_rows.append(
                {
                    "site_id": sid,
                    "time_days": t,
                    "at_risk": at_risk,
                    "events": d,
                    "censored": c,
                    "survival": surv,
                    "ci_low": max(0, surv - half),
                    "ci_high": min(1, surv + half),
                }
            )
            at_risk -= d + c
        for y in (1, 2, 3, 5):
            pts = [r for r in km_rows if r["site_id"] == sid and r["time_days"] <= y * 365.25]
            last = pts[-1]
            dur_rows.append(
                {
                    "site_id": sid,
                    "years": y,
                    "n": n,
                    "events": sum(r["events"] for r in pts),
                    "at_risk": last["at_risk"],
                    "survival": last["survival"],
                    "se": 0.02,
                    "ci_low": last["ci_low"],
                    "ci_high": last["ci_high"],
                }
            )
    pooled = pd.DataFrame(
        [
            {
                "measure_id": mid,
                "denominator_type": "PP",
                "stratum": s,
                "period_type": "all_time",
                "source": "mart_measure_members",
                "k": k,
                "n_total": n,
                "events": e,
                "estimate": e / n + shift,
                "ci_low": e / n - 0.06,
                "ci_high": min(1, e / n + 0.05),
                "pi_low": e / n - 0.12,
                "pi_high": min(1, e / n + 0.08),
                "tau2": 0.05,
                "i2": 31.0,
                "q": 7.2,
                "q_p": 0.2,
                "model": "random",
                "transform": "logit",
                "tau2_method": method,
                "is_default": method == "REML",
            }
            for mid in ("P2", "P3")
            for method, shift in (("REML", 0.0), ("DL", 0.001))
            for s, k, n, e in [
                ("ALL", 6, 380, 340),
                ("achalasia_type_1", 6, 90, 80),
                ("achalasia_type_2", 6, 190, 176),
                ("achalasia_type_3", 5, 60, 52),
                ("distal_esophageal_spasm", 3, 14, 12),
                ("hypercontractile_esophagus", 2, 6, 4),
            ]
        ]
    )
    t0 = datetime(2026, 9, 1, 8, 0)
    checks = []
    for run_no, run_at in enumerate([t0, t0 + timedelta(days=14)]):
        for sid in sites:
            for name, col in [
                ("completeness.baseline_eckardt", "baseline_eckardt_dysphagia"),
                ("rule.ae_onset_after_procedure", "onset_date"),
                ("code_set.la_grade", "la_grade"),
            ]:
                status = "pass"
                if sid == "oakhurst" and name == "completeness.baseline_eckardt":
                    status = "fail"
                if sid == "northgate" and name == "rule.ae_onset_after_procedure" and run_no == 0:
                    status = "fail"
                if sid == "kestrel_gi" and name == "code_set.la_grade" and run_no == 1:
                    status = "fail"
                if sid == "pinecrest" and name == "rule.ae_onset_after_procedure":
                    status = "not_applicable"
                checks.append(
                    {
                        "run_id": f"run{run_no}",
                        "run_at": run_at,
                        "stage": "delivery",
                        "suite": "delivery_procedures",
                        "site_id": sid,
                        "extract_id": "2026-09",
                        "batch_id": f"{sid}__b{run_no}",
                        "check_id": name,
                        "entity": "procedures",
                        "column_name": col,
                        "category": "completeness",
                        "severity": "warning",
                        "status": status,
                        "element_count": 100,
                        "unexpected_count": 7 if status == "fail" else 0,
                        "unexpected_percent": 7.0 if status == "fail" else 0.0,
                        "threshold_percent": 5.0,
                        "threshold_rows": 0,
                        "note": "Fill baseline Eckardt items within 180 days before POEM",
                        "examples": "[]",
                        "expectation": "expect_column_values_to_not_be_null",
                        "message": "7 of 100 values fail (7.00%)" if status == "fail" else "",
                    }
                )
    batches = []
    for i, sid in enumerate(sites):
        batches.append(
            {
                "batch_id": f"b{i:03d}",
                "batch_seq": i,
                "site_id": sid,
                "extract_id": f"{sid}-2026-09",
                "adapter": "canonical",
                "status": "committed",
                "started_at": t0 + timedelta(days=i),
                "finished_at": t0 + timedelta(days=i),
                "extracted_at": t0 + timedelta(days=i - 3),
                "rows_loaded": 100,
                "rows_quarantined": 0,
                "message": None,
                "quarantine_path": None,
                "fingerprint": f"fp{i}",
                "run_id": RUN_ID,
                "resolved_at": None,
                "resolution_note": None,
            }
        )
    batches.append(
        {
            "batch_id": "b900",
            "batch_seq": 90,
            "site_id": "maple_ridge",
            "extract_id": "maple-2026-09b",
            "adapter": "canonical",
            "status": "quarantined",
            "started_at": t0 + timedelta(days=20),
            "finished_at": t0 + timedelta(days=20),
            "extracted_at": t0 + timedelta(days=19),
            "rows_loaded": 0,
            "rows_quarantined": 12,
            "message": "12 rows fail procedure_date_not_future",
            "quarantine_path": "/var/quarantine/maple_ridge/b900",
            "fingerprint": "fpq",
            "run_id": RUN_ID,
            "resolved_at": None,
            "resolution_note": None,
        }
    )
    findings = pd.DataFrame(
        [
            {
                "batch_id": "b900",
                "site_id": "maple_ridge",
                "extract_id": "maple-2026-09b",
                "file_name": "procedures.csv",
                "source_row": 3,
                "column_name": "procedure_date",
                "rule": "procedure_date_not_future",
                "category": "plausibility",
                "severity": "critical",
                "message": "date after extract",
                "value": "=2099-01-01",
                "recorded_at": t0,
            }
        ]
    )

    con = duckdb.connect(str(path))
    for schema in ("marts", "seeds", "analytics", "quality", "ingest"):
        con.execute(f"create schema if not exists {schema}")
    frames = {
        "seeds.measure_catalog": catalog,
        "seeds.benchmarks": bm,
        "marts.mart_measures": measures,
        "marts.dim_site": dim_site,
        "marts.mart_adverse_events": ae,
        "marts.mart_reflux_la_grade": la,
        "analytics.funnel": funnel,
        "analytics.funnel_curve": curve,
        "analytics.learning_curve": pd.DataFrame(lc_rows),
        "analytics.km_curve": pd.DataFrame(km_rows),
        "analytics.durability": pd.DataFrame(dur_rows),
        "analytics.pooled": pooled,
        "quality.check_results": pd.DataFrame(checks),
        "ingest.batches": pd.DataFrame(batches),
        "ingest.findings": findings,
    }
    for name, frame in frames.items():
        con.register("frame", frame)
        con.execute(f"create or replace table {name} as select * from frame")
        con.unregister("frame")
    con.close()


@pytest.fixture(scope="session")
def warehouse_file(tmp_path_factory) -> Path:
    if "warehouse" not in _SESSION:
        path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
        build_warehouse(path)
        _SESSION["warehouse"] = path
    return _SESSION["warehouse"]


@pytest.fixture(scope="session")
def small_warehouse_file(tmp_path_factory) -> Path:
    """Three sites, three quarters, six measures: for tests that render whole editions more than once."""
    path = tmp_path_factory.mktemp("wh_small") / "warehouse.duckdb"
    build_warehouse(path, small=True)
    return path


def _write_sites(sites_dir: Path) -> None:
    sites_dir.mkdir(parents=True, exist_ok=True)
    for sid, (name, landing, _) in SITES.items():
        (sites_dir / f"{sid}.yml").write_text(
            f"site_id: {sid}\nname: {name}\nadapter: canonical\nlanding: {landing}\nexpected_cadence_days: 31\n",
            encoding="utf-8",
        )


def make_settings(base: Path, warehouse_file: Path) -> Settings:
    home = base / "home"
    sites_dir = base / "sites"
    _write_sites(sites_dir)
    return Settings(
        home=home,
        sites_dir=sites_dir,
        landing_dir=home / "landing",
        warehouse_path=warehouse_file,
        quarantine_dir=home / "quarantine",
        published_dir=home / "published",
        airflow_home=home / "airflow",
        secret_file=home / "secret.key",
        dbt_project_dir=REPO_ROOT / "dbt_project",
        expectations_dir=REPO_ROOT / "expectations",
        templates_dir=REPO_ROOT / "reports",
        logs_dir=home / "logs",
        warehouse_lock_timeout=5.0,
    )


@pytest.fixture()
def settings(tmp_path, warehouse_file) -> Settings:
    return make_settings(tmp_path, warehouse_file)


@pytest.fixture()
def small_settings(tmp_path, small_warehouse_file) -> Settings:
    return make_settings(tmp_path, small_warehouse_file)


GATE_OK = {
    "publish_allowed": True,
    "reasons": [],
    "warnings": ["northgate: 3 adverse events have an onset date before the procedure"],
}


@pytest.fixture(scope="session")
def published(tmp_path_factory, warehouse_file) -> tuple[Settings, dict]:
    """One edition (with GX Data Docs) published once per session for the read-only tests.

    tests/reports and tests/browser each register this fixture from their conftest; the module-level
    memo makes them share the one edition.
    """
    from poem_registry.reports.publish import publish_edition

    if "published" not in _SESSION:
        settings = make_settings(tmp_path_factory.mktemp("pub"), warehouse_file)
        result = publish_edition(settings, run_id=RUN_ID, as_of=AS_OF, period="2026-Q3", gate=GATE_OK)
        _SESSION["published"] = (settings, result)
    return _SESSION["published"]
