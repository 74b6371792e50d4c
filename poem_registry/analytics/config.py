"""Statistical parameters, read from the dbt seed ``seeds/cfg_statistics.csv``.

The seed is the one place the parameters live (clinical spec §0.1: a ``[D]`` value is
changed in a seed, never as a literal in code). dbt loads the same file as
``seeds.cfg_statistics``; this module reads the CSV itself so that a run always uses
the file in the repository, and :func:`poem_registry.analytics.compute_all` writes the
values it used to ``analytics.parameters`` so every chart can show them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

SEED_NAME = "cfg_statistics.csv"
REQUIRED_COLUMNS = ("key", "value", "unit", "tag", "source", "note")


@dataclass(frozen=True)
class Parameter:
    """One row of the seed."""

    key: str
    value: str
    unit: str
    tag: str
    source: str
    note: str


@dataclass(frozen=True)
class StatisticsConfig:
    """Typed view of the seed. Field names equal the seed keys."""

    cusum_p0: float
    cusum_p1: float
    cusum_alpha: float
    cusum_beta: float
    racusum_odds_multiplier: float
    racusum_r0: float
    racusum_false_signal_probability: float
    racusum_n_simulations: int
    random_seed: int
    composite_ae_min_severity_rank: int
    composite_clinical_window: str
    oe_ae_min_severity_rank: int
    oe_clinical_window: str
    oe_min_expected_events: float
    oe_min_procedures: int
    oe_confidence: float
    oe_shrinkage_tau2_method: str
    funnel_levels: tuple[float, ...]
    funnel_method: str
    funnel_min_sites_overdispersion: int
    funnel_overdispersion_adjustment: str
    funnel_winsor_trim: float
    funnel_periods: tuple[str, ...]
    funnel_denominator_types: tuple[str, ...]
    funnel_curve_points: int
    km_years: tuple[float, ...]
    km_days_per_year: float
    km_confidence: float
    km_ci: str
    pooling_model: str
    pooling_transform: str
    pooling_tau2_methods: tuple[str, ...]
    pooling_confidence: float
    pooling_continuity: float
    pooling_hartung_knapp_below_k: int
    parameters: tuple[Parameter, ...] = ()


def _convert(raw: str, annotation: str) -> object:
    text = raw.strip()
    if annotation == "float":
        return float(text)
    if annotation == "int":
        return int(float(text))
    if annotation == "str":
        return text
    parts = [p.strip() for p in text.split("|") if p.strip()]
    if annotation == "tuple[float, ...]":
        return tuple(float(p) for p in parts)
    if annotation == "tuple[str, ...]":
        return tuple(parts)
    raise TypeError(f"unsupported parameter type {annotation}")


def seed_path(dbt_project_dir: Path) -> Path:
    return Path(dbt_project_dir) / "seeds" / SEED_NAME


def load_config(path: Path) -> StatisticsConfig:
    """Parse the seed at ``path``; every field of :class:`StatisticsConfig` must be present."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"statistics parameters seed not found: {path}")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing_cols = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise ValueError(f"{path}: missing columns {missing_cols}")
        rows = [Parameter(**{c: (row.get(c) or "").strip() for c in REQUIRED_COLUMNS}) for row in reader]
    by_key = {r.key: r for r in rows}
    if len(by_key) != len(rows):
        raise ValueError(f"{path}: duplicate keys")
    values: dict[str, object] = {}
    for name, annotation in StatisticsConfig.__annotations__.items():
        if name == "parameters":
            continue
        if name not in by_key:
            raise ValueError(f"{path}: parameter {name!r} is missing")
        try:
            values[name] = _convert(by_key[name].value, str(annotation))
        except ValueError as exc:
            raise ValueError(
                f"{path}: parameter {name!r} = {by_key[name].value!r} is invalid: {exc}"
            ) from exc
    return StatisticsConfig(**values, parameters=tuple(rows))  # type: ignore[arg-type]
