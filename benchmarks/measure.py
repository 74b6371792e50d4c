"""Run one stage in a child process and measure it: wall time, CPU time, peak RSS.

CPU time is the delta of ``getrusage(RUSAGE_CHILDREN)`` around the child (user + system,
including its own children). Peak memory is the larger of two readings:

* the child's own ``ru_maxrss`` (``RUSAGE_SELF`` and ``RUSAGE_CHILDREN`` reported by the child
  at exit, so a stage's peak is not masked by an earlier, bigger stage of this parent), and
* the peak of the summed ``VmRSS`` of the child's process tree, polled from ``/proc`` every
  50 ms (catches concurrent grandchildren; no psutil needed).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Measurement:
    stage: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int
    details: dict = field(default_factory=dict)
    error: str | None = None
    #: 1-minute load average at start and end: other work on the machine inflates wall time, not CPU time
    loadavg: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(root: int) -> int:
    """Summed resident set size of ``root`` and all its descendants, in kB."""
    tree = _children_of()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo.extend(tree.get(pid, []))
    return total


class _Poller(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def run_stage(stage: str, spec: dict, *, env: dict[str, str] | None = None, log_file: Path | None = None,
              timeout: float | None = None) -> Measurement:
    """``python -m benchmarks.stage`` with ``spec`` (JSON) in a child process, measured."""
    with tempfile.TemporaryDirectory(prefix="poem-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps({**spec, "stage": stage, "out": str(out_path)}), encoding="utf-8")
        child_env = {**os.environ, **(env or {})}
        log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            load_start = os.getloadavg()[0]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.stage", str(spec_path)], cwd=REPO_ROOT,
                                    env=child_env, stdout=log, stderr=subprocess.STDOUT)
            poller = _Poller(proc.pid)
            poller.start()
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            wall = time.perf_counter() - start
            poller.stop()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            if log_file:
                log.close()
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result = json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists() else {}
        self_peak_kb = max(result.get("maxrss_self_kb", 0), result.get("maxrss_children_kb", 0))
        peak_mb = max(poller.peak_kb, self_peak_kb) / 1024
        error = result.get("error") or (None if code == 0 else f"exit code {code}; see {log_file}")
        return Measurement(stage=stage, wall_s=round(wall, 3), cpu_s=round(cpu, 3), peak_rss_mb=round(peak_mb, 1),
                           exit_code=code, details=result.get("details", {}), error=error,
                           loadavg=[round(load_start, 2), round(os.getloadavg()[0], 2)])
