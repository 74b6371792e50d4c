"""Faults injected into a running pipeline, each followed by a rerun that must complete cleanly.

Real process kills (``POEM_FAULT_MODE=kill`` -> ``os._exit``, no cleanup, no rollback in Python) are used
where only a dead process proves the point: during an ingest commit, during ``dbt build`` and while
publishing. Raised faults (the same points, in-process) prove the rollback paths.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from poem_registry.faults import InjectedFault
from poem_registry.ingest import ingest
from poem_registry.locking import RunLockedError, run_lock
from poem_registry.pipeline import run_build, run_ingest, run_publish
from poem_registry.reports.publish import PublishError
from poem_registry.status import collect_status
from poem_registry.warehouse import WarehouseBusyError
from tests.ingest.conftest import followup, procedure, to_csv, write_delivery, write_site
from tests.reliability.helpers import (
    REPO,
    clean_env,
    copy_home,
    duplicate_rows,
    edition_is_complete,
    latest_edition,
    run_python,
    settings_env,
    table_counts,
)

pytestmark = pytest.mark.xdist_group("reliability")

INGEST = (
    "from poem_registry.settings import load_settings; from poem_registry.pipeline import run_ingest; "
    "run_ingest(load_settings())"
)


def _two_deliveries(settings) -> None:
    write_site(settings.sites_dir, "alpha")
    write_delivery(
        settings.landing_dir,
        "alpha",
        "2024-04-01",
        {
            "procedures.csv": to_csv([procedure(f"P{i}") for i in range(1, 6)], "procedures"),
            "followups.csv": to_csv([followup("F1", "P1"), followup("F2", "P2")], "followups"),
        },
    )
    write_delivery(
        settings.landing_dir,
        "alpha",
        "2024-05-01",
        {"procedures.csv": to_csv([procedure(f"P{i}") for i in range(6, 9)], "procedures")},
    )


def _assert_clean_load(settings) -> None:
    counts = table_counts(settings.warehouse_path, ("raw", "ingest"))
    assert counts["raw.procedures"] == 8 and counts["raw.followups"] == 2
    assert counts["ingest.batches"] == 2 and counts["ingest.files"] == 3
    for table in ("raw.procedures", "raw.followups", "ingest.batches", "ingest.files"):
        assert duplicate_rows(settings.warehouse_path, table) == 0, table


# --------------------------------------------------------------------------- ingest


@pytest.mark.parametrize("point", ["ingest.mid_commit", "ingest.before_final_commit"])
def test_fault_in_ingest_commit_rolls_back_and_rerun_loads_everything_once(poem_home, point, scoreboard):
    _two_deliveries(poem_home)
    os.environ["POEM_FAULT"] = point
    try:
        summary = ingest(poem_home)
    finally:
        del os.environ["POEM_FAULT"]
    assert "alpha" in summary.site_errors and f"fault injected at {point}" in summary.site_errors["alpha"]
    counts = table_counts(poem_home.warehouse_path, ("raw", "ingest"))
    assert counts["raw.procedures"] == 0 and counts["ingest.batches"] == 0 and counts["ingest.files"] == 0
    rerun = ingest(poem_home)
    assert rerun.site_errors == {} and [o.status for o in rerun.outcomes] == ["committed", "committed"]
    _assert_clean_load(poem_home)
    scoreboard.fault(f"{point} (raised)")


def test_process_killed_before_final_ingest_commit_leaves_nothing_and_rerun_completes(poem_home, scoreboard):
    """A kill -9 between the last write of a batch and its COMMIT: no partial batch survives."""
    _two_deliveries(poem_home)
    proc = run_python(INGEST, poem_home, fault="ingest.before_final_commit")
    assert proc.returncode == 137, proc.stderr[-2000:]
    counts = table_counts(poem_home.warehouse_path, ("raw", "ingest"))
    assert counts["ingest.batches"] == 0 and counts["raw.procedures"] == 0 and counts["ingest.files"] == 0
    proc = run_python(INGEST, poem_home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_clean_load(poem_home)
    scoreboard.fault("ingest.before_final_commit (process killed)")


# --------------------------------------------------------------------------- dbt build


def test_process_killed_during_dbt_build_then_rerun_builds_the_same_marts(e2e, tmp_path, scoreboard):
    settings = copy_home(e2e, tmp_path)
    before = table_counts(settings.warehouse_path, ("raw", "ingest", "marts"))
    code = (
        "from poem_registry.settings import load_settings; from poem_registry.pipeline import run_build; "
        "run_build(load_settings(), run_id='killed')"
    )
    proc = run_python(code, settings, fault="build.mid_dbt")
    assert proc.returncode == 137, (proc.stdout[-2000:], proc.stderr[-2000:])
    # the warehouse opens after the kill (DuckDB replays or discards its WAL), raw data untouched
    after_kill = table_counts(settings.warehouse_path, ("raw", "ingest"))
    assert after_kill == {k: v for k, v in before.items() if not k.startswith("marts.")}
    result = run_build(settings, run_id="rerun")
    assert result["success"], result
    rebuilt = table_counts(settings.warehouse_path, ("raw", "ingest", "marts"))
    assert rebuilt == before, {k: (before.get(k), v) for k, v in rebuilt.items() if before.get(k) != v}
    for table in [t for t in rebuilt if t.startswith(("marts.", "raw."))]:
        assert duplicate_rows(settings.warehouse_path, table) == 0, table
    scoreboard.fault("build.mid_dbt (process killed)")


# --------------------------------------------------------------------------- publishing


def test_faults_while_publishing_leave_latest_on_a_whole_edition(e2e, tmp_path, scoreboard):
    settings = copy_home(e2e, tmp_path)
    published = settings.published_dir
    good = latest_edition(published)
    editions_json = (published / "editions.json").read_text(encoding="utf-8")
    gate = e2e.run.stages["validate"]

    def still_good(extra_ok: set[str] = frozenset()) -> None:
        assert latest_edition(published) == good
        assert json.loads((published / "latest.json").read_text(encoding="utf-8"))["edition"] == good
        assert edition_is_complete(published / "latest")
        assert (published / "editions.json").read_text(encoding="utf-8") == editions_json
        on_disk = {p.name for p in (published / "editions").iterdir()}
        assert on_disk - extra_ok == {good}
        for p in (published / "editions").iterdir():
            assert edition_is_complete(p), f"half-written edition {p.name}"
        assert not [p for p in published.iterdir() if p.name.startswith(".") and "tmp" in p.name]

    # 1. raised after rendering, before the move: the staging folder is removed, nothing changes
    os.environ["POEM_FAULT"] = "publish.after_render"
    try:
        with pytest.raises(InjectedFault):
            run_publish(settings, run_id="run_fault_render", gate=gate)
    finally:
        del os.environ["POEM_FAULT"]
    still_good()
    assert not [p for p in settings.home.iterdir() if "staging" in p.name]
    scoreboard.fault("publish.after_render (raised)")

    # 2. killed after the edition moved in but before `latest` was repointed
    code = (
        "import json; from poem_registry.settings import load_settings; "
        "from poem_registry.pipeline import run_publish; "
        f"run_publish(load_settings(), run_id='run_fault_latest', gate=json.loads({json.dumps(json.dumps(gate))}))"
    )
    proc = run_python(code, settings, fault="publish.before_latest")
    assert proc.returncode == 137, proc.stderr[-2000:]
    killed = next(p.name for p in (published / "editions").iterdir() if "run_fault_latest" in p.name)
    still_good(extra_ok={killed})  # a whole edition nobody points to; `latest` and the index are unchanged
    scoreboard.fault("publish.before_latest (process killed)")

    # 3. the rerun publishes and repoints latest
    result = run_publish(settings, run_id="run_fault_latest", gate=gate)
    assert result["status"] == "published"
    assert latest_edition(published) == result["edition"] == killed
    assert edition_is_complete(published / "latest")
    ids = json.loads((published / "editions.json").read_text(encoding="utf-8"))["editions"]
    assert ids == [good, killed]
    assert edition_is_complete(published / "editions" / good)  # the previous edition is still there, intact


@pytest.mark.parametrize("failure", ["disk_full", "permission_denied"])
def test_write_error_while_publishing_is_clear_and_keeps_previous_edition(
    e2e, tmp_path, monkeypatch, failure, scoreboard
):
    import poem_registry.reports.publish as publish

    settings = copy_home(e2e, tmp_path)
    published = settings.published_dir
    good = latest_edition(published)
    if failure == "disk_full":

        def no_space(frame, path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(publish, "write_csv", no_space)
        expected = "No space left on device"
    else:  # tests run as root here, so chmod cannot be relied on: the rename into editions/ is refused
        real_rename = os.rename

        def refuse(src, dst, *a, **k):
            if "editions" in str(dst):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
            return real_rename(src, dst, *a, **k)

        monkeypatch.setattr(publish.os, "rename", refuse)
        expected = "Permission denied"
    with pytest.raises(PublishError) as err:
        run_publish(settings, run_id="run_write_error", gate=e2e.run.stages["validate"])
    message = str(err.value)
    assert expected in message and f"the latest edition is still {good}" in message
    assert "run the publish step again" in message
    assert latest_edition(published) == good and edition_is_complete(published / "latest")
    assert {p.name for p in (published / "editions").iterdir()} == {good}
    assert not [p for p in settings.home.iterdir() if "staging" in p.name]
    scoreboard.fault(f"publish write error: {failure.replace('_', ' ')}")


# --------------------------------------------------------------------------- concurrent runs


HOLD_LOCK = (
    "import sys, time; from poem_registry.settings import load_settings; "
    "from poem_registry.locking import run_lock\n"
    "with run_lock(load_settings(), 'held by test'):\n"
    "    print('locked', flush=True); time.sleep(float(sys.argv[1]))"
)


def _hold_lock(settings, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(seconds)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        env=clean_env(settings_env(settings)),
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_pipeline_run_refuses_with_a_clear_message_then_waits(poem_home, scoreboard):
    _two_deliveries(poem_home)
    holder = _hold_lock(poem_home, 30)
    try:
        start = time.monotonic()
        with pytest.raises(RunLockedError) as err, run_lock(poem_home, "second run", timeout=1):
            pass
        assert time.monotonic() - start < 5
        message = str(err.value)
        assert f"pid {holder.pid}" in message and "held by test" in message and "started at" in message
        assert "another pipeline run" in message and "POEM_RUN_LOCK_TIMEOUT" in message
    finally:
        holder.kill()  # kill -9: the kernel releases the flock, no stale lock survives
        holder.wait()
    # a run that waits long enough gets the lock once the holder is gone
    holder = _hold_lock(poem_home, 1.5)
    try:
        os.environ["POEM_RUN_LOCK_TIMEOUT"] = "30"
        summary = run_ingest(poem_home)
    finally:
        del os.environ["POEM_RUN_LOCK_TIMEOUT"]
        holder.wait()
    assert summary["committed_batches"] == 2
    _assert_clean_load(poem_home)
    scoreboard.fault("second pipeline run while one holds the run lock")


def test_two_pipeline_runs_started_together_do_not_corrupt_anything(poem_home, scoreboard):
    _two_deliveries(poem_home)
    env = clean_env({**settings_env(poem_home), "POEM_RUN_LOCK_TIMEOUT": "120"})
    code = INGEST.replace(
        "run_ingest(load_settings())", "import json; print(json.dumps(run_ingest(load_settings())))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(r["committed_batches"] for r in results) == [0, 2]  # one loaded, the other found duplicates
    _assert_clean_load(poem_home)
    scoreboard.fault("two pipeline runs started together")


# --------------------------------------------------------------------------- warehouse held by an analyst

ANALYST = (
    "import sys, time, duckdb\ncon = duckdb.connect(sys.argv[1])\n"
    "con.execute('select count(*) from raw.procedures').fetchall()\n"
    "print('open', flush=True); time.sleep(float(sys.argv[2])); con.close()"
)


def test_warehouse_held_by_a_duckdb_shell_bounded_wait_then_clear_failure(poem_home, scoreboard):
    _two_deliveries(poem_home)
    ingest(poem_home)
    write_delivery(
        poem_home.landing_dir,
        "alpha",
        "2024-06-01",
        {"procedures.csv": to_csv([procedure("P9")], "procedures")},
    )
    shell = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(poem_home.warehouse_path), "60"],
        text=True,
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    assert shell.stdout.readline().strip() == "open"
    try:
        settings = poem_home.with_overrides(warehouse_lock_timeout=1.5)
        start = time.monotonic()
        with pytest.raises(WarehouseBusyError) as err:
            run_ingest(settings)
        waited = time.monotonic() - start
        assert 1.5 <= waited < 10, waited
        message = str(err.value)
        assert str(poem_home.warehouse_path) in message and "held by another process" in message
        assert "within 2 s" in message and "run the command again" in message
    finally:
        shell.kill()
        shell.wait()
    # nothing was written or corrupted; with the shell gone the pipeline proceeds
    with duckdb.connect(str(poem_home.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from raw.procedures").fetchone()[0] == 8
    _assert_clean_load(poem_home)
    # an analyst who closes the shell within the timeout only delays the run
    shell = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(poem_home.warehouse_path), "1.5"],
        text=True,
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    assert shell.stdout.readline().strip() == "open"
    try:
        summary = run_ingest(poem_home.with_overrides(warehouse_lock_timeout=30))
    finally:
        shell.wait()
    assert summary["rows_loaded"] == 1
    scoreboard.fault("warehouse held open by another process (DuckDB shell)")


# --------------------------------------------------------------------------- a site's database


def _sql_site(sites_dir: Path, site_id: str, env: str, timeout: float = 1) -> None:
    (sites_dir / f"{site_id}.yml").write_text(
        f"site_id: {site_id}\nname: {site_id.title()} Hospital\nadapter: sql\nexpected_cadence_days: 31\n"
        f"sql:\n  url_setting: {env}\n  connect_timeout_seconds: {timeout}\n"
        "  tables:\n    procedures: {table: procedures}\n",
        encoding="utf-8",
    )


LOCK_SQLITE = (
    "import sqlite3, sys, time\ncon = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "con.execute('begin exclusive'); print('locked', flush=True); time.sleep(60)"
)


def test_unreachable_or_timed_out_site_database_fails_that_site_only(
    poem_home, tmp_path, monkeypatch, scoreboard
):
    write_site(poem_home.sites_dir, "alpha")
    write_delivery(
        poem_home.landing_dir,
        "alpha",
        "2024-04-01",
        {"procedures.csv": to_csv([procedure("P1"), procedure("P2")], "procedures")},
    )
    _sql_site(poem_home.sites_dir, "gone", "POEM_SITE_GONE_DB_URL")
    monkeypatch.setenv("POEM_SITE_GONE_DB_URL", f"sqlite:///{tmp_path / 'missing' / 'registry.sqlite'}")
    busy_db = tmp_path / "busy.sqlite"
    with sqlite3.connect(busy_db) as con:
        con.execute("create table procedures (procedure_id text, record_updated_at text)")
    _sql_site(poem_home.sites_dir, "busy", "POEM_SITE_BUSY_DB_URL")
    monkeypatch.setenv("POEM_SITE_BUSY_DB_URL", f"sqlite:///{busy_db}")
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCK_SQLITE, str(busy_db)], text=True, stdout=subprocess.PIPE, env=clean_env()
    )
    assert locker.stdout.readline().strip() == "locked"
    try:
        start = time.monotonic()
        summary = run_ingest(poem_home)
        assert time.monotonic() - start < 60
    finally:
        locker.kill()
        locker.wait()
    errors = summary["site_errors"]
    assert set(errors) == {"gone", "busy"}, errors
    assert "gone database unreachable" in errors["gone"] and "does not exist" in errors["gone"]
    assert "POEM_SITE_GONE_DB_URL" in errors["gone"] and "other sites continue" in errors["gone"]
    assert "database is locked" in errors["busy"]
    assert [(b["site_id"], b["status"]) for b in summary["batches"]] == [("alpha", "committed")]
    status = {s["site_id"]: s for s in collect_status(poem_home)["sites"]}
    assert status["gone"]["late"] and status["busy"]["late"]
    assert status["alpha"]["procedures"] == 2 and status["gone"]["batches"] == 0
    scoreboard.fault("site database unreachable")
    scoreboard.fault("site database timed out (locked)")


def test_quarantined_sql_pull_is_not_retried_forever_and_loads_once_fixed(
    poem_home, tmp_path, monkeypatch, scoreboard
):
    """Regression: a whole-quarantined SQL pull made every later run fail the site on a duplicate batch id."""
    db = tmp_path / "site.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table procedures (procedure_id text, record_updated_at text)")
        con.execute("insert into procedures values ('P1', '2024-03-02 10:00:00')")
    _sql_site(poem_home.sites_dir, "sq", "POEM_SITE_SQ_DB_URL")
    monkeypatch.setenv("POEM_SITE_SQ_DB_URL", f"sqlite:///{db}")
    first = ingest(poem_home)
    assert [o.status for o in first.outcomes] == [
        "quarantined"
    ] and "lacks the required column" in first.outcomes[0].message
    again = ingest(poem_home)
    assert again.site_errors == {}, again.site_errors
    assert [o.status for o in again.outcomes] == ["duplicate"] and "already processed" in again.outcomes[
        0
    ].message
    # the site adds the missing columns without touching record_updated_at: the same extract now loads
    row = procedure("P1")
    with sqlite3.connect(db) as con:
        con.execute("drop table procedures")
        cols = [c for c in row if c != "record_updated_at"]
        con.execute(
            f"create table procedures ({', '.join(c + ' text' for c in cols)}, record_updated_at text)"
        )
        con.execute(
            f"insert into procedures values ({', '.join('?' for _ in cols)}, '2024-03-02 10:00:00')",
            [row[c] for c in cols],
        )
    fixed = ingest(poem_home)
    assert fixed.site_errors == {} and [o.status for o in fixed.outcomes] == ["committed"], fixed.outcomes
    assert table_counts(poem_home.warehouse_path, ("raw",))["raw.procedures"] == 1
    assert ingest(poem_home).outcomes == []  # the watermark moved: nothing left to pull
    scoreboard.bad_input("sql pull quarantined then re-pulled (regression: duplicate batch id)")
