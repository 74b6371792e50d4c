"""Site configuration: one YAML file per site in the sites folder (see docs/site-config.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ADAPTERS = ("canonical", "csv_layout", "xlsx", "redcap", "sql")
TIERS = ("small", "medium", "large")
SITE_ID_PATTERN = re.compile(r"^[a-z0-9_]{2,32}$")


class SiteConfigError(ValueError):
    """A site file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SiteConfig:
    site_id: str
    name: str
    adapter: str
    tier: str = "medium"
    country: str | None = None
    expected_cadence_days: int = 31
    landing: str | None = None
    mapping: dict = field(default_factory=dict)
    redcap: dict = field(default_factory=dict)
    sql: dict = field(default_factory=dict)
    source_file: Path | None = None

    @property
    def landing_name(self) -> str:
        return self.landing or self.site_id


def load_site(path: Path) -> SiteConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SiteConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax and run again.") from exc
    if not isinstance(data, dict):
        raise SiteConfigError(f"{path}: expected a mapping of settings at the top level")
    known = {f for f in SiteConfig.__dataclass_fields__ if f != "source_file"}
    unknown = set(data) - known
    if unknown:
        raise SiteConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    for key in ("site_id", "name", "adapter"):
        if not data.get(key):
            raise SiteConfigError(f"{path}: `{key}` is required")
    site_id = str(data["site_id"])
    if not SITE_ID_PATTERN.match(site_id):
        raise SiteConfigError(
            f"{path}: site_id {site_id!r} must be 2-32 characters of a-z, 0-9 and _ (it is used in paths and SQL)"
        )
    if path.stem != site_id:
        raise SiteConfigError(f"{path}: site_id {site_id!r} must match the file name ({path.stem}.yml)")
    if data["adapter"] not in ADAPTERS:
        raise SiteConfigError(f"{path}: adapter {data['adapter']!r} is not one of {', '.join(ADAPTERS)}")
    if data.get("tier", "medium") not in TIERS:
        raise SiteConfigError(f"{path}: tier {data.get('tier')!r} is not one of {', '.join(TIERS)}")
    landing = data.get("landing")
    if landing is not None and not SITE_ID_PATTERN.match(str(landing)):
        raise SiteConfigError(f"{path}: landing {landing!r} must be a plain folder name (a-z, 0-9, _)")
    return SiteConfig(**data, source_file=path)


def load_sites(sites_dir: Path) -> list[SiteConfig]:
    sites_dir = Path(sites_dir)
    if not sites_dir.is_dir():
        raise SiteConfigError(f"No sites folder at {sites_dir}; set POEM_SITES_DIR or create it")
    sites = [load_site(p) for p in sorted(sites_dir.glob("*.yml"))]
    seen: set[str] = set()
    for s in sites:
        if s.site_id in seen:
            raise SiteConfigError(f"site_id {s.site_id!r} is configured twice in {sites_dir}")
        seen.add(s.site_id)
    return sites
