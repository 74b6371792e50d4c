"""`make demo`: demo data in, the whole pipeline as a real Airflow DAG run, published reports out."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from poem_registry.settings import Settings
from poem_registry.summary import warehouse_summary


def run_demo(settings: Settings, *, seed: int = 42, in_process: bool = False,
             progress: Callable[[str], None] = print) -> int:
    from poem_registry.synth import generate

    settings.ensure_dirs()
    progress(f"[1/3] generating demo deliveries for the sites in {settings.sites_dir} (seed {seed}) ...")
    summary = generate(settings.landing_dir, seed=seed, sites_dir=settings.sites_dir, progress=progress)
    for source in summary.sql_urls.values():
        os.environ.setdefault(source["env"], source["url"])
    if in_process:
        from poem_registry.pipeline import run_all

        progress("[2/3] running the pipeline in this process ...")
        run_all(settings, progress=progress)
        code = 0
    else:
        from poem_registry.orchestration.init import run_demo_dag

        progress("[2/3] running the pipeline as an Airflow DAG run (airflow dags test poem_demo) ...")
        code = run_demo_dag(settings)
        if code != 0:
            progress(f"the Airflow DAG run failed (exit {code}); the task logs above say which task and why. "
                     f"Logs are under {settings.airflow_home}/logs")
            return code
    progress("[3/3] done")
    progress(warehouse_summary(settings))
    latest = settings.published_dir / "latest.json"
    if latest.exists():
        edition = json.loads(latest.read_text(encoding="utf-8"))
        pages = sum(1 for _ in Path(edition["path"]).rglob("*.html")) if edition.get("path") else 0
        progress(f"reports written: {pages} HTML pages in edition {edition.get('edition')} ({edition.get('path')})")
    index = settings.published_dir / "index.html"
    progress(f"open the reports: {index if index.exists() else 'NOT PUBLISHED (see the gate message above)'}")
    return 0 if index.exists() else 4
