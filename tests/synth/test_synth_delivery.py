"""The delivered files: determinism, formats, manifests, defects, planted identifiers."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from poem_registry.contract import load_code_sets, load_contract
from poem_registry.synth import DELIBERATE_DEFECTS, generate, site_specs, site_yaml

REPO_SITES = Path(__file__).resolve().parents[2] / "sites"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_shape(demo):
    root, s = demo
    by_id = {x["site_id"]: x for x in s.sites}
    assert set(by_id) == {"riverside", "northbay", "lakeshore", "summit", "valley", "harbor"}
    assert {x["adapter"] for x in s.sites} == {"canonical", "csv_layout", "xlsx", "redcap", "sql"}
    assert 1500 <= s.total_procedures <= 2500
    assert by_id["riverside"]["tier"] == "large" and by_id["harbor"]["first_procedure"] > "2025-01-01"
    assert len(s.shared_operators) == 2
    assert json.loads((root / "truth" / "summary.json").read_text())["seed"] == 42
    assert not (root / "landing" / "summary.json").exists()
    # the REDCap site delivers Data Export Tool files (records + data dictionary) per extract
    summit = sorted((root / "landing" / "summit").iterdir())
    assert summit and all(
        list(p.glob("*_DATA_*.csv")) and list(p.glob("*DataDictionary*.csv")) for p in summit
    )


def test_deterministic_same_seed(demo, tmp_path):
    root, first = demo
    again = generate(tmp_path / "landing", seed=42, sites_dir=root / "sites")
    a, b = _files(root / "landing"), _files(tmp_path / "landing")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    ta, tb = _files(root / "truth"), _files(tmp_path / "truth")
    assert [k for k in ta if k not in ("summary.json", "identifiers.csv") and ta[k] != tb[k]] == []
    assert first.defects == again.defects and first.planted_identifiers == again.planted_identifiers


def test_different_seed_differs(demo, tmp_path):
    root, _ = demo
    other = generate(tmp_path / "landing", seed=43, sites_dir=root / "sites")
    a = (root / "truth" / "riverside" / "procedures.csv").read_bytes()
    b = (tmp_path / "truth" / "riverside" / "procedures.csv").read_bytes()
    assert a != b and other.total_procedures > 0


def test_repo_site_yamls_match_definitions():
    for spec in site_specs(6):
        on_disk = yaml.safe_load((REPO_SITES / f"{spec.site_id}.yml").read_text(encoding="utf-8"))
        assert on_disk == yaml.safe_load(yaml.safe_dump(site_yaml(spec))), spec.site_id


def _validate(df: pd.DataFrame, entity: str) -> list[tuple[str, str, str]]:
    """A small independent check of exchange rules: (rule, key, column) per problem."""
    ent = load_contract().entities[entity]
    codes = load_code_sets()
    key = ent.key[0]
    problems = []
    for col in ent.columns:
        if col.name not in df:
            continue
        v = df[col.name]
        given = v != ""
        if col.required is True:
            problems += [("required", k, col.name) for k in df.loc[~given, key]]
        if col.code_set:
            bad = given & ~v.isin(codes[col.code_set])
            problems += [(f"code_set:{col.name}", k, col.name) for k in df.loc[bad, key]]
        if col.type in ("int", "decimal") and (col.min is not None or col.max is not None):
            num = pd.to_numeric(v.where(given))
            bad = given & (
                ((num < float(col.min)) if col.min is not None else False)
                | ((num > float(col.max)) if col.max is not None else False)
            )
            problems += [(f"range:{col.name}", k, col.name) for k in df.loc[bad, key]]
    dup = df[key].duplicated(keep=False)
    problems += [("duplicate_key", k, key) for k in df.loc[dup, key].unique()]
    if entity == "procedures":
        bad = (df["technical_success"] == "false") & (df["aborted_reason"] == "")
        problems += [("technical_failure_has_reason", k, "aborted_reason") for k in df.loc[bad, key]]
        bad = (df["needle_decompression"] == "true") & (df["capnoperitoneum"] != "true")
        problems += [("needle_decompression_implies_capnoperitoneum", k, "") for k in df.loc[bad, key]]
        bad = (df["discharge_date"] != "") & (df["discharge_date"] < df["procedure_date"])
        problems += [("discharge_not_before_procedure", k, "") for k in df.loc[bad, key]]
    if entity == "followups":
        items = df[
            ["eckardt_dysphagia", "eckardt_regurgitation", "eckardt_chest_pain", "eckardt_weight_loss"]
        ]
        full = (items != "").all(axis=1) & (df["eckardt_total"] != "")
        s = items[full].astype(int).sum(axis=1)
        bad = s != df.loc[full, "eckardt_total"].astype(int)
        problems += [("eckardt_total_equals_items", k, "eckardt_total") for k in df.loc[full][bad][key]]
    return problems


def test_truth_is_clean(demo):
    root, s = demo
    contract = load_contract()
    for site in s.sites:
        sd = root / "truth" / site["site_id"]
        frames = {
            e: pd.read_csv(sd / contract.entities[e].file, dtype=str, keep_default_na=False)
            for e in contract.entities
        }
        for e, df in frames.items():
            assert _validate(df, e) == [], (site["site_id"], e)
        p = frames["procedures"].set_index("procedure_id")
        fu = frames["followups"]
        assert (
            fu["assessment_date"].to_numpy() > p.loc[fu["procedure_id"], "procedure_date"].to_numpy()
        ).all()
        for e in ("adverse_events", "reinterventions", "followups"):
            assert frames[e]["procedure_id"].isin(p.index).all()


def _canonical_frames(site_root: Path) -> dict[str, dict[str, pd.DataFrame]]:
    out = {}
    for p in sorted(site_root.iterdir()):
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as zf:
                members = {n: zf.read(n) for n in zf.namelist()}
            eid = p.stem
        else:
            members = {f.name: f.read_bytes() for f in p.iterdir()}
            eid = p.name
        out[eid] = {
            n: pd.read_csv(io.BytesIO(b), dtype=str, keep_default_na=False)
            for n, b in members.items()
            if n.endswith(".csv")
        }
    return out


def test_canonical_sites_only_documented_defects_and_manifests(demo):
    root, s = demo
    documented = {
        (d["extract_id"], d["rule"], d["row_key"]) for d in s.defects if d["adapter"] == "canonical"
    }
    found = set()
    for sid in ("riverside", "harbor"):
        site_root = root / "landing" / sid
        for eid, files in _canonical_frames(site_root).items():
            for name, df in files.items():
                entity = load_contract().entity_for_file(name).name
                for rule, key, _ in _validate(df, entity):
                    found.add((eid, rule, key))
    found |= {
        (d["extract_id"], d["rule"], d["row_key"])
        for d in s.defects
        if d["rule"] == "direct_identifier_column"
    }
    assert found == documented
    # manifests: riverside has them (rows, sha256), harbor (zip) has none
    for folder in sorted((root / "landing" / "riverside").iterdir()):
        m = json.loads((folder / "manifest.json").read_text())
        assert m["site_id"] == "riverside" and m["extract_id"] == folder.name and m["format_version"] == 1
        for name, info in m["files"].items():
            data = (folder / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == info["sha256"]
            assert len(pd.read_csv(io.BytesIO(data), dtype=str)) == info["rows"]
    zips = sorted((root / "landing" / "harbor").glob("*.zip"))
    assert zips and all("manifest.json" not in zipfile.ZipFile(z).namelist() for z in zips)


def test_every_defect_planted_where_documented(demo):
    root, s = demo
    assert {d["defect_id"] for d in s.defects} == {d.defect_id for d in DELIBERATE_DEFECTS}
    by_id = {d["defect_id"]: d for d in s.defects}
    land = root / "landing"
    # csv_layout: follow-up dated before its procedure (MM/DD/YYYY in the site's file)
    d = by_id["followup_before_procedure"]
    f = land / "northbay" / d["extract_id"] / f"poem_followup_{d['extract_id']}.csv"
    rows = list(csv.DictReader(io.StringIO(f.read_bytes().decode("cp1252"), newline=""), delimiter=";"))
    row = next(r for r in rows if r["Visit ID"] == d["row_key"])
    y, m, dd = d["planted_value"].split("-")
    assert row["Visit Date"] == f"{m}/{dd}/{y}"
    # xlsx: duplicate procedure id in one sheet
    import openpyxl

    d = by_id["duplicate_procedure_id"]
    wb = openpyxl.load_workbook(next((land / "lakeshore" / d["extract_id"]).glob("*.xlsx")), read_only=True)
    ids = [r[0] for r in wb["Procedures"].iter_rows(min_row=2, values_only=True)]
    assert ids.count(d["row_key"]) == 2 and len(ids) - len(set(ids)) == 1
    # sql: Eckardt total disagrees with the items
    d = by_id["eckardt_total_mismatch"]
    con = sqlite3.connect(land / "valley" / "source.sqlite")
    r = con.execute(
        "select dysphagia+regurgitation+chest_pain+weight_loss, eckardt_total from poem_followup where visit_id=?",
        (d["row_key"],),
    ).fetchone()
    assert str(r[1]) == d["planted_value"] and r[0] != r[1]
    bad = con.execute(
        "select count(*) from poem_followup where dysphagia+regurgitation+chest_pain+weight_loss != eckardt_total"
    ).fetchone()[0]
    assert bad == 1
    # truth keeps the clean value
    truth = pd.read_csv(root / "truth" / "valley" / "followups.csv", dtype=str).set_index("assessment_id")
    assert truth.loc[d["row_key"], "eckardt_total"] == d["original_value"]


def test_planted_identifiers_only_in_one_file(demo):
    root, s = demo
    pi = s.planted_identifiers
    assert pi["site_id"] == "riverside" and set(pi["columns"]) == {"patient_name", "phone", "email"}
    needles = [v.encode() for vals in pi["values"].values() for v in vals]
    assert len(needles) > 10
    hits = set()
    for p in sorted((root / "landing").rglob("*")):
        if not p.is_file():
            continue
        blobs = [p.read_bytes()]
        if p.suffix in (".zip", ".xlsx"):
            with zipfile.ZipFile(p) as zf:
                blobs += [zf.read(n) for n in zf.namelist()]
        if any(n in b for b in blobs for n in needles):
            hits.add(str(p.relative_to(root / "landing")))
    assert hits == {f"riverside/{pi['extract_id']}/procedures.csv"}
    for p in (root / "truth").rglob("*.csv"):
        data = p.read_bytes()
        assert not any(n in data for n in needles), p
    header = (
        (root / "landing" / "riverside" / pi["extract_id"] / "procedures.csv").read_text().splitlines()[0]
    )
    assert header.endswith("patient_name,phone,email")
    assert s.clear_identifiers["operator_ids"] and Path(s.clear_identifiers["file"]).exists()


def test_csv_layout_file_format(demo):
    root, _ = demo
    files = sorted((root / "landing" / "northbay").rglob("poem_cases_*.csv"))
    assert len(files) >= 10
    data = files[-1].read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text = data.decode("cp1252")
    assert "Hôpital" in text and text.endswith("\r\n")
    assert text.count("\n") - text.count("\r\n") >= 1  # bare LF only inside a quoted multi-line field
    lines = text.split("\r\n")
    assert lines[0].startswith("Case No;MRN;Operator NPI;Procedure Date")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    header, body = rows[0], rows[1:-1] if rows[-1] == [] else rows[1:]
    assert any("\n" in c for r in body for c in r)  # a quoted field with a line break
    col = {h: i for i, h in enumerate(header)}
    assert all(len(r[col["Procedure Date"]].split("/")) == 3 for r in body)
    assert {r[col["Technical Success"]] for r in body} <= {"Y", "N"}
    assert {"Type III", "spastic achalasia"} & {r[col["Diagnosis"]] for r in body}
    # tunnel length in mm, decimals with a comma
    mm = [float(r[col["Tunnel Length (mm)"]].replace(",", ".")) for r in body if r[col["Tunnel Length (mm)"]]]
    assert min(mm) > 30
    fu = (
        (files[-1].parent / files[-1].name.replace("poem_cases_", "poem_followup_"))
        .read_bytes()
        .decode("cp1252")
    )
    assert "Téléphone" in fu


def test_xlsx_and_sql_sites(demo):
    import openpyxl

    root, s = demo
    books = sorted((root / "landing" / "lakeshore").rglob("*.xlsx"))
    assert len(books) == len(s.extracts["lakeshore"])
    wb = openpyxl.load_workbook(books[-1], read_only=True)
    assert {"Procedures", "Follow-up"} <= set(wb.sheetnames)
    # SQLite: the site's tables, growing per extract
    con = sqlite3.connect(root / "landing" / "valley" / "source.sqlite")
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert tables == {"poem_procedure", "poem_followup", "poem_complication", "poem_retreatment"}
    sizes = [e["table_rows"]["procedures"] for e in s.extracts["valley"]]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    counts = [
        con.execute(
            "select count(*) from poem_procedure where record_updated_at <= ?",
            (e["extracted_at"].replace("T", " "),),
        ).fetchone()[0]
        for e in s.extracts["valley"]
    ]
    assert counts == sorted(counts) and counts[-1] == sizes[-1]
    url = s.sql_urls["valley"]
    assert url["env"] == "POEM_SITE_VALLEY_DB_URL" and url["url"].startswith("sqlite:///")


def test_delivery_history(demo):
    root, s = demo
    # riverside: incremental; some follow-ups arrive before their procedure's extract
    ext_order = {e["extract_id"]: i for i, e in enumerate(s.extracts["riverside"])}
    seen_proc, early = {}, 0
    frames = _canonical_frames(root / "landing" / "riverside")
    for eid in sorted(frames, key=ext_order.get):
        for pid in frames[eid].get("procedures.csv", pd.DataFrame(columns=["procedure_id"]))["procedure_id"]:
            seen_proc.setdefault(pid, ext_order[eid])
    for eid in frames:
        fu = frames[eid].get("followups.csv")
        if fu is not None:
            early += sum(seen_proc.get(p, -1) > ext_order[eid] for p in fu["procedure_id"])
    assert early > 0
    # corrections: a key re-sent later with a later record_updated_at and a changed value
    allp = pd.concat(
        [f["procedures.csv"].assign(_e=ext_order[e]) for e, f in frames.items() if "procedures.csv" in f]
    )
    dup = allp[allp.duplicated("procedure_id", keep=False)].sort_values(["procedure_id", "_e"])
    assert len(dup) > 0
    for _, g in dup.groupby("procedure_id"):
        assert g["record_updated_at"].is_monotonic_increasing and g["procedure_minutes"].nunique() >= 1
    assert (dup.groupby("procedure_id")["procedure_minutes"].nunique() > 1).any()
    # withdrawals arrive in a file of their own
    assert s.withdrawn_patients["riverside"]
    # cumulative site: later extracts contain earlier ones
    nb = s.counts["northbay"]
    sizes = [nb[e]["procedures"] for e in nb]
    assert sizes == sorted(sizes)
