"""The reliability suite's shared pieces (used by conftest.py and the tests): the end-to-end run, scoreboard.

The end-to-end fixture (:func:`e2e`) generates a small demo (6 sites, 5 delivery formats), plants
hostile text (a site name with HTML/script, a delivery with spreadsheet formulas and script in its
codes), runs ingest -> build -> analytics -> validate -> publish once per session into a temporary
POEM_HOME with every log record captured to a file, and is reused by the leak scan, the isolation
tests and (as copies) the build/publish fault tests.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from poem_registry.settings import Settings, load_settings
from tests.ingest.conftest import procedure, to_csv

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCOREBOARD_JSON = HERE / "scoreboard.json"
SCOREBOARD_MD = REPO / "docs" / "scoreboard.md"
POEM_ENV = (
    "POEM_HOME",
    "POEM_SITES_DIR",
    "POEM_WAREHOUSE",
    "POEM_LANDING",
    "POEM_PUBLISHED",
    "POEM_QUARANTINE",
    "POEM_DEMO",
    "POEM_FAULT",
    "POEM_FAULT_MODE",
    "POEM_SETTINGS",
    "POEM_LOGS_DIR",
    "POEM_SECRET_FILE",
)

#: A fresh pseudonymization secret per session, so "the secret appears nowhere" is a real search.
SESSION_SECRET = "rel-" + secrets.token_hex(24)
HOSTILE_SITE = "northbay"
HOSTILE_NAME = "North<script>alert('site-name')</script> & \"Bay\" <b>Clinic</b>"
SCRIPT_MARKER = "<script>alert("
FORMULAS = [
    "=cmd|' /C calc'!A0",
    '+HYPERLINK("http://x")',
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|'/C calc'!A0",
]
HOSTILE_CODE = "<script>alert('code')</script>"


# --------------------------------------------------------------------------- scoreboard


@dataclass
class Scoreboard:
    """What the suite proved, recorded by each test as it passes (deterministic: names and counts only)."""

    faults: set[str] = field(default_factory=set)
    bad_inputs: set[str] = field(default_factory=set)
    fuzz_examples: dict[str, int] = field(default_factory=dict)
    leak_scan: dict = field(default_factory=dict)
    isolation: dict = field(default_factory=dict)

    def fault(self, name: str) -> None:
        self.faults.add(name)

    def bad_input(self, name: str) -> None:
        self.bad_inputs.add(name)

    def as_dict(self) -> dict:
        return {
            "faults_survived": len(self.faults),
            "faults": sorted(self.faults),
            "bad_inputs_tried": len(self.bad_inputs) + sum(self.fuzz_examples.values()),
            "crafted_bad_inputs": len(self.bad_inputs),
            "bad_inputs": sorted(self.bad_inputs),
            "fuzz_examples": dict(sorted(self.fuzz_examples.items())),
            "leak_scan": self.leak_scan,
            "isolation": self.isolation,
        }


_BOARD = Scoreboard()
_RUN: dict[str, bool] = {}


@pytest.fixture(scope="session")
def scoreboard() -> Scoreboard:
    return _BOARD


def _is_stale_check(item) -> bool:
    return "test_docs_scoreboard_is_current" in item.nodeid


def pytest_deselected(items):
    if any(str(HERE) in str(getattr(i, "path", "")) for i in items):
        _RUN["deselected"] = True


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The scoreboard freshness check runs after everything it summarises; note whether this is a full run."""
    items.sort(key=_is_stale_check)
    files = {Path(str(i.path)).name for i in items if Path(str(i.path)).parent == HERE}
    expected = {p.name for p in HERE.glob("test_*.py")}
    _RUN["full"] = files == expected and not _RUN.get("deselected")


def full_run() -> bool:
    """Every reliability test was selected (so the scoreboard can be compared with docs/scoreboard.md)."""
    return bool(_RUN.get("full")) and not _RUN.get("deselected")


def pytest_sessionfinish(session, exitstatus):
    if full_run() and (_BOARD.faults or _BOARD.bad_inputs or _BOARD.leak_scan):
        SCOREBOARD_JSON.write_text(json.dumps(_BOARD.as_dict(), indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- helpers


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in POEM_ENV}
    env["POEM_PSEUDONYM_KEY"] = SESSION_SECRET
    env.update(extra or {})
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "POEM_HOME": str(settings.home),
        "POEM_SITES_DIR": str(settings.sites_dir),
        "POEM_WAREHOUSE_LOCK_TIMEOUT": str(settings.warehouse_lock_timeout),
    }


def run_python(
    code: str,
    settings: Settings,
    *,
    fault: str | None = None,
    kill: bool = True,
    extra_env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter against ``settings`` (optionally with a fault injected)."""
    env = clean_env({**settings_env(settings), **(extra_env or {})})
    if fault:
        env["POEM_FAULT"] = fault
        if kill:
            env["POEM_FAULT_MODE"] = "kill"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def table_counts(warehouse: Path, schemas: tuple[str, ...] = ("raw", "ingest", "marts")) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            f"and table_schema in ({', '.join('?' for _ in schemas)}) order by 1, 2",
            list(schemas),
        ).fetchall()
        return {f"{s}.{t}": con.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0] for s, t in tables}


def duplicate_rows(warehouse: Path, table: str) -> int:
    """Rows that are exact copies of another row of ``table`` (a replayed batch would produce them)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            f"select count(*) - (select count(*) from (select distinct * from {table})) from {table}"
        ).fetchone()[0]


def latest_edition(published: Path) -> str | None:
    link = published / "latest"
    return link.resolve().name if link.is_symlink() else None


def edition_is_complete(edition: Path) -> bool:
    """A whole edition: its summary, the system page, every site's page and the measures export."""
    if not (edition / "edition.json").is_file():
        return False
    summary = json.loads((edition / "edition.json").read_text(encoding="utf-8"))
    needed = [edition / "index.html", edition / "system" / "index.html", edition / "measures.csv"]
    needed += [edition / "sites" / s / "index.html" for s in summary["sites"]]
    return all(p.is_file() and p.stat().st_size > 0 for p in needed)


def copy_home(e2e: E2E, dest: Path) -> Settings:
    """A private copy of the end-to-end home (warehouse, landing, published) for a destructive test."""
    shutil.copytree(e2e.settings.home, dest / "home", symlinks=True)
    shutil.copytree(e2e.settings.sites_dir, dest / "sites")
    (dest / "home" / "run.lock").unlink(missing_ok=True)
    return load_settings(home=dest / "home", sites_dir=dest / "sites", warehouse_lock_timeout=10)


# --------------------------------------------------------------------------- the end-to-end run


@dataclass
class E2E:
    settings: Settings
    generation: object
    run: object
    truth_dir: Path
    sql_env: dict[str, str]
    log_file: Path

    @property
    def edition(self) -> Path:
        return self.settings.published_dir / "latest"


def _hostile_delivery(landing: Path) -> None:
    """A canonical delivery whose rejected rows carry spreadsheet formulas and script in id/code fields."""
    good = [procedure(f"HX{i}", patient_id=f"HXP{i}", procedure_date="2025-01-15") for i in range(20)]
    bad = [procedure(f, patient_id=f"HXB{i}", diagnosis="achalasia_type_9") for i, f in enumerate(FORMULAS)]
    bad.append(procedure("HX-code", patient_id="HXC", diagnosis=HOSTILE_CODE))
    folder = landing / "harbor" / "zz_hostile"
    folder.mkdir(parents=True)
    (folder / "procedures.csv").write_bytes(to_csv(good + bad, "procedures"))


@pytest.fixture(scope="session")
def e2e(tmp_path_factory) -> E2E:
    from poem_registry.pipeline import run_all
    from poem_registry.synth import generate

    base = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        for var in POEM_ENV:
            mp.delenv(var, raising=False)
        mp.setenv("POEM_PSEUDONYM_KEY", SESSION_SECRET)
        settings = load_settings(home=base / "home", sites_dir=base / "sites", warehouse_lock_timeout=30)
        settings.ensure_dirs()
        settings.sites_dir.mkdir()
        gen = generate(
            settings.landing_dir,
            seed=11,
            years=2,
            scale=0.1,
            sites_dir=settings.sites_dir,
            truth_dir=base / "truth",
        )
        sql_env = {src["env"]: src["url"] for src in gen.sql_urls.values()}
        for k, v in sql_env.items():
            mp.setenv(k, v)
        site_file = settings.sites_dir / f"{HOSTILE_SITE}.yml"
        text = site_file.read_text(encoding="utf-8")
        old_name = next(line for line in text.splitlines() if line.startswith("name:"))
        site_file.write_text(text.replace(old_name, "name: " + json.dumps(HOSTILE_NAME)), encoding="utf-8")
        _hostile_delivery(settings.landing_dir)
        log_file = settings.logs_dir / "pipeline-test.log"
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            run = run_all(settings, progress=lambda msg: logging.getLogger("poem.progress").info("%s", msg))
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.close()
    assert run.stages["publish"]["status"] == "published", run.stages["publish"]
    return E2E(
        settings=settings,
        generation=gen,
        run=run,
        truth_dir=base / "truth",
        sql_env=sql_env,
        log_file=log_file,
    )
