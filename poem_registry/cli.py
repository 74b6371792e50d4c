"""`poem-registry`: one command per pipeline stage, and `run` for all of them.

Every location can be given as an option or a POEM_* environment variable; see
`poem-registry --help` and the README's Configuration section.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from poem_registry.settings import Settings, load_settings

app = typer.Typer(
    name="poem-registry",
    help=(
        "POEM Registry: multi-site POEM outcome data in, checked outcome marts and published reports out.\n\n"
        "Typical use: `poem-registry run --demo` (all stages on the demo data), or one stage at a time: "
        "synth -> ingest -> build -> validate -> report. `poem-registry status` shows what is loaded."
    ),
    no_args_is_help=True,
    add_completion=False,
)
export_app = typer.Typer(help="Write warehouse numbers to files.", no_args_is_help=True)
quarantine_app = typer.Typer(help="List and resolve quarantined deliveries.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(quarantine_app, name="quarantine")

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Runtime folder (POEM_HOME); default ./var")]
SitesOpt = Annotated[Path | None, typer.Option("--sites-dir", help="Site configs (POEM_SITES_DIR); default ./sites")]
WarehouseOpt = Annotated[Path | None, typer.Option("--warehouse", help="DuckDB file (POEM_WAREHOUSE)")]
DemoOpt = Annotated[bool, typer.Option("--demo", help="Demo mode: create a local pseudonymization secret if none")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Reporting date YYYY-MM-DD (default today)")]
LandingOpt = Annotated[Path | None, typer.Option("--landing", help="Site deliveries folder (POEM_LANDING)")]
PublishedOpt = Annotated[Path | None, typer.Option("--published", help="Published editions (POEM_PUBLISHED)")]


def _settings(home=None, sites_dir=None, warehouse=None, demo=False, landing=None, published=None) -> Settings:
    overrides = {"home": home, "sites_dir": sites_dir, "warehouse_path": warehouse, "landing_dir": landing,
                 "published_dir": published}
    if demo:
        overrides["demo"] = True
    try:
        return load_settings(**overrides)
    except ValueError as exc:
        _fail(str(exc))


def _as_of(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"--as-of {value!r} is not a date; use YYYY-MM-DD")


def _fail(message: str, code: int = 1):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _progress(msg: str) -> None:
    typer.echo(msg)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details")] = False) -> None:
    _logging(verbose)


@app.command()
def synth(
    out: Annotated[Path | None, typer.Option("--out", help="Landing folder to write (default: settings landing)")] = None,
    sites: Annotated[int, typer.Option("--sites", help="Number of sites")] = 6,
    years: Annotated[int, typer.Option("--years", help="Years of activity")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files)")] = 42,
    scale: Annotated[float, typer.Option("--scale", help="Volume multiplier")] = 1.0,
    home: HomeOpt = None,
    sites_dir: SitesOpt = None,
) -> None:
    """Generate realistic multi-site demo deliveries (several extracts per site, corrections, defects)."""
    from poem_registry.synth import generate, summary_text

    settings = _settings(home, sites_dir)
    target = out or settings.landing_dir
    summary = generate(target, sites=sites, years=years, seed=seed, scale=scale, sites_dir=settings.sites_dir,
                       progress=_progress)
    typer.echo(summary_text(summary))
    typer.echo(f"wrote demo deliveries to {target}")


@app.command()
def ingest(
    site: Annotated[list[str] | None, typer.Option("--site", help="Only this site (repeatable)")] = None,
    home: HomeOpt = None, sites_dir: SitesOpt = None, warehouse: WarehouseOpt = None, landing: LandingOpt = None,
    demo: DemoOpt = False,
) -> None:
    """Load new site deliveries into the warehouse (validated, pseudonymized; bad rows quarantined)."""
    from poem_registry.pipeline import run_ingest

    settings = _settings(home, sites_dir, warehouse, demo, landing)
    try:
        summary = run_ingest(settings, site_ids=site, progress=_progress)
    except Exception as exc:
        _fail(str(exc))
    typer.echo(f"loaded {summary['rows_loaded']} rows in {summary['committed_batches']} batch(es); "
               f"{summary['rows_quarantined']} row(s) quarantined; {len(summary['site_errors'])} site(s) failed")
    if summary["site_errors"]:
        for s, e in summary["site_errors"].items():
            typer.secho(f"  {s}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)


@app.command()
def build(
    as_of: AsOfOpt = None, full_refresh: Annotated[bool, typer.Option("--full-refresh")] = False,
    home: HomeOpt = None, warehouse: WarehouseOpt = None,
) -> None:
    """Build the outcome marts with dbt (one `dbt build`: models, tests, unit tests)."""
    from poem_registry.pipeline import run_build

    settings = _settings(home, warehouse=warehouse)
    try:
        run_build(settings, as_of=_as_of(as_of), progress=_progress, full_refresh=full_refresh)
        from poem_registry.pipeline import run_analytics

        run_analytics(settings, as_of=_as_of(as_of), progress=_progress)
    except Exception as exc:
        _fail(str(exc))


@app.command()
def validate(home: HomeOpt = None, warehouse: WarehouseOpt = None, sites_dir: SitesOpt = None) -> None:
    """Run the mart quality gate (Great Expectations); exit 3 when publishing would be blocked."""
    from poem_registry.ingest import new_run_id
    from poem_registry.pipeline import run_validate

    settings = _settings(home, sites_dir, warehouse)
    result = run_validate(settings, run_id=new_run_id(), progress=_progress)
    if not result["publish_allowed"]:
        raise typer.Exit(3)


@app.command()
def report(
    as_of: AsOfOpt = None,
    period: Annotated[str | None, typer.Option("--period", help="Edition period, e.g. 2026-Q3 or 2026-09")] = None,
    home: HomeOpt = None, warehouse: WarehouseOpt = None, published: PublishedOpt = None, sites_dir: SitesOpt = None,
) -> None:
    """Validate the marts and publish an edition of the reports (only if the gate passes)."""
    from poem_registry.ingest import new_run_id
    from poem_registry.pipeline import run_publish, run_validate

    settings = _settings(home, sites_dir, warehouse, published=published)
    run_id = new_run_id()
    gate = run_validate(settings, run_id=run_id, progress=_progress)
    result = run_publish(settings, run_id=run_id, as_of=_as_of(as_of), period=period, gate=gate,
                         progress=_progress)
    typer.echo(json.dumps(result, indent=2, default=str))
    if result.get("status") == "blocked":
        raise typer.Exit(3)


@app.command()
def run(
    as_of: AsOfOpt = None,
    period: Annotated[str | None, typer.Option("--period", help="Edition period, e.g. 2026-Q3")] = None,
    site: Annotated[list[str] | None, typer.Option("--site", help="Only ingest this site (repeatable)")] = None,
    home: HomeOpt = None, sites_dir: SitesOpt = None, warehouse: WarehouseOpt = None, landing: LandingOpt = None,
    published: PublishedOpt = None, demo: DemoOpt = False,
) -> None:
    """Run every stage in order in this process: ingest, build, statistics, validate, publish."""
    from poem_registry.pipeline import run_all
    from poem_registry.summary import format_run_summary

    settings = _settings(home, sites_dir, warehouse, demo, landing, published)
    try:
        summary = run_all(settings, as_of=_as_of(as_of), site_ids=site, period=period, progress=_progress)
    except Exception as exc:
        _fail(str(exc))
    typer.echo(format_run_summary(summary.stages))


@app.command()
def status(
    home: HomeOpt = None, sites_dir: SitesOpt = None, warehouse: WarehouseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """What is loaded per site, late sites, open quarantines, the last run and the last published edition."""
    from poem_registry.status import collect_status, format_status

    settings = _settings(home, sites_dir, warehouse)
    st = collect_status(settings)
    typer.echo(json.dumps(st, indent=2, default=str) if as_json else format_status(st))


@export_app.command("measures")
def export_measures(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write")],
    home: HomeOpt = None, warehouse: WarehouseOpt = None,
) -> None:
    """Write the measures of the current warehouse (same columns as an edition's measures.csv)."""
    from poem_registry.reports.measures_export import export_measures as write
    from poem_registry.warehouse import connect

    settings = _settings(home, warehouse=warehouse)
    with connect(settings.warehouse_path, read_only=True, timeout=settings.warehouse_lock_timeout) as con:
        n = write(con, out)
    typer.echo(f"wrote {n} measure rows to {out}")


@quarantine_app.command("list")
def quarantine_list(home: HomeOpt = None, warehouse: WarehouseOpt = None, sites_dir: SitesOpt = None) -> None:
    """Open quarantines with the path of each report."""
    from poem_registry.status import collect_status

    st = collect_status(_settings(home, sites_dir, warehouse))
    if not st["open_quarantines"]:
        typer.echo("no open quarantines")
    for q in st["open_quarantines"]:
        typer.echo(f"{q['batch_id']}\t{q['status']}\t{q['rows']} rows\t{q['path']}/report.md")


@quarantine_app.command("resolve")
def quarantine_resolve(
    batch_id: Annotated[str, typer.Argument(help="Batch id from `poem-registry quarantine list`")],
    note: Annotated[str, typer.Option("--note", help="What was done (kept in the ledger)")],
    home: HomeOpt = None, warehouse: WarehouseOpt = None,
) -> None:
    """Mark a quarantine as dealt with (for example after the site re-delivered corrected rows)."""
    from poem_registry.status import resolve_quarantine

    try:
        resolve_quarantine(_settings(home, warehouse=warehouse), batch_id, note)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"resolved {batch_id}")


@app.command("airflow-init")
def airflow_init(home: HomeOpt = None) -> None:
    """Create the Airflow pool, variables and connections this project needs (idempotent)."""
    from poem_registry.orchestration.init import airflow_init as init

    init(_settings(home))


@app.command()
def demo(
    seed: Annotated[int, typer.Option("--seed")] = 42,
    home: HomeOpt = None,
    in_process: Annotated[bool, typer.Option("--in-process", help="Run stages directly instead of an Airflow "
                                                                 "DAG run")] = False,
) -> None:
    """The demo: generate data, run the whole pipeline as an Airflow DAG run, print where the reports are."""
    from poem_registry.demo import run_demo

    settings = _settings(home, demo=True)
    code = run_demo(settings, seed=seed, in_process=in_process, progress=_progress)
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
