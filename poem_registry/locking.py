"""One pipeline run at a time: an exclusive lock on ``<home>/run.lock``.

Two runs started together (a cron job and a person at the terminal, or the CLI and
an Airflow DAG) would otherwise interleave their stages: one rebuilding the marts
while the other publishes from them. Every stage entry of :mod:`poem_registry.pipeline`
takes this lock. The second run waits up to a bounded time and then refuses with a
message naming the holder (pid, stage, start time) and what to do.

The lock is an ``fcntl.flock`` on an open file, so the kernel releases it when the
holder exits for any reason (including ``kill -9``): a crashed run never leaves a
stale lock behind. The file's text (who holds it) is informational only. Within one
thread the lock is re-entrant (``run_all`` holds it while calling each stage).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from poem_registry.settings import Settings

#: Environment variable overriding how long a run waits for another run (seconds).
TIMEOUT_ENV = "POEM_RUN_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 60.0

_local = threading.local()  # lock path -> nesting depth, per thread (another thread waits like a process)


class RunLockedError(RuntimeError):
    """Another pipeline run holds the run lock for longer than the timeout."""


def lock_path(settings: Settings) -> Path:
    return Path(settings.home) / "run.lock"


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    value = os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


def holder(path: Path) -> dict:
    """What the lock file says about its holder (may be stale or empty when nobody holds it)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _busy_message(path: Path, waited: float) -> str:
    info = holder(path)
    who = (
        (
            f"pid {info.get('pid', '?')}, stage {info.get('stage', '?')}, started at "
            f"{info.get('started_at', '?')}"
        )
        if info
        else "a process that has not written its details yet"
    )
    return (
        f"another pipeline run ({who}) holds {path}; waited {waited:.0f} s. Wait for it to finish "
        f"(`poem-registry status` shows the last run) and run the command again, or raise "
        f"{TIMEOUT_ENV} to wait longer. The lock is released automatically when that process exits."
    )


@contextlib.contextmanager
def run_lock(
    settings: Settings, stage: str = "pipeline", *, timeout: float | None = None, poll: float = 0.2
) -> Iterator[Path]:
    """Hold the run lock for the duration of the block; raises :class:`RunLockedError` after ``timeout``."""
    path = lock_path(settings)
    key = str(path)
    held: dict[str, int] = _local.__dict__.setdefault("held", {})
    if held.get(key):
        held[key] += 1
        try:
            yield path
        finally:
            held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        limit = _timeout(timeout)
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= limit:
                    raise RunLockedError(_busy_message(path, waited)) from None
                time.sleep(poll)
        info = {
            "pid": os.getpid(),
            "stage": stage,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        held[key] = 1
        try:
            yield path
        finally:
            held.pop(key, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
