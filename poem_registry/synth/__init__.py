"""Synthetic multi-site POEM data: the demo sites' delivery history and ground truth.

Public API::

    from poem_registry.synth import generate, synth_command
    summary = generate(Path("var/landing"), sites=6, years=4, seed=42)

See :func:`generate` for the layout written, :data:`DELIBERATE_DEFECTS` for the
documented defects and :class:`GenerationSummary` for what a run reports.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from poem_registry.synth.clinical import ClinicalData, simulate
from poem_registry.synth.delivery import DELIBERATE_DEFECTS, DefectSpec
from poem_registry.synth.generate import (
    DEFAULT_END_DATE,
    GenerationSummary,
    generate,
    write_demo_site_yamls,
)
from poem_registry.synth.sites import DEMO_SITES, SiteSpec, site_specs, site_yaml

__all__ = [
    "DELIBERATE_DEFECTS",
    "DEMO_SITES",
    "ClinicalData",
    "DefectSpec",
    "GenerationSummary",
    "SiteSpec",
    "generate",
    "simulate",
    "site_specs",
    "site_yaml",
    "summary_text",
    "synth_command",
    "write_demo_site_yamls",
]


def synth_command(
    *,
    sites: int = 6,
    years: int = 4,
    seed: int = 42,
    out: Path,
    scale: float = 1.0,
    target_procedures: int | None = None,
    end_date: date | None = None,
    sites_dir: Path | None = None,
    truth_dir: Path | None = None,
    progress=None,
) -> GenerationSummary:
    """What ``poem-registry synth --sites N --years Y --seed S --out DIR`` calls.

    Returns the summary; print :func:`summary_text` of it for the user.
    """
    return generate(
        Path(out),
        sites=sites,
        years=years,
        seed=seed,
        end_date=end_date or DEFAULT_END_DATE,
        scale=scale,
        target_procedures=target_procedures,
        sites_dir=sites_dir,
        truth_dir=truth_dir,
        progress=progress,
    )


def summary_text(summary: GenerationSummary) -> str:
    """A short human-readable account of a run (for the CLI)."""
    lines = [
        f"{summary.total_procedures} procedures at {len(summary.sites)} sites, seed {summary.seed}",
        f"landing: {summary.out_dir}",
        f"ground truth: {summary.truth_dir} (summary.json; keep it out of leak scans)",
    ]
    for s in summary.sites:
        lines.append(
            f"  {s['site_id']:<12} {s['adapter']:<11} {s['tier']:<7} {s['procedures']:>7} procedures, "
            f"{s['extracts']} extracts"
        )
    for sid, u in summary.sql_urls.items():
        lines.append(f"  set {u['env']}={u['url']}  ({sid})")
    lines.append(f"{len(summary.defects)} deliberate defects (see summary.json 'defects')")
    lines.extend(f"note: {n}" for n in summary.notes)
    return "\n".join(lines)
