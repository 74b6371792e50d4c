"""Where everything lives, from one settings file overridable by environment.

Precedence (highest first): CLI options (passed as ``overrides``), environment
variables (``POEM_*``), the settings file (``POEM_SETTINGS`` or
``<repo>/settings.yml``), built-in defaults. All runtime state lives under
``home`` (``var/`` in the repository by default) unless a location is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETTINGS_FILE = REPO_ROOT / "settings.yml"

# setting name -> (environment variable, default relative to home or repo)
_PATH_SETTINGS = {
    "home": ("POEM_HOME", None),
    "sites_dir": ("POEM_SITES_DIR", "repo:sites"),
    "landing_dir": ("POEM_LANDING", "home:landing"),
    "warehouse_path": ("POEM_WAREHOUSE", "home:warehouse.duckdb"),
    "quarantine_dir": ("POEM_QUARANTINE", "home:quarantine"),
    "published_dir": ("POEM_PUBLISHED", "home:published"),
    "airflow_home": ("POEM_AIRFLOW_HOME", "home:airflow"),
    "secret_file": ("POEM_SECRET_FILE", "home:secrets/pseudonym.key"),
    "dbt_project_dir": ("POEM_DBT_PROJECT_DIR", "repo:dbt_project"),
    "expectations_dir": ("POEM_EXPECTATIONS_DIR", "repo:expectations"),
    "templates_dir": ("POEM_TEMPLATES_DIR", "repo:reports"),
    "logs_dir": ("POEM_LOGS_DIR", "home:logs"),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    sites_dir: Path
    landing_dir: Path
    warehouse_path: Path
    quarantine_dir: Path
    published_dir: Path
    airflow_home: Path
    secret_file: Path
    dbt_project_dir: Path
    expectations_dir: Path
    templates_dir: Path
    logs_dir: Path
    #: Demo mode creates its own local pseudonymization secret; production refuses to run without one.
    demo: bool = False
    #: Seconds to keep retrying when another process holds the warehouse file.
    warehouse_lock_timeout: float = 60.0
    #: Ingest validates the sites of a wave together (one GX pass per entity); a wave ends once its
    #: sites delivered this many rows. Larger waves: fewer GX passes, more memory.
    ingest_rows_per_wave: int = 300_000
    registry_name: str = "POEM Registry"

    def with_overrides(self, **overrides) -> Settings:
        clean = {k: (Path(v) if k in _PATH_SETTINGS and v is not None else v) for k, v in overrides.items()}
        return replace(self, **{k: v for k, v in clean.items() if v is not None})

    def ensure_dirs(self) -> None:
        for d in (self.home, self.landing_dir, self.quarantine_dir, self.published_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.warehouse_path.parent.mkdir(parents=True, exist_ok=True)

    def as_env(self) -> dict[str, str]:
        """The settings as POEM_* environment variables (for subprocesses such as dbt and Airflow)."""
        env = {var: str(getattr(self, name)) for name, (var, _) in _PATH_SETTINGS.items()}
        env["POEM_DEMO"] = "1" if self.demo else "0"
        return env


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def load_settings(settings_file: Path | None = None, **overrides) -> Settings:
    file = Path(settings_file or os.environ.get("POEM_SETTINGS") or DEFAULT_SETTINGS_FILE)
    from_file: dict = {}
    if file.exists():
        from_file = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        unknown = set(from_file) - {f.name for f in fields(Settings)}
        if unknown:
            raise ValueError(f"{file}: unknown setting(s) {sorted(unknown)}; see README 'Configuration'")

    def pick(name: str, env_var: str | None):
        if overrides.get(name) is not None:
            return overrides[name]
        if env_var and os.environ.get(env_var):
            return os.environ[env_var]
        return from_file.get(name)

    home = Path(pick("home", "POEM_HOME") or REPO_ROOT / "var").expanduser().resolve()
    values: dict = {"home": home}
    for name, (env_var, default) in _PATH_SETTINGS.items():
        if name == "home":
            continue
        chosen = pick(name, env_var)
        if chosen is None:
            base, rel = default.split(":", 1)
            chosen = (home if base == "home" else REPO_ROOT) / rel
        path = Path(chosen).expanduser()
        values[name] = (path if path.is_absolute() else (REPO_ROOT / path)).resolve()
    demo = pick("demo", "POEM_DEMO")
    values["demo"] = _truthy(demo) if isinstance(demo, str) else bool(demo)
    timeout = pick("warehouse_lock_timeout", "POEM_WAREHOUSE_LOCK_TIMEOUT")
    if timeout is not None:
        values["warehouse_lock_timeout"] = float(timeout)
    rows_per_wave = pick("ingest_rows_per_wave", "POEM_INGEST_ROWS_PER_WAVE")
    if rows_per_wave is not None:
        values["ingest_rows_per_wave"] = int(rows_per_wave)
    if pick("registry_name", "POEM_REGISTRY_NAME"):
        values["registry_name"] = pick("registry_name", "POEM_REGISTRY_NAME")
    return Settings(**values)
