"""The performance harness: ``make bench`` = ``python -m benchmarks.harness``.

For every scale: generate the deliveries with the project's generator, then run each
stage in its own child process (:mod:`benchmarks.stage`), measured by
:mod:`benchmarks.measure`; measure the DuckDB-alone floor on the same files; run the
whole pipeline end to end in one process on a fresh warehouse; at the largest scale,
deliver one small extract and measure the incremental run. One JSON per scale goes to
``benchmarks/results/`` (see benchmarks/README.md for the schema and the targets).

    python -m benchmarks.harness                          # 1k, 10k, 100k
    python -m benchmarks.harness --scales 1m              # the 1M run (10-30+ minutes)
    python -m benchmarks.harness --scales 300 --sites 3   # a tiny smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.measure import REPO_ROOT, Measurement, run_stage

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCRATCH_DIR = REPO_ROOT / "benchmarks" / "scratch"
#: scale -> number of sites (the first 6 are the demo sites in their five delivery formats,
#: the rest generic canonical sites)
DEFAULT_SITES = {1_000: 6, 10_000: 12, 100_000: 30, 1_000_000: 200}
PIPELINE_STAGES = ("ingest", "build", "analytics", "validate", "publish")
#: each stage's floor (DuckDB alone on the same files), see README
FLOOR_OF = {
    "ingest": "floor_read",
    "ingest_canonical": "floor_read",
    "delivery_validation": "floor_read",
    "build": "floor_mart",
    "validate": "floor_mart",
    "analytics": "floor_mart",
    "publish": "floor_mart",
    "end_to_end": "floor_total",
    "pipeline_sum": "floor_total",
}
SEED = 20260601
YEARS = 4
AS_OF = None  # the pipeline's own default (today); incremental dbt models need a current as_of
TEST_SECRET_ENV = "POEM_PSEUDONYM_KEY"


def parse_scale(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


def sites_for(n: int) -> int:
    for limit, sites in sorted(DEFAULT_SITES.items()):
        if n <= limit:
            return sites
    return max(DEFAULT_SITES.values())


def machine_info() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    versions = {}
    for dist in ("duckdb", "dbt-core", "dbt-duckdb", "great-expectations", "pandas", "numpy", "plotly",
                 "scipy", "statsmodels", "poem-registry"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=False).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True,
                               check=False).stdout.strip()
        commit = f"{commit}{'+dirty' if dirty else ''}" if commit else None
    except OSError:
        pass
    return {"hostname": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_model": cpu, "cpu_count": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "versions": versions, "git_commit": commit}


# -- floor input -----------------------------------------------------------------------------------
def prepare_floor_files(landing: Path, canonical: list[str], floor_dir: Path) -> int:
    """The canonical sites' delivered CSVs as plain files ``<site>/<extract>/<entity>.csv`` (zips
    unpacked; untimed), so DuckDB can ``read_csv`` exactly the bytes ingest reads."""
    if floor_dir.exists():
        shutil.rmtree(floor_dir)
    n = 0
    for site in canonical:
        root = landing / site
        if not root.is_dir():
            continue
        for p in sorted(root.iterdir()):
            target = floor_dir / site / (p.stem if p.suffix.lower() == ".zip" else p.name)
            target.mkdir(parents=True, exist_ok=True)
            if p.is_dir():
                for f in p.glob("*.csv"):
                    shutil.copyfile(f, target / f.name)
                    n += 1
            elif p.suffix.lower() == ".zip":
                with zipfile.ZipFile(p) as zf:
                    for member in zf.namelist():
                        if member.endswith(".csv"):
                            (target / Path(member).name).write_bytes(zf.read(member))
                            n += 1
    return n


# -- one scale -------------------------------------------------------------------------------------
class ScaleRun:
    def __init__(self, n: int, sites: int, *, seed: int, scratch: Path, log, end_to_end: bool,
                 incremental: bool, out_dir: Path | None = None):
        self.n, self.sites, self.seed = n, sites, seed
        self.out_dir = out_dir
        self.started = datetime.now(UTC).isoformat()
        self.root = scratch / f"{label(n)}_{sites}s"
        self.log_file = self.root / "stages.log"
        self.say = log
        self.end_to_end, self.incremental = end_to_end, incremental
        self.stages: dict[str, dict] = {}
        self.env: dict[str, str] = {}

    # paths
    def home(self, name: str) -> Path:
        return self.root / name

    def spec(self, home: str = "full", **extra) -> dict:
        h = self.home(home)
        return {"home": str(h), "sites_dir": str(self.root / "sites"), "landing_dir": str(self.root / "landing"),
                "truth_dir": str(self.root / "truth"), "gate_file": str(h / "gate.json"), "env": self.env,
                "as_of": AS_OF, **extra}

    def measure(self, key: str, stage: str, spec: dict) -> Measurement:
        self.say(f"  [{label(self.n)}] {key} ...")
        m = run_stage(stage, spec, log_file=self.log_file)
        m.stage = key
        self.stages[key] = m.as_dict()
        status = "ok" if not m.error else f"ERROR {m.error}"
        self.say(f"  [{label(self.n)}] {key}: {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU, "
                 f"{m.peak_rss_mb:.0f} MB peak ({status})")
        self.checkpoint()
        return m

    @property
    def partial_path(self) -> Path | None:
        return self.out_dir / f"bench_{label(self.n)}_{self.sites}sites.partial.json" if self.out_dir else None

    def checkpoint(self) -> None:
        """How far a long run got, rewritten after every stage (removed when the scale completes)."""
        if self.partial_path is None:
            return
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"schema": "poem-bench/1-partial", "started_at": self.started,
               "updated_at": datetime.now(UTC).isoformat(),
               "scale": {"label": label(self.n), "target_procedures": self.n, "sites": self.sites,
                         "seed": self.seed, **(self.stages.get("generate", {}).get("details") or {})},
               "stages": self.stages}
        self.partial_path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")

    def run(self) -> dict:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "sites").mkdir(parents=True)
        self.env = {TEST_SECRET_ENV: os.environ.get(TEST_SECRET_ENV, "bench-secret-" + "b" * 40)}
        started = self.started
        gen = self.measure("generate", "generate", self.spec(sites=self.sites, years=YEARS, seed=self.seed,
                                                             procedures=self.n))
        if gen.error:
            raise RuntimeError(f"generation failed: {gen.error}")
        info = gen.details
        for source in info.get("sql_urls", {}).values():
            self.env[source["env"]] = source["url"]
        from poem_registry.sites import load_sites

        configured = load_sites(self.root / "sites")
        canonical = [s.site_id for s in configured if s.adapter == "canonical"]
        other = [s.site_id for s in configured if s.adapter != "canonical"]
        files = prepare_floor_files(self.root / "landing", canonical, self.root / "floor_files")
        self.say(f"  [{label(self.n)}] {info['total_procedures']} procedures, {info['delivered_rows_total']} "
                 f"delivered rows in {info['extracts']} extracts; {len(canonical)} canonical sites "
                 f"({files} CSV files), {len(other)} in other formats")

        # the floor, on the same files
        floor = {"floor_db": str(self.root / "floor.duckdb"), "floor_dir": str(self.root / "floor_files")}
        self.measure("floor_read", "floor_read", self.spec(**floor))
        self.measure("floor_mart", "floor_mart", self.spec(**floor))
        # delivery validation alone (canonical sites, as ingest batches them)
        self.measure("delivery_validation", "delivery_validation", self.spec(site_ids=canonical))
        # each stage separately, on one warehouse; ingest split so that its canonical part reads
        # exactly the floor's files
        run_id = f"bench-{label(self.n)}"
        self.measure("ingest_canonical", "ingest", self.spec(site_ids=canonical, run_id=run_id))
        if other:
            self.measure("ingest_other", "ingest", self.spec(site_ids=other, run_id=run_id))
        self.stages["ingest"] = _combine("ingest", [self.stages[k] for k in ("ingest_canonical", "ingest_other")
                                                    if k in self.stages])
        for stage in PIPELINE_STAGES[1:]:
            self.measure(stage, stage, self.spec(run_id=run_id))
        self.stages["pipeline_sum"] = _combine("pipeline_sum", [self.stages[s] for s in PIPELINE_STAGES])
        if self.end_to_end:  # the whole pipeline in one process, fresh warehouse, same landing
            self.measure("end_to_end", "end_to_end", self.spec(home="e2e", run_id=f"{run_id}-e2e"))
        incremental = self.run_incremental(canonical, run_id, info) if self.incremental else None

        rows = info["delivered_rows_total"]
        floor_rows = self.stages["floor_read"]["details"].get("rows_total") or 0
        self.stages["floor_total"] = _combine("floor_total", [self.stages["floor_read"], self.stages["floor_mart"]])
        return {
            "schema": "poem-bench/1",
            "started_at": started,
            "finished_at": datetime.now(UTC).isoformat(),
            "scale": {"label": label(self.n), "target_procedures": self.n,
                      "procedures": info["total_procedures"], "sites": self.sites,
                      "canonical_sites": len(canonical), "other_format_sites": other,
                      "years": YEARS, "seed": self.seed, "extracts": info["extracts"],
                      "delivered_rows": info["delivered_rows"], "delivered_rows_total": rows,
                      "final_rows": info["final_rows"], "floor_rows": floor_rows},
            "machine": machine_info(),
            "stages": {k: _with_rates(v, rows, floor_rows) for k, v in self.stages.items()},
            "ratios": ratios(self.stages, rows, floor_rows),
            "incremental": incremental,
        }

    def run_incremental(self, canonical: list[str], run_id: str, info: dict) -> dict:
        from benchmarks.incremental import deliver_increment

        site = _incremental_site(canonical, info)
        delta = deliver_increment(self.root, site, fraction=0.01, total_rows=info["delivered_rows_total"],
                                  seed=self.seed)
        self.say(f"  [{label(self.n)}] incremental extract {delta['extract_id']} at {site}: "
                 f"{delta['new_rows']} new rows, {delta['corrections']} corrections")
        inc: dict[str, dict] = {}
        rid = f"{run_id}-inc"
        for key, stage, extra in (("ingest", "ingest", {"site_ids": [site]}), ("build", "build", {}),
                                  ("analytics", "analytics", {}), ("validate", "validate", {})):
            m = self.measure(f"incremental_{key}", stage, self.spec(run_id=rid, **extra))
            inc[key] = self.stages.pop(f"incremental_{key}")
            if m.error:
                break
        total = _combine("incremental_total", list(inc.values()))
        full = _combine("full_total", [self.stages[s] for s in ("ingest", "build", "analytics", "validate")])
        return {"site": site, "delivery": delta, "stages": inc, "total": total, "full": full,
                "ratio_to_full": round(total["wall_s"] / full["wall_s"], 4) if full["wall_s"] else None,
                "target_ratio": 0.10}


def _incremental_site(canonical: list[str], info: dict) -> str:
    generic = [s for s in canonical if s.startswith("site_")]
    return (generic or canonical)[0]


def _combine(name: str, parts: list[dict]) -> dict:
    return {"stage": name, "wall_s": round(sum(p["wall_s"] for p in parts), 3),
            "cpu_s": round(sum(p["cpu_s"] for p in parts), 3),
            "peak_rss_mb": max((p["peak_rss_mb"] for p in parts), default=0.0),
            "exit_code": max((p["exit_code"] for p in parts), default=0),
            "details": {"parts": [p["stage"] for p in parts]},
            "error": "; ".join(p["error"] for p in parts if p.get("error")) or None}


def _with_rates(m: dict, rows: int, floor_rows: int) -> dict:
    n = floor_rows if m["stage"] in ("floor_read", "floor_mart", "floor_total", "ingest_canonical",
                                     "delivery_validation") else rows
    if m["stage"] == "ingest_other":  # the non-canonical sites' rows
        n = rows - floor_rows
    return {**m, "rows": n, "rows_per_s": round(n / m["wall_s"], 1) if m["wall_s"] else None}


def ratios(stages: dict, rows: int, floor_rows: int) -> dict:
    """Each stage against its floor. ``ratio`` compares the same rows: the floor's time is scaled by
    (stage rows / floor rows) where the stage also handles the non-canonical sites."""
    out = {}
    for stage, floor_name in FLOOR_OF.items():
        if stage not in stages or floor_name not in stages:
            continue
        s, f = stages[stage], stages[floor_name]
        same_files = stage in ("ingest_canonical", "delivery_validation")
        scale = 1.0 if same_files or not floor_rows else rows / floor_rows
        floor_s = f["wall_s"] * scale
        out[stage] = {"floor": floor_name, "stage_s": s["wall_s"], "floor_s": f["wall_s"],
                      "floor_scaled_s": round(floor_s, 3), "rows_scale": round(scale, 4),
                      "ratio": round(s["wall_s"] / floor_s, 2) if floor_s else None,
                      "cpu_ratio": round(s["cpu_s"] / (f["cpu_s"] * scale), 2) if f["cpu_s"] else None}
    return out


def write_result(result: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = result["scale"]
    path = out_dir / f"bench_{scale['label']}_{scale['sites']}sites.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default=os.environ.get("BENCH_SCALES", "1k,10k,100k"),
                    help="comma-separated procedure counts (1k, 10k, 100k, 1m, 300 ...)")
    ap.add_argument("--sites", type=int, default=None, help="sites at every scale (default: by scale)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--scratch", type=Path, default=SCRATCH_DIR)
    ap.add_argument("--no-end-to-end", action="store_true", help="skip the one-process end-to-end run")
    ap.add_argument("--end-to-end-max", type=parse_scale, default=10_000,
                    help="run the one-process end-to-end only up to this scale (default 10k; above it the "
                         "end-to-end figure is the sum of the separately measured stages)")
    ap.add_argument("--incremental", choices=("largest", "all", "none"), default="largest")
    ap.add_argument("--keep-scratch", action="store_true", help="keep the generated data and warehouses")
    ap.add_argument("--no-report", action="store_true", help="do not regenerate README table and chart")
    args = ap.parse_args(argv)
    args.out, args.scratch = args.out.resolve(), args.scratch.resolve()  # children run with cwd = repo

    scales = sorted(parse_scale(s) for s in args.scales.split(",") if s.strip())
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    say(f"POEM Registry benchmark: scales {[label(n) for n in scales]}, seed {args.seed}; "
        f"scratch {args.scratch}, results {args.out}")
    paths = []
    for n in scales:
        sites = args.sites or sites_for(n)
        start = time.perf_counter()
        run = ScaleRun(n, sites, seed=args.seed, scratch=args.scratch, log=say,
                       end_to_end=not args.no_end_to_end and n <= args.end_to_end_max,
                       incremental=args.incremental == "all" or (args.incremental == "largest" and n == scales[-1]),
                       out_dir=args.out)
        result = run.run()
        paths.append(write_result(result, args.out))
        if run.partial_path:
            run.partial_path.unlink(missing_ok=True)
        say(f"[{label(n)}] done in {time.perf_counter() - start:.0f} s -> {paths[-1]}")
        if not args.keep_scratch:
            shutil.rmtree(run.root, ignore_errors=True)
    if not args.no_report:
        from benchmarks.report import main as report_main

        report_main(["--results", str(args.out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
