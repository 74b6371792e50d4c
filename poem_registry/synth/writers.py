"""One writer per delivery kind: exchange-format frames -> the site's own layout.

Each writer applies the site YAML (docs/site-config.md) *inversely*: exchange
column -> site column, exchange code -> site label, ISO date -> site date format,
centimetres -> the site's unit, so the ingestion adapters (forward direction)
read the files back to the same exchange values. Every byte written is a
function of the inputs only (fixed zip timestamps, sorted rows, no clock).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from poem_registry.contract import load_contract
from poem_registry.synth.delivery import ENTITIES, KEYS, Extract
from poem_registry.synth.sites import SiteSpec

FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _quote(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=object)
    if len(v) == 0:
        return v
    joined = "\x1f".join(v.tolist())  # one C-level scan decides whether any value needs quoting
    if not any(ch in joined for ch in ',"\r\n'):
        return v
    out = v.copy()
    for i, x in enumerate(v):
        if any(ch in x for ch in ',"\r\n'):
            out[i] = '"' + x.replace('"', '""') + '"'
    return out


def csv_lines(df: pd.DataFrame) -> np.ndarray:
    """One CSV line (no terminator) per row; values are strings, RFC 4180 minimal quoting."""
    if df.empty:
        return np.array([], dtype=object)
    cols = [_quote(df[c].to_numpy()) for c in df.columns]
    return np.array([",".join(r) for r in zip(*cols, strict=True)], dtype=object)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """Exchange-format CSV: UTF-8, comma, header row, LF line ends, minimal quoting."""
    header = ",".join(_quote(np.array(list(df.columns), dtype=object)))
    return (header + "\n" + "".join(x + "\n" for x in csv_lines(df))).encode("utf-8")


def deterministic_zip(files: dict[str, bytes], when: tuple = FIXED_ZIP_TIME) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, files[name])
    return buf.getvalue()


def _zip_time(extracted_at: str) -> tuple:
    d = datetime.fromisoformat(extracted_at)
    return (d.year, d.month, d.day, d.hour, d.minute, d.second)


class Writer:
    kind = "base"

    def __init__(self, spec: SiteSpec, config: dict, out_dir: Path):
        self.spec = spec
        self.config = config
        self.root = out_dir / str(config.get("landing") or spec.site_id)
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, ext: Extract, frames: dict[str, pd.DataFrame]) -> dict:
        raise NotImplementedError

    def finish(self) -> dict:
        return {}


class CanonicalWriter(Writer):
    kind = "canonical"

    def write(self, ext, view):
        contract = load_contract()
        files: dict[str, bytes] = {}
        rows: dict[str, int] = {}
        for ent in ENTITIES:
            if view.count(ent) == 0 and ent != "procedures":
                continue
            name = contract.entities[ent].file
            files[name] = view.csv(ent)
            rows[ent] = view.count(ent)
        if self.spec.manifest:
            manifest = {
                "site_id": self.spec.site_id,
                "extract_id": ext.extract_id,
                "format_version": contract.format_version,
                "extracted_at": ext.extracted_at,
                "files": {
                    name: {
                        "rows": rows[contract.entity_for_file(name).name],
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                    for name, data in sorted(files.items())
                },
            }
            files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("utf-8")
        if self.spec.zipped:
            path = self.root / f"{ext.extract_id}.zip"
            path.write_bytes(deterministic_zip(files, _zip_time(ext.extracted_at)))
        else:
            path = self.root / ext.extract_id
            path.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (path / name).write_bytes(data)
        return {"path": str(path), "rows": rows, "files": sorted(files)}


# --------------------------------------------------------------------------------------
# value conversion helpers (exchange strings -> site representation)
# --------------------------------------------------------------------------------------


def _inverse_codes(codes: dict) -> dict[str, list[str]]:
    inv: dict[str, list[str]] = {}
    for label, code in codes.items():
        inv.setdefault(str(code), []).append(str(label))
    return inv


def _site_labels(values: pd.Series, inv: dict[str, list[str]]) -> np.ndarray:
    v = values.to_numpy(dtype=object)
    out = v.copy()
    for code, labels in inv.items():
        idx = np.nonzero(v == code)[0]
        if len(idx):
            out[idx] = np.array(labels, dtype=object)[np.arange(len(idx)) % len(labels)]
    return out


def _fmt_number(x: float) -> str:
    s = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


class CsvLayoutWriter(Writer):
    """A site with its own CSV layout (``mapping`` in the site YAML)."""

    kind = "csv_layout"
    REFERRERS = ("Hôpital Sainte-Thérèse", "Clinique Saint-Jérôme", "", "", "Northbay Family Practice", "")
    COMMENTS = ("", "", "Tunnel difficult at the GEJ;\nfibrosis after prior dilation", "", "Uneventful", "")

    def write(self, ext, view):
        m = self.config["mapping"]
        contract = load_contract()
        folder = self.root / ext.extract_id
        folder.mkdir(parents=True, exist_ok=True)
        cache = self.__dict__.setdefault("_cache", {})
        rows, names = {}, []
        for ent, pattern in m["files"].items():
            if view.count(ent) == 0 and ent != "procedures":
                continue
            if view.replaced(ent):
                out = self._to_site(view.frame(ent), ent, contract)
            else:  # convert every row of the site once, then pick this extract's rows
                if ent not in cache:
                    cache[ent] = self._to_site(view.full(ent), ent, contract)
                out = cache[ent].iloc[view.indices(ent)]
            name = pattern.replace("*", ext.extract_id)
            text = io.StringIO(newline="")
            w = csv.writer(
                text, delimiter=m.get("delimiter", ","), lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL
            )
            w.writerow(list(out.columns))
            w.writerows(out.itertuples(index=False, name=None))
            (folder / name).write_bytes(text.getvalue().encode(m.get("encoding", "utf-8")))
            rows[ent] = len(out)
            names.append(name)
        return {"path": str(folder), "rows": rows, "files": sorted(names)}

    def _to_site(self, df: pd.DataFrame, ent: str, contract) -> pd.DataFrame:
        m = self.config["mapping"]
        e = contract.entities[ent]
        cols = m["columns"][ent]
        inv_codes = {c: _inverse_codes(v) for c, v in (m.get("codes") or {}).items()}
        units = (m.get("units") or {}).get(ent, {})
        t_true, t_false = m["booleans"]["true"][0], m["booleans"]["false"][0]
        dec = m.get("decimal", ".")
        out = {}
        for site_col, ex_col in cols.items():
            typ = e.column(ex_col).type
            s = df[ex_col].astype(object)
            empty = s == ""
            if typ == "date":
                v = pd.to_datetime(s.where(~empty), format="%Y-%m-%d").dt.strftime(m["date_format"])
            elif typ == "timestamp":
                v = pd.to_datetime(s.where(~empty), format="%Y-%m-%dT%H:%M:%S").dt.strftime(
                    m["timestamp_format"]
                )
            elif typ == "bool":
                v = s.map({"true": t_true, "false": t_false, "": ""})
            elif typ == "decimal":
                f = float(units.get(ex_col, 1.0))
                num = pd.to_numeric(s.where(~empty))
                v = (num / f).map(lambda x: "" if pd.isna(x) else _fmt_number(x))
                if dec != ".":
                    v = v.str.replace(".", dec, regex=False)
            elif typ == "code" and ex_col in inv_codes:
                v = pd.Series(_site_labels(s, inv_codes[ex_col]), index=s.index)
            else:
                v = s
            out[site_col] = v.where(~empty, "").astype(object).to_numpy()
        res = pd.DataFrame(out)
        if ent == "procedures":
            k = np.arange(len(res))
            res["Referred From"] = np.array(self.REFERRERS, dtype=object)[k % len(self.REFERRERS)]
            res["Comments"] = np.array(self.COMMENTS, dtype=object)[(k // 3) % len(self.COMMENTS)]
        extra = [c for c in df.columns if c not in set(cols.values())]
        for c in extra:  # planted/unknown columns travel as they are
            if c not in load_contract().entities[ent].column_names:
                res[c] = df[c].to_numpy()
        return res


class XlsxWriter(Writer):
    """One workbook per extract, one sheet per entity (``mapping.sheets``)."""

    kind = "xlsx"

    def write(self, ext, view):
        from openpyxl import Workbook

        m = self.config["mapping"]
        contract = load_contract()
        folder = self.root / ext.extract_id
        folder.mkdir(parents=True, exist_ok=True)
        name = m["workbook"].replace("*", ext.extract_id)
        wb = Workbook(write_only=True)
        fixed = datetime.fromisoformat(ext.extracted_at)
        wb.properties.created = fixed
        wb.properties.modified = fixed
        wb.properties.creator = "POEM registry demo export"
        rows = {}
        cache = self.__dict__.setdefault("_cache", {})
        for ent, sheet in m["sheets"].items():
            if view.count(ent) == 0 and ent != "procedures":
                continue  # a site leaves an empty sheet out of its workbook
            ws = wb.create_sheet(sheet)
            cols = m["columns"][ent]
            ws.append(list(cols))
            if view.replaced(ent):
                values = self._cells(view.frame(ent), ent, cols, m, contract)
            else:  # convert every row of the site once, then pick this extract's rows
                if ent not in cache:
                    cache[ent] = self._cells(view.full(ent), ent, cols, m, contract)
                values = [cache[ent][i] for i in view.indices(ent)]
            for row in values:
                ws.append(row)
            rows[ent] = len(values)
        buf = io.BytesIO()
        wb.save(buf)
        (folder / name).write_bytes(normalise_xlsx(buf.getvalue(), ext.extracted_at))
        return {"path": str(folder / name), "rows": rows, "files": [name]}

    def _cells(self, df, ent, cols, m, contract) -> list[list]:
        converters = [self._converter(contract.entities[ent].column(ex).type, ex, m) for ex in cols.values()]
        data = [df[ex].to_numpy(dtype=object) for ex in cols.values()]
        return [[conv(col[i], i) for conv, col in zip(converters, data, strict=True)] for i in range(len(df))]

    @staticmethod
    def _converter(typ: str, ex_col: str, m: dict):
        t_true, t_false = m["booleans"]["true"][0], m["booleans"]["false"][0]
        inv = _inverse_codes((m.get("codes") or {}).get(ex_col, {}))

        def conv(v, i):
            if v == "" or v is None:
                return None
            if typ == "date":
                return date.fromisoformat(v)
            if typ == "timestamp":
                return datetime.fromisoformat(v)
            if typ == "int":
                return int(v)
            if typ == "decimal":
                return float(v)
            if typ == "bool":
                return t_true if v == "true" else t_false
            if typ == "code" and v in inv:
                labels = inv[v]
                return labels[i % len(labels)]
            return str(v)

        return conv


def normalise_xlsx(data: bytes, extracted_at: str) -> bytes:
    """Rewrite an openpyxl workbook with fixed zip timestamps and document dates."""
    stamp = datetime.fromisoformat(extracted_at).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        order = zf.namelist()
        for name in order:
            content = zf.read(name)
            if name == "docProps/core.xml":
                import re

                content = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                    rb"\g<1>" + stamp.encode() + rb"\g<3>",
                    content,
                )
            files[name] = content
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for name in order:  # keep [Content_Types].xml first, as Excel expects
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            out.writestr(info, files[name])
    return buf.getvalue()


class SqlWriter(Writer):
    """The site's own database: a SQLite file updated (upserted) once per extract."""

    kind = "sql"
    SQL_TYPES: ClassVar[dict[str, str]] = {"int": "INTEGER", "bool": "INTEGER", "decimal": "REAL"}

    def __init__(self, spec, config, out_dir):
        super().__init__(spec, config, out_dir)
        self.path = self.root / "source.sqlite"
        if self.path.exists():
            self.path.unlink()
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=DELETE")
        contract = load_contract()
        for ent, t in self.config["sql"]["tables"].items():
            e = contract.entities[ent]
            defs = []
            for site_col, ex_col in t["columns"].items():
                typ = self.SQL_TYPES.get(e.column(ex_col).type, "TEXT")
                defs.append(f'"{site_col}" {typ}')
            self.conn.execute(f'CREATE TABLE "{t["table"]}" ({", ".join(defs)})')
            # the table key: a unique index so a re-sent key replaces the row (duplicates in
            # a pull would otherwise be impossible to plant)
            key_col = next(sc for sc, ec in t["columns"].items() if ec == KEYS[ent])
            self.conn.execute(f'CREATE UNIQUE INDEX "ux_{t["table"]}" ON "{t["table"]}" ("{key_col}")')
            self.conn.execute(
                f'CREATE INDEX "ix_{t["table"]}_updated" ON "{t["table"]}" ("record_updated_at")'
            )
        self.conn.commit()

    def write(self, ext, view):
        frames = view.frames
        contract = load_contract()
        rows = {}
        for ent, t in self.config["sql"]["tables"].items():
            df = frames.get(ent)
            if df is None or df.empty:
                continue
            e = contract.entities[ent]
            cols = list(t["columns"].items())
            values = []
            data = [df[ex].to_numpy(dtype=object) for _, ex in cols]
            types = [e.column(ex).type for _, ex in cols]
            for i in range(len(df)):
                values.append(tuple(_sql_value(col[i], typ) for col, typ in zip(data, types, strict=True)))
            names = ", ".join(f'"{c}"' for c, _ in cols)
            marks = ", ".join("?" for _ in cols)
            self.conn.executemany(f'INSERT OR REPLACE INTO "{t["table"]}" ({names}) VALUES ({marks})', values)
            rows[ent] = len(df)
        self.conn.commit()
        totals = {
            ent: self.conn.execute(f'SELECT count(*) FROM "{t["table"]}"').fetchone()[0]
            for ent, t in self.config["sql"]["tables"].items()
        }
        return {"path": str(self.path), "rows": rows, "table_rows": totals, "files": [self.path.name]}

    def finish(self):
        self.conn.execute("VACUUM")
        self.conn.close()
        return {"path": str(self.path)}


def _sql_value(v, typ):
    if v == "" or v is None:
        return None
    if typ in ("int",):
        return int(v)
    if typ == "bool":
        return 1 if v == "true" else 0
    if typ == "decimal":
        return float(v)
    if typ == "timestamp":
        return v.replace("T", " ")
    return v


class RedcapWriter(Writer):
    """Delegates to ``poem_registry.adapters.redcap_writer`` (written by the adapters engineer).

    Falls back to canonical CSV (with manifest) when that module is not importable.
    """

    kind = "redcap"

    def __init__(self, spec, config, out_dir):
        super().__init__(spec, config, out_dir)
        try:
            from poem_registry.adapters import redcap_writer
        except ImportError:
            redcap_writer = None
        self.module = redcap_writer
        self.fallback = None
        if redcap_writer is None or not hasattr(redcap_writer, "write_redcap_export"):
            self.kind = "canonical_fallback"
            from dataclasses import replace

            self.fallback = CanonicalWriter(replace(spec, manifest=True, zipped=False), config, out_dir)

    def write(self, ext, view):
        if self.fallback is not None:
            return self.fallback.write(ext, view)
        frames = view.frames
        mapping = self.config.get("redcap") or self.module.DEMO_REDCAP_MAPPING
        folder = self.root / ext.extract_id
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromisoformat(ext.extracted_at).strftime("%Y-%m-%d_%H%M")
        tables = {k: v for k, v in frames.items() if v is not None and k != "withdrawals"}
        written = self.module.write_redcap_export(
            tables, mapping, folder, project="POEMCumbre", export_date=stamp
        )
        written = [p for p in vars(written).values()] if written is not None else []
        rows = {k: len(v) for k, v in frames.items() if v is not None and len(v)}
        files = (
            sorted(str(Path(p).name) for p in written)
            if written
            else sorted(p.name for p in folder.iterdir())
        )
        return {"path": str(folder), "rows": rows, "files": files}


WRITERS = {
    "canonical": CanonicalWriter,
    "csv_layout": CsvLayoutWriter,
    "xlsx": XlsxWriter,
    "sql": SqlWriter,
    "redcap": RedcapWriter,
}
