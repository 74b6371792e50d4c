"""Orchestration: clinical model -> delivery history -> writers, plus the summary."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from poem_registry.contract import load_contract
from poem_registry.synth.clinical import expected_procedures, simulate
from poem_registry.synth.delivery import (
    DELIBERATE_DEFECTS,
    ENTITIES,
    KEYS,
    build_history,
    defect_suitable,
    plant_defect,
)
from poem_registry.synth.formatting import _ints, to_exchange_strings
from poem_registry.synth.sites import DEMO_SITES, SiteSpec, site_specs, site_yaml, sql_url_setting
from poem_registry.synth.writers import WRITERS, csv_bytes, csv_lines

REPO_SITES_DIR = Path(__file__).resolve().parents[2] / "sites"
DEFAULT_END_DATE = date(2026, 9, 30)
_INTERNAL_TRUTH = {
    "procedures": [
        "_operator_case_number",
        "_learning",
        "_sigmoid",
        "_ae_probability",
        "_primary_failure",
        "_failure_day",
        "_death_date",
        "_baseline_eckardt_total",
        "_late_entry",
    ],
    "followups": ["_window", "_days_after", "_failed"],
    "adverse_events": ["_grade"],
}


@dataclass
class GenerationSummary:
    """What a run produced (JSON-serialisable via :meth:`to_dict`)."""

    seed: int
    years: int
    scale: float
    end_date: str
    out_dir: str
    truth_dir: str
    sites_dir: str
    total_procedures: int
    sites: list[dict] = field(default_factory=list)  # id, name, adapter, tier, landing, volumes, operators
    extracts: dict[str, list[dict]] = field(
        default_factory=dict
    )  # site -> [{extract_id, extracted_at, path, rows}]
    counts: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=dict
    )  # site -> extract -> entity -> rows
    truth_counts: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # site -> entity -> rows (final state)
    defects: list[dict] = field(default_factory=list)  # resolved DELIBERATE_DEFECTS
    planted_identifiers: dict = field(default_factory=dict)  # for leak scans
    clear_identifiers: dict = field(default_factory=dict)  # operator ids, identifiers file
    sql_urls: dict[str, dict[str, str]] = field(default_factory=dict)  # site -> {env, url}
    shared_operators: list[str] = field(default_factory=list)
    withdrawn_patients: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)


def generate(
    out_dir: Path,
    *,
    sites: int = 6,
    years: int = 4,
    seed: int = 42,
    end_date: date = DEFAULT_END_DATE,
    scale: float = 1.0,
    target_procedures: int | None = None,
    sites_dir: Path | None = None,
    truth_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Generate the demo (or a benchmark-sized) multi-site delivery history.

    ``out_dir`` is the landing folder: ``<out_dir>/<site landing>/<extract>...``.
    The ground truth (clean exchange-format CSVs of every site, internal truth
    columns, identifiers, ``summary.json``) goes to ``truth_dir`` (default:
    ``<out_dir>/../truth``), beside and never inside the landing folder. Site YAMLs
    are read from ``sites_dir`` (default: the repository's ``sites/``); a site
    whose YAML is missing there gets one written from its built-in definition.
    ``target_procedures`` (if given) overrides ``scale``.
    """
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir).resolve()
    truth_dir = Path(truth_dir).resolve() if truth_dir else out_dir.parent / "truth"
    if truth_dir == out_dir or out_dir in truth_dir.parents:
        raise ValueError("truth_dir must not be inside the landing folder")
    sites_dir = Path(sites_dir).resolve() if sites_dir else REPO_SITES_DIR
    specs = site_specs(sites)
    if target_procedures is not None:
        scale = float(target_procedures) / expected_procedures(specs, years, 1.0)
    configs = _site_configs(specs, sites_dir)

    say(f"simulating {len(specs)} sites over {years} years (scale {scale:.3g})")
    data = simulate(specs, years=years, end_date=end_date, seed=seed, scale=scale)
    say(f"{len(data.procedures)} procedures; building delivery history")
    hist = build_history(data, specs, seed)

    for d in (out_dir, truth_dir):
        d.mkdir(parents=True, exist_ok=True)
    for s in specs:  # a fresh landing per site: nothing stale from an earlier run
        landing = out_dir / str(configs[s.site_id].get("landing") or s.site_id)
        if landing.exists():
            shutil.rmtree(landing)

    contract = load_contract()
    summary = GenerationSummary(
        seed=seed,
        years=years,
        scale=scale,
        end_date=end_date.isoformat(),
        out_dir=str(out_dir),
        truth_dir=str(truth_dir),
        sites_dir=str(sites_dir),
        total_procedures=0,
    )
    defect_rng = np.random.default_rng([seed, 5])
    defects_by_site: dict[str, list] = {}
    for d in DELIBERATE_DEFECTS:
        defects_by_site.setdefault(d.site_id, []).append(d)
    bounds = {ent: hist.versions[ent]["_si"].to_numpy() for ent in ENTITIES}
    identifiers = []

    for si, s in enumerate(specs):
        cfg = configs[s.site_id]
        if si < len(DEMO_SITES) or si % 25 == 0:
            say(f"writing {s.site_id} ({cfg['adapter']})")
        # this site's versions (sorted by site, so one slice), formatted once
        typed, strings, lines, ext_of, rec_of = {}, {}, {}, {}, {}
        for ent in ENTITIES:
            lo, hi = np.searchsorted(bounds[ent], [si, si + 1])
            typed[ent] = hist.versions[ent].iloc[lo:hi]
            strings[ent] = to_exchange_strings(typed[ent], ent).reset_index(drop=True)
            lines[ent] = csv_lines(strings[ent])
            ext_of[ent] = typed[ent]["_ext"].to_numpy()
            rec_of[ent] = typed[ent]["_rec"].to_numpy()
        final = {ent: typed[ent]["_final"].to_numpy(dtype=bool) for ent in ENTITIES}
        _write_site_truth(
            truth_dir / s.site_id, s, cfg, typed, strings, lines, final, hist, data, summary, contract
        )
        fp = strings["procedures"][final["procedures"]]
        identifiers.append(
            pd.DataFrame({"site_id": s.site_id, "kind": "patient_id", "value": fp["patient_id"]})
        )
        identifiers.append(
            pd.DataFrame({"site_id": s.site_id, "kind": "operator_id", "value": fp["operator_id"]})
        )
        proc_dates = dict(zip(fp["procedure_id"], fp["procedure_date"], strict=True))

        writer = WRITERS[cfg["adapter"]](s, cfg, out_dir)
        cumulative = s.delivery == "cumulative" and cfg["adapter"] != "sql"
        sched = hist.schedules[s.site_id]
        pending = list(defects_by_site.get(s.site_id, []))
        summary.extracts[s.site_id] = []
        summary.counts[s.site_id] = {}
        for ext in sched:
            sel = {}
            for ent in ENTITIES:
                e = ext_of[ent]
                if cumulative:  # latest version of every record sent so far
                    idx = np.nonzero(e <= ext.index)[0]
                    rec = rec_of[ent][idx]
                    sel[ent] = idx[np.r_[rec[1:] != rec[:-1], True]] if len(idx) else idx
                else:
                    sel[ent] = np.nonzero(e == ext.index)[0]
            view = ExtractView(strings, lines, sel)
            for d in list(pending):
                if ext.index < min(d.extract_index, len(sched) - 1):
                    continue
                rec = _plant(
                    d, view, strings, ext_of, ext, cumulative, cfg, proc_dates, defect_rng, summary, s
                )
                if rec is None:
                    continue
                rec["superseded_in_later_extracts"] = bool(cumulative and ext.index < len(sched) - 1)
                summary.defects.append(rec)
                pending.remove(d)
            info = writer.write(ext, view)
            summary.counts[s.site_id][ext.extract_id] = {
                ent: view.count(ent) for ent in ENTITIES if view.count(ent)
            }
            summary.extracts[s.site_id].append(
                {
                    "extract_id": ext.extract_id,
                    "extracted_at": ext.extracted_at,
                    "cutoff": str(np.datetime64(ext.cutoff_day, "D")),
                    **{k: v for k, v in info.items() if k != "rows"},
                }
            )
        fin = writer.finish()
        for d in pending:
            summary.notes.append(f"defect {d.defect_id} not planted at {s.site_id}: no suitable row")
        if cfg["adapter"] == "sql":
            env = (cfg.get("sql") or {}).get("url_setting") or sql_url_setting(s.site_id)
            summary.sql_urls[s.site_id] = {"env": env, "url": f"sqlite:///{fin['path']}"}
        if cfg["adapter"] == "redcap" and writer.kind != "redcap":
            summary.notes.append(
                f"{s.site_id}: redcap writer not available, extracts written as canonical CSV"
            )

    say("writing ground truth")
    summary.total_procedures = sum(c["procedures"] for c in summary.truth_counts.values())
    ops = data.operators
    ops.to_csv(truth_dir / "operators.csv", index=False, lineterminator="\n")
    summary.shared_operators = sorted(ops.loc[ops["sites"].str.contains(" "), "operator_id"])
    ident = pd.concat(identifiers, ignore_index=True).drop_duplicates()
    ident = ident.sort_values(["site_id", "kind", "value"]).reset_index(drop=True)
    (truth_dir / "identifiers.csv").write_bytes(csv_bytes(ident))
    summary.clear_identifiers = {
        "file": str(truth_dir / "identifiers.csv"),
        "operator_ids": sorted(ops["operator_id"]),
        "patient_id_count": int((ident["kind"] == "patient_id").sum()),
        "patient_ids_sample": sorted(ident.loc[ident["kind"] == "patient_id", "value"])[:50],
    }
    (truth_dir / "summary.json").write_text(summary.to_json() + "\n", encoding="utf-8")
    return summary


def _plant(d, view, strings, ext_of, ext, cumulative, cfg, proc_dates, rng, summary, spec) -> dict | None:
    """Plant defect ``d`` in this extract if it has a suitable row; the summary record or None."""
    key = KEYS[d.entity]
    df = view.frame(d.entity)
    if df.empty:
        return None
    keys = strings[d.entity][key].to_numpy()
    e = ext_of[d.entity]
    ok = defect_suitable(d, df)
    if cumulative:  # a record first sent in this extract (the next extract re-sends it clean)
        ok &= ~df[key].isin(set(keys[e < ext.index]))
    elif cfg["adapter"] == "sql":  # a row no later version replaces in the database
        ok &= ~df[key].isin(set(keys[e > ext.index]))
    if not ok.any():
        return None
    key_value = sorted(df.loc[ok, key])[0]
    planted, detail = plant_defect(d, df, key_value, procedure_dates=proc_dates, rng=rng)
    view.replace(d.entity, planted)
    rec = {
        **asdict(d),
        "extract_id": ext.extract_id,
        "extract_index": ext.index,
        "row_key": key_value,
        "key_column": key,
        "adapter": cfg["adapter"],
    }
    if d.defect_id == "direct_identifier_columns":
        summary.planted_identifiers = {
            "site_id": spec.site_id,
            "extract_id": ext.extract_id,
            "file": d.file,
            "columns": ["patient_name", "phone", "email"],
            "values": detail["planted"],
        }
        rec["planted"] = "see planted_identifiers"
    else:
        rec.update(original_value=detail.get("original"), planted_value=detail.get("planted"))
    return rec


class ExtractView:
    """The rows of one extract: exchange-string frames on demand, CSV bytes fast."""

    def __init__(self, strings, lines, sel):
        self._strings, self._lines, self._sel = strings, lines, sel
        self._frames: dict[str, pd.DataFrame] = {}
        self._replaced: set[str] = set()

    def count(self, ent: str) -> int:
        return len(self._frames[ent]) if ent in self._frames else len(self._sel[ent])

    def frame(self, ent: str) -> pd.DataFrame:
        if ent not in self._frames:
            self._frames[ent] = self._strings[ent].iloc[self._sel[ent]].reset_index(drop=True)
        return self._frames[ent]

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {ent: self.frame(ent) for ent in ENTITIES}

    def replace(self, ent: str, df: pd.DataFrame) -> None:
        self._frames[ent] = df
        self._replaced.add(ent)

    def full(self, ent: str) -> pd.DataFrame:
        """All rows of the site (every version); writers convert these once per site."""
        return self._strings[ent]

    def indices(self, ent: str) -> np.ndarray:
        return self._sel[ent]

    def replaced(self, ent: str) -> bool:
        """True when a defect was planted: the writer must convert ``frame(ent)`` itself."""
        return ent in self._replaced

    def csv(self, ent: str) -> bytes:
        if ent in self._frames or self._lines.get(ent) is None:
            return csv_bytes(self.frame(ent))
        header = ",".join(self._strings[ent].columns)
        body = "".join(x + "\n" for x in self._lines[ent][self._sel[ent]])
        return (header + "\n" + body).encode("utf-8")


def _site_configs(specs: list[SiteSpec], sites_dir: Path) -> dict[str, dict]:
    configs = {}
    sites_dir.mkdir(parents=True, exist_ok=True)
    for s in specs:
        path = sites_dir / f"{s.site_id}.yml"
        if path.exists():
            cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        else:
            cfg = site_yaml(s)
            write_site_yaml(path, cfg)
        configs[s.site_id] = cfg
    return configs


def write_site_yaml(path: Path, cfg: dict) -> None:
    header = "# Site configuration (docs/site-config.md). Generated by poem_registry.synth.sites.site_yaml.\n"
    path.write_text(
        header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8"
    )


def write_demo_site_yamls(sites_dir: Path = REPO_SITES_DIR, n_sites: int = 6) -> list[Path]:
    """(Re)write the demo sites' YAML files from their built-in definitions."""
    sites_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in site_specs(n_sites):
        p = sites_dir / f"{s.site_id}.yml"
        write_site_yaml(p, site_yaml(s))
        paths.append(p)
    return paths


def _write_site_truth(
    sd: Path, s: SiteSpec, cfg, typed, strings, lines, final, hist, data, summary, contract
) -> None:
    """The clean final state of one site (exchange format) plus internal truth columns."""
    sd.mkdir(parents=True, exist_ok=True)
    counts = {}
    for ent in ENTITIES:
        header = ",".join(strings[ent].columns)
        body = "".join(x + "\n" for x in lines[ent][final[ent]])
        (sd / contract.entities[ent].file).write_bytes((header + "\n" + body).encode("utf-8"))
        counts[ent] = int(final[ent].sum())
        internal = _INTERNAL_TRUTH.get(ent)
        if internal:
            t = typed[ent][final[ent]]
            out = pd.DataFrame({KEYS[ent]: t[KEYS[ent]].to_numpy()})
            for c in internal:
                col = t[c].to_numpy()
                if col.dtype == bool:
                    out[c] = np.where(col, "true", "false")
                elif col.dtype == np.int64:
                    out[c] = _ints(col)
                else:
                    out[c] = col.astype(str)
            (sd / f"_internal_{contract.entities[ent].file}").write_bytes(csv_bytes(out))
    summary.truth_counts[s.site_id] = counts
    p = strings["procedures"][final["procedures"]]
    op_sites = data.operators["sites"].str.split().to_list()
    summary.sites.append(
        {
            "site_id": s.site_id,
            "name": s.name,
            "adapter": cfg["adapter"],
            "tier": s.tier,
            "landing": cfg.get("landing") or s.site_id,
            "delivery": "cumulative database" if cfg["adapter"] == "sql" else s.delivery,
            "cadence": s.cadence,
            "annual_index_volume_scale1": s.annual_volume,
            "procedures": len(p),
            "index_poems": int(p["procedure_type"].isin(["poem", "poem_f", "redo_poem"]).sum()),
            "first_procedure": p["procedure_date"].min() if len(p) else None,
            "operators": sorted(
                o for o, st in zip(data.operators["operator_id"], op_sites, strict=True) if s.site_id in st
            ),
            "extracts": len(hist.schedules[s.site_id]),
        }
    )
    ids = sorted(strings["withdrawals"]["patient_id"][final["withdrawals"]])
    if ids:
        summary.withdrawn_patients[s.site_id] = ids
