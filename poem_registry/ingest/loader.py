"""Ingest: site deliveries -> validated, pseudonymized, append-only raw tables.

For each configured site, every delivery not yet in the ledger is read by the
site's adapter, checked against the exchange format (the GX delivery suites),
stripped of direct identifiers, pseudonymized and committed to ``raw`` in ONE
transaction together with its ledger rows and check results. Rows failing a
critical rule go to quarantine with a report; a delivery that cannot be read or
fails structurally is quarantined whole. One site's failure never stops another.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from poem_registry.adapters import get_adapter
from poem_registry.adapters.base import (
    SOURCE_FILE,
    SOURCE_ROW,
    AdapterOutput,
    Delivery,
    DeliveryError,
    Finding,
)
from poem_registry.adapters.files import delivery_fingerprint, sha256_bytes
from poem_registry.contract import load_contract
from poem_registry.faults import fault_point
from poem_registry.ingest.privacy import identifier_kind
from poem_registry.ingest.pseudonymize import Pseudonymizer, load_secret
from poem_registry.ingest.quarantine import QuarantineReport, write_quarantine
from poem_registry.settings import Settings
from poem_registry.sites import SiteConfig, load_sites
from poem_registry.warehouse import LINEAGE_COLUMNS, connect, ensure_schema

log = logging.getLogger(__name__)

#: Entities in load order: parents before children, withdrawals last.
ENTITY_ORDER = ("procedures", "followups", "adverse_events", "reinterventions", "withdrawals")


@dataclass
class BatchOutcome:
    site_id: str
    extract_id: str
    batch_id: str | None
    status: str  # committed | partially_quarantined | quarantined | duplicate | failed
    message: str = ""
    rows_loaded: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, int] = field(default_factory=dict)
    rows_withdrawn: int = 0
    quarantine_path: str | None = None

    @property
    def loaded(self) -> int:
        return sum(self.rows_loaded.values())

    @property
    def quarantined(self) -> int:
        return sum(self.rows_quarantined.values())


@dataclass
class IngestSummary:
    run_id: str
    outcomes: list[BatchOutcome] = field(default_factory=list)
    site_errors: dict[str, str] = field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: int = 0

    @property
    def rows_loaded(self) -> int:
        return sum(o.loaded for o in self.outcomes)

    @property
    def rows_quarantined(self) -> int:
        return sum(o.quarantined for o in self.outcomes)

    @property
    def committed_batches(self) -> int:
        return sum(o.status in ("committed", "partially_quarantined") for o in self.outcomes)

    def for_site(self, site_id: str) -> list[BatchOutcome]:
        return [o for o in self.outcomes if o.site_id == site_id]

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "committed_batches": self.committed_batches,
            "site_errors": self.site_errors,
            "checks_passed": self.checks_passed,
            "checks_failed": self.checks_failed,
            "batches": [
                {k: getattr(o, k) for k in ("site_id", "extract_id", "batch_id", "status", "message",
                                             "rows_loaded", "rows_quarantined", "rows_withdrawn",
                                             "quarantine_path")}
                for o in self.outcomes
            ],
        }


@dataclass
class _Pending:
    """A delivery read but not yet committed, with what validation decided about each entity."""

    delivery: Delivery
    output: AdapterOutput
    batch_id: str
    fingerprint: str
    started: datetime
    findings: list[Finding]
    file_hashes: dict[str, str]
    repeated: set[str] = field(default_factory=set)
    error: str | None = None
    typed: dict[str, pd.DataFrame] = field(default_factory=dict)
    rejected_mask: dict[str, np.ndarray] = field(default_factory=dict)
    delivered: dict[str, pd.DataFrame] = field(default_factory=dict)
    failures: list[pd.DataFrame] = field(default_factory=list)
    procedures: pd.DataFrame | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _batch_id(site_id: str, extract_id: str, fingerprint: str) -> str:
    return f"{site_id}__{extract_id}__{fingerprint[:10]}"


def _parse_extracted_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return pd.Timestamp(value).tz_localize(None).to_pydatetime() if pd.Timestamp(value).tzinfo else \
            pd.Timestamp(value).to_pydatetime()
    except (ValueError, TypeError):
        return None


def _guard_columns(output: AdapterOutput, site: SiteConfig) -> list[Finding]:
    """Drop columns the exchange format does not define; identifier-like ones become privacy findings."""
    contract = load_contract()
    findings: list[Finding] = []
    for entity_name, frame in list(output.frames.items()):
        known = set(contract.entities[entity_name].column_names) | {SOURCE_FILE, SOURCE_ROW}
        extra = [c for c in frame.columns if c not in known]
        file_name = frame[SOURCE_FILE].iloc[0] if len(frame) else contract.entities[entity_name].file
        for col in extra:
            kind = identifier_kind(col)
            if kind:
                findings.append(Finding(
                    rule="direct_identifier_column", category="privacy", severity="critical",
                    message=(f"site {site.site_id}: {file_name} has a column {col!r} that looks like a direct "
                             f"identifier ({kind.replace('_', ' ')}); it was dropped and never loaded. Remove it "
                             f"from the site's export."),
                    file_name=file_name, column_name=col))
            else:
                findings.append(Finding(
                    rule="unknown_column", category="conformance", severity="info",
                    message=(f"site {site.site_id}: {file_name} has a column {col!r} that is not in the exchange "
                             f"format; it was not loaded (map it in sites/{site.site_id}.yml if it is needed)."),
                    file_name=file_name, column_name=col))
        if extra:
            output.frames[entity_name] = frame.drop(columns=extra)
    return findings


def _identifier_safe(frame: pd.DataFrame, entity_name: str, site_id: str, pseudo: Pseudonymizer) -> pd.DataFrame:
    """The same rows with clear identifiers replaced by their pseudonyms (renamed to *_key)."""
    out = frame.copy()
    for col in load_contract().entities[entity_name].columns:
        if col.identifier and col.name in out.columns:
            out[col.raw_name] = pseudo.keys_for(col.identifier, out[col.name].astype("string"), site_id)
            out = out.drop(columns=[col.name])
    return out


class SiteIngestor:
    """One site's pending deliveries through a run: read_pending, then prepare/absorb per entity
    (driven by :func:`ingest` for a wave of sites), then commit."""

    def __init__(self, settings: Settings, site: SiteConfig, con: duckdb.DuckDBPyConnection,
                 pseudo: Pseudonymizer, run_id: str, today: date | None = None,
                 progress: Callable[[str], None] | None = None):
        self.settings = settings
        self.site = site
        self.con = con
        self.pseudo = pseudo
        self.run_id = run_id
        self.today = today or date.today()
        self.progress = progress or (lambda msg: None)
        self.adapter = get_adapter(site.adapter)
        self.checks: list = []
        self.outcomes: list[BatchOutcome] = []
        self.pending: list[_Pending] = []
        self._parts: list[tuple[int, pd.DataFrame]] = []
        self._combined: pd.DataFrame | None = None
        self._known = pd.DataFrame(columns=["procedure_id", "procedure_date"])
        self._in_transaction = False
        self._raw_buffer: dict[str, list[pd.DataFrame]] = {}
        self._withdrawn: set[str] = set()

    # -- ledger ---------------------------------------------------------------
    def _seen_fingerprint(self, fingerprint: str) -> tuple[str, str] | None:
        row = self.con.execute(
            "select batch_id, status from ingest.batches where site_id = ? and fingerprint = ? "
            "and status <> 'failed' order by batch_seq desc limit 1", [self.site.site_id, fingerprint]).fetchone()
        return (row[0], row[1]) if row else None

    def _seen_files(self) -> dict[str, str]:
        rows = self.con.execute("select sha256, batch_id from ingest.files where site_id = ?",
                                [self.site.site_id]).fetchall()
        return dict(rows)

    def _known_procedures(self) -> pd.DataFrame:
        return self.con.execute(
            "select procedure_id, arg_max(procedure_date, _batch_seq) as procedure_date "
            "from raw.procedures where _site_id = ? group by procedure_id", [self.site.site_id]).df()

    def _withdrawn_keys(self) -> set[str]:
        return {r[0] for r in self.con.execute(
            "select distinct patient_key from raw.withdrawals where _site_id = ?", [self.site.site_id]).fetchall()}

    # -- main -----------------------------------------------------------------
    def read_pending(self) -> int:
        """Read every delivery not yet in the ledger; returns the rows read (for batching sites)."""
        deliveries = self._discover()
        self.outcomes: list[BatchOutcome] = []
        self.pending: list[_Pending] = []
        for i, delivery in enumerate(deliveries, 1):
            self.progress(f"  {self.site.site_id}: reading delivery {i}/{len(deliveries)} ({delivery.extract_id})")
            result = self._read(delivery)
            if isinstance(result, BatchOutcome):
                self.outcomes.append(result)
            else:
                self.pending.append(result)
        if self.pending:
            self._mark_repeated_files()
            self._known = self._known_procedures()
        return sum(len(f) for p in self.pending for f in p.output.frames.values())

    def _discover(self) -> list[Delivery]:
        if self.site.adapter == "sql":
            return self.adapter.discover(self.site, self._sql_watermark())
        return self.adapter.discover(self.site, self.settings.landing_dir)

    def _sql_watermark(self) -> str | None:
        # The last committed pull's upper bound, not max(record_updated_at) of one table: child tables may
        # change after their procedures, and the adapter pulls every table up to the same bound.
        row = self.con.execute(
            "select max(extracted_at) from ingest.batches where site_id = ? "
            "and status in ('committed', 'partially_quarantined')", [self.site.site_id]).fetchone()
        return row[0].isoformat(sep=" ") if row and row[0] else None

    def _fingerprint(self, delivery: Delivery) -> str:
        path = Path(delivery.path)
        if path.exists():
            return delivery_fingerprint(path)
        return hashlib.sha256(f"{delivery.site_id}/{delivery.extract_id}".encode()).hexdigest()

    def _read(self, delivery: Delivery) -> _Pending | BatchOutcome:
        site_id = self.site.site_id
        fingerprint = self._fingerprint(delivery)
        seen = self._seen_fingerprint(fingerprint)
        if seen and self.site.adapter != "sql":
            return BatchOutcome(site_id, delivery.extract_id, seen[0], "duplicate",
                                f"already processed in batch {seen[0]} ({seen[1]}); nothing loaded")
        batch_id = _batch_id(site_id, delivery.extract_id, fingerprint)
        started = _now()
        try:
            if self.site.adapter == "sql":
                output = self.adapter.read(delivery, self.site, since=self._sql_watermark())
            else:
                output = self.adapter.read(delivery, self.site)
        except DeliveryError as exc:
            if seen:  # an SQL pull quarantined before and still failing: its quarantine stays open, no new batch
                return BatchOutcome(site_id, delivery.extract_id, seen[0], "duplicate",
                                    f"still failing as in batch {seen[0]} ({seen[1]}); nothing loaded: {exc}")
            return self._quarantine_whole(delivery, batch_id, fingerprint, started, str(exc), {}, [], exc.rule)
        except Exception as exc:  # an adapter bug or an unforeseen file: still quarantine, never crash the run
            log.exception("adapter %s failed on %s", self.site.adapter, delivery.path)
            reason = (f"site {site_id}: the {self.site.adapter} adapter could not read extract "
                      f"{delivery.extract_id} ({type(exc).__name__}: {exc}). Check the files against the site's "
                      "mapping.")
            if seen:
                return BatchOutcome(site_id, delivery.extract_id, seen[0], "duplicate",
                                    f"still failing as in batch {seen[0]} ({seen[1]}); nothing loaded: {reason}")
            return self._quarantine_whole(delivery, batch_id, fingerprint, started, reason, {}, [],
                                          "delivery_readable")
        file_hashes = {name: sha256_bytes(data) for name, data in output.files.items() if data is not None}
        if self.site.adapter == "sql":
            # An SQL pull is re-discovered only while its extract was never committed (e.g. quarantined for a
            # missing column). Identify it by the rows pulled, like a file delivery by its bytes: the same rows
            # again are a duplicate, changed rows (the site fixed its database) a new batch. Identifying it by
            # extract id alone re-used the quarantined batch's id and failed every later run on the primary key.
            content = hashlib.sha256(delivery.extract_id.encode())
            for name, digest in sorted(file_hashes.items()):
                content.update(f"\0{name}\0{digest}".encode())
            fingerprint = content.hexdigest()
            seen = self._seen_fingerprint(fingerprint)
            if seen:
                return BatchOutcome(site_id, delivery.extract_id, seen[0], "duplicate",
                                    f"already processed in batch {seen[0]} ({seen[1]}); nothing loaded")
            batch_id = _batch_id(site_id, delivery.extract_id, fingerprint)
        findings = list(output.findings) + _guard_columns(output, self.site)
        return _Pending(delivery, output, batch_id, fingerprint, started, findings, file_hashes)

    def _mark_repeated_files(self) -> None:
        """A file identical to one already loaded (or earlier in this run) is not loaded again."""
        seen_files = self._seen_files()
        for p in self.pending:
            for name, digest in sorted(p.file_hashes.items()):
                if digest in seen_files:
                    p.repeated.add(name)
                    p.findings.append(Finding(
                        rule="file_already_loaded", category="ledger", severity="info",
                        message=f"{name} is identical to a file already loaded in batch {seen_files[digest]}; "
                                f"its rows were not loaded again", file_name=name))
                else:
                    seen_files[digest] = p.batch_id

    def prepare(self, entity_name: str):
        """The site's pending files of one entity, stacked and prepared for one GX pass (None: nothing to check).

        Entities must be prepared in :data:`ENTITY_ORDER`, each after the previous one was
        absorbed: a child's parent check needs the procedures accepted just before.
        """
        from poem_registry.quality.delivery import not_applicable_results, prepare_delivery

        site_id = self.site.site_id
        entity = load_contract().entities[entity_name]
        parts = []
        for i, p in enumerate(self.pending):
            frame = p.output.frames.get(entity_name)
            if p.error or frame is None or (len(frame) and frame[SOURCE_FILE].iloc[0] in p.repeated):
                continue
            missing = [c for c in entity.required_columns if c not in frame.columns]
            if missing:
                p.error = (f"site {site_id}: {entity.file} in extract {p.delivery.extract_id} lacks the "
                           f"required column(s) {', '.join(missing)}: add them to the export (or map them in "
                           f"sites/{site_id}.yml) and deliver the extract again")
                continue
            parts.append((i, frame))
        self._parts = parts
        if not parts:
            if self.pending:
                self.checks += not_applicable_results(entity_name, site_id, self.pending[-1].delivery.extract_id)
            return None
        self.progress(f"  {site_id}: {entity_name}: {sum(len(f) for _, f in parts)} rows in {len(parts)} "
                      "deliveries to validate")
        self._combined = pd.concat([f.assign(_part=str(i)) for i, f in parts], ignore_index=True)
        delivered = pd.concat([p.procedures for p in self.pending if p.procedures is not None] or [self._known])
        parents = pd.concat([self._known, delivered]).drop_duplicates("procedure_id", keep="last")
        return prepare_delivery(
            entity_name, self._combined, site_id=site_id,
            extract_id="+".join(self.pending[i].delivery.extract_id for i, _ in parts),
            known_parent_ids=set(parents["procedure_id"].dropna()),
            parent_dates=dict(zip(parents["procedure_id"], parents["procedure_date"], strict=False)),
            today=self.today, partition_column="_part")

    def absorb(self, entity_name: str, validation) -> None:
        """Take the validation of what :meth:`prepare` stacked: rows to load or reject, per delivery."""
        site_id = self.site.site_id
        combined = self._combined
        self.checks += validation.checks
        mask = validation.rejected_mask.reindex(validation.typed.index, fill_value=False).astype(bool)
        failures = validation.row_failures
        for i, _ in self._parts:
            p = self.pending[i]
            if str(i) in validation.batch_errors:
                p.error = f"site {site_id}: {validation.batch_errors[str(i)]}"
                continue
            in_part = (combined["_part"] == str(i)).to_numpy()
            p.typed[entity_name] = validation.typed[in_part].drop(columns=["_part"])
            p.rejected_mask[entity_name] = mask[in_part].to_numpy()
            p.delivered[entity_name] = combined[in_part].drop(columns=["_part"])
            if len(failures):
                p.failures.append(failures[failures["partition"] == str(i)].drop(columns=["partition"]))
            if entity_name == "procedures":
                good = p.typed[entity_name][~p.rejected_mask[entity_name]]
                p.procedures = good[["procedure_id", "procedure_date"]]
        self._parts, self._combined = [], None

    def commit(self) -> list[BatchOutcome]:
        """Commit (or quarantine) every pending delivery of the site, with its check results, in ONE transaction.

        Each delivery keeps its own batch, ledger rows and quarantine; the site's accepted rows
        are inserted once per entity (a DuckDB insert costs ~10 ms however small it is). A
        failure leaves none of the site's deliveries loaded, so the next run reads them all again.
        """
        from poem_registry.quality.results import store_results

        outcomes = list(self.outcomes)
        if not self.pending:
            return outcomes
        self._raw_buffer: dict[str, list[pd.DataFrame]] = {}
        self._withdrawn = self._withdrawn_keys()
        fault_point("ingest.before_commit")
        with self._transaction():
            for p in self.pending:
                if p.error:
                    outcomes.append(self._quarantine_whole(p.delivery, p.batch_id, p.fingerprint, p.started,
                                                           p.error, p.file_hashes, p.findings, "batch_structure"))
                else:
                    outcomes.append(self._commit_pending(p))
            self._flush_raw()
            store_results(self.con, self.checks, run_id=self.run_id, stage="delivery", site_id=self.site.site_id,
                          extract_id=self.pending[-1].delivery.extract_id)
            fault_point("ingest.before_final_commit")
        self.pending = []
        return outcomes

    @contextlib.contextmanager
    def _transaction(self):
        """A transaction, or nothing if one is already open (the site's commit wraps its deliveries)."""
        if self._in_transaction:
            yield
            return
        self.con.begin()
        self._in_transaction = True
        try:
            yield
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise
        finally:
            self._in_transaction = False

    def _commit_pending(self, p: _Pending) -> BatchOutcome:
        site_id = self.site.site_id
        withdrawn = self._withdrawn
        accepted: dict[str, pd.DataFrame] = {}
        rejected: dict[str, pd.DataFrame] = {}
        rows_withdrawn = 0
        for entity_name in ENTITY_ORDER:
            if entity_name not in p.typed:
                continue
            typed, mask, frame = p.typed[entity_name], p.rejected_mask[entity_name], p.delivered[entity_name]
            good = _identifier_safe(typed[~mask], entity_name, site_id, self.pseudo)
            bad = _identifier_safe(frame[mask], entity_name, site_id, self.pseudo)
            if len(bad):
                failures = pd.concat(p.failures, ignore_index=True) if p.failures else pd.DataFrame()
                critical = failures[(failures["severity"] == "critical")
                                    & (failures["source_file"] == bad[SOURCE_FILE].iloc[0])]
                reasons = critical.groupby("source_row")["rule"].agg(lambda s: "; ".join(sorted(set(s))))
                rejected[entity_name] = bad.assign(_reasons=bad[SOURCE_ROW].map(reasons))
            good, n_withdrawn = self._drop_withdrawn(entity_name, good, withdrawn, accepted)
            rows_withdrawn += n_withdrawn
            if entity_name == "withdrawals":
                withdrawn |= set(good["patient_key"].dropna())
            accepted[entity_name] = good
        row_failures = pd.concat(p.failures, ignore_index=True) if p.failures else pd.DataFrame()
        return self._commit(p.delivery, p.output, p.batch_id, p.fingerprint, p.started, accepted, rejected,
                            row_failures, p.findings, p.file_hashes, rows_withdrawn)

    def _drop_withdrawn(self, entity_name: str, frame: pd.DataFrame, withdrawn: set[str],
                        accepted: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, int]:
        """Rows of patients who withdrew consent are not loaded again, even if a site re-sends them."""
        if not withdrawn or entity_name == "withdrawals" or not len(frame):
            return frame, 0
        if "patient_key" in frame.columns:
            keep = ~frame["patient_key"].isin(withdrawn)
        else:
            withdrawn_procedures = set(self.con.execute(
                "select distinct procedure_id from raw.procedures where _site_id = ? and patient_key in "
                "(select patient_key from raw.withdrawals where _site_id = ?)",
                [self.site.site_id, self.site.site_id]).df()["procedure_id"])
            procs = accepted.get("procedures")
            if procs is not None and len(procs):
                withdrawn_procedures |= set(procs.loc[procs["patient_key"].isin(withdrawn), "procedure_id"])
            keep = ~frame["procedure_id"].isin(withdrawn_procedures)
        return frame[keep], int((~keep).sum())

    # -- writing ----------------------------------------------------------------
    def _next_batch_seq(self) -> int:
        return self.con.execute("select nextval('ingest.batch_seq')").fetchone()[0]

    def _commit(self, delivery, output, batch_id, fingerprint, started, accepted, rejected, row_failures,
                findings, file_hashes, rows_withdrawn) -> BatchOutcome:
        site_id = self.site.site_id
        extracted_at = _parse_extracted_at(output.extracted_at or delivery.extracted_at)
        outcome = BatchOutcome(site_id, delivery.extract_id, batch_id, "committed", rows_withdrawn=rows_withdrawn)
        quarantine_path = None
        if any(len(r) for r in rejected.values()):
            outcome.status = "partially_quarantined"
            qreport = QuarantineReport(
                site_id=site_id, extract_id=delivery.extract_id, batch_id=batch_id, whole_batch=False,
                reason=f"{sum(len(r) for r in rejected.values())} row(s) broke a critical rule",
                files=file_hashes, rejected=rejected,
                failures=row_failures[row_failures["severity"] == "critical"] if len(row_failures) else None,
                findings=[f.__dict__ for f in findings])
            quarantine_path = str(write_quarantine(self.settings.quarantine_dir, qreport))
        loaded_at = _now()
        con = self.con
        with self._transaction():
            batch_seq = self._next_batch_seq()
            for entity_name, frame in accepted.items():
                if not len(frame):
                    continue
                table = frame.assign(_site_id=site_id, _extract_id=delivery.extract_id,
                                     _extracted_at=extracted_at or loaded_at, _loaded_at=loaded_at,
                                     _batch_id=batch_id, _batch_seq=batch_seq)
                self._raw_buffer.setdefault(entity_name, []).append(table)
                outcome.rows_loaded[entity_name] = len(frame)
                fault_point("ingest.mid_commit")
            if len(accepted.get("withdrawals", [])):
                self._flush_raw()  # the purge must see every row loaded before it
                self._apply_withdrawals(accepted["withdrawals"], batch_id, loaded_at)
            for entity_name, frame in rejected.items():
                outcome.rows_quarantined[entity_name] = len(frame)
            self._record_batch(batch_id, batch_seq, delivery, fingerprint, started, extracted_at, outcome,
                               quarantine_path)
            for name, digest in file_hashes.items():
                entity = load_contract().entity_for_file(name)
                n = len(output.frames[entity.name]) if entity and entity.name in output.frames else None
                con.execute("insert or ignore into ingest.files values (?, ?, ?, ?, ?, ?, ?)",
                            [digest, site_id, delivery.extract_id, name, batch_id, n, loaded_at])
            self._record_findings(batch_id, delivery, findings, row_failures, loaded_at)
        outcome.quarantine_path = quarantine_path
        parts = [f"{n} {e}" for e, n in outcome.rows_loaded.items()]
        outcome.message = ("loaded " + (", ".join(parts) if parts else "no new rows")
                           + (f"; {outcome.quarantined} row(s) quarantined" if outcome.quarantined else "")
                           + (f"; {rows_withdrawn} row(s) of withdrawn patients skipped" if rows_withdrawn else ""))
        return outcome

    def _flush_raw(self) -> None:
        """Insert the buffered accepted rows, one statement per entity."""
        for entity_name, frames in self._raw_buffer.items():
            entity = load_contract().entities[entity_name]
            columns = [c.raw_name for c in entity.columns] + list(LINEAGE_COLUMNS)
            frame = pd.concat(frames, ignore_index=True).rename(
                columns={SOURCE_FILE: "_source_file", SOURCE_ROW: "_source_row"})
            for col in columns:
                if col not in frame.columns:
                    frame[col] = pd.NA
            self.con.register("_incoming", frame[columns])
            try:
                self.con.execute(f"insert into raw.{entity_name} ({', '.join(columns)}) "
                                 f"select {', '.join(columns)} from _incoming")
            finally:
                self.con.unregister("_incoming")
        self._raw_buffer = {}

    def _apply_withdrawals(self, withdrawals: pd.DataFrame, batch_id: str, at: datetime) -> None:
        """Purge every raw row of a withdrawn patient; the ledger keeps that (and only that) it happened."""
        site_id = self.site.site_id
        for row in withdrawals.itertuples():
            key = row.patient_key
            procs = [r[0] for r in self.con.execute(
                "select distinct procedure_id from raw.procedures where _site_id = ? and patient_key = ?",
                [site_id, key]).fetchall()]
            purged = 0
            if procs:
                placeholders = ", ".join("?" for _ in procs)
                for child in ("followups", "adverse_events", "reinterventions"):
                    purged += self.con.execute(
                        f"delete from raw.{child} where _site_id = ? and procedure_id in ({placeholders})",
                        [site_id, *procs]).fetchone()[0]
            purged += self.con.execute("delete from raw.procedures where _site_id = ? and patient_key = ?",
                                       [site_id, key]).fetchone()[0]
            self.con.execute("insert into ingest.withdrawals_applied values (?, ?, ?, ?, ?, ?)",
                             [site_id, key, row.withdrawn_at, at, purged, batch_id])

    def _record_batch(self, batch_id, batch_seq, delivery, fingerprint, started, extracted_at, outcome,
                      quarantine_path) -> None:
        self.con.execute(
            "insert into ingest.batches (batch_id, batch_seq, site_id, extract_id, adapter, status, started_at, "
            "finished_at, extracted_at, rows_loaded, rows_quarantined, message, quarantine_path, fingerprint, "
            "run_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [batch_id, batch_seq, self.site.site_id, delivery.extract_id, self.site.adapter, outcome.status,
             started, _now(), extracted_at, outcome.loaded, outcome.quarantined, outcome.message,
             quarantine_path, fingerprint, self.run_id])

    def _record_findings(self, batch_id, delivery, findings: list[Finding], row_failures: pd.DataFrame,
                         at: datetime) -> None:
        rows = [(batch_id, self.site.site_id, delivery.extract_id, f.file_name, f.source_row, f.column_name,
                 f.rule, f.category, f.severity, f.message, f.value, at) for f in findings]
        if len(row_failures):
            rf = row_failures
            rows += list(zip([batch_id] * len(rf), [self.site.site_id] * len(rf),
                             [delivery.extract_id] * len(rf), rf["source_file"], rf["source_row"], rf["column"],
                             rf["rule"], rf["category"], rf["severity"], rf["message"], rf["value"],
                             [at] * len(rf), strict=True))
        if rows:
            frame = pd.DataFrame(rows, columns=["batch_id", "site_id", "extract_id", "file_name", "source_row",
                                                "column_name", "rule", "category", "severity", "message",
                                                "value", "recorded_at"])
            frame["source_row"] = pd.to_numeric(frame["source_row"], errors="coerce").astype("Int64")
            frame["value"] = frame["value"].astype("string")
            self.con.register("_findings", frame)
            try:
                self.con.execute("insert into ingest.findings select * from _findings")
            finally:
                self.con.unregister("_findings")

    def _quarantine_whole(self, delivery, batch_id, fingerprint, started, reason, file_hashes, findings,
                          rule) -> BatchOutcome:
        report = QuarantineReport(site_id=self.site.site_id, extract_id=delivery.extract_id, batch_id=batch_id,
                                  whole_batch=True, reason=reason, files=file_hashes,
                                  findings=[f.__dict__ for f in findings])
        path = str(write_quarantine(self.settings.quarantine_dir, report))
        outcome = BatchOutcome(self.site.site_id, delivery.extract_id, batch_id, "quarantined", reason,
                               quarantine_path=path)
        with self._transaction():
            seq = self._next_batch_seq()
            self._record_batch(batch_id, seq, delivery, fingerprint, started,
                               _parse_extracted_at(delivery.extracted_at), outcome, path)
            self._record_findings(batch_id, delivery, [*findings, Finding(
                rule=rule, category="conformance", severity="critical", message=reason)], pd.DataFrame(), _now())
        return outcome


def new_run_id() -> str:
    return _now().strftime("run_%Y%m%dT%H%M%S_%f")


def ingest(settings: Settings, *, site_ids: list[str] | None = None, run_id: str | None = None,
           today: date | None = None, progress: Callable[[str], None] | None = None) -> IngestSummary:
    """Ingest every configured site (or the given ones); one site's failure never stops the others.

    Sites are taken in waves of about ``settings.ingest_rows_per_wave`` delivered rows:
    each wave's files are validated together, one GX pass per entity for all its sites
    (GX's cost is per pass, not per row), then every delivery is committed in its own
    transaction. The wave size bounds memory.
    """
    progress = progress or (lambda msg: None)
    settings.ensure_dirs()
    secret = load_secret(settings.secret_file, demo=settings.demo)
    pseudo = Pseudonymizer(secret)
    sites = load_sites(settings.sites_dir)
    if site_ids:
        unknown = set(site_ids) - {s.site_id for s in sites}
        if unknown:
            raise ValueError(f"unknown site(s) {sorted(unknown)}; configured: {[s.site_id for s in sites]}")
        sites = [s for s in sites if s.site_id in site_ids]
    summary = IngestSummary(run_id=run_id or new_run_id())
    with connect(settings.warehouse_path, timeout=settings.warehouse_lock_timeout) as con:
        ensure_schema(con)
        wave: list[SiteIngestor] = []
        wave_rows = 0
        for n, site in enumerate(sites, 1):
            progress(f"[{n}/{len(sites)}] reading site {site.site_id} ({site.adapter})")
            ingestor = SiteIngestor(settings, site, con, pseudo, summary.run_id, today, progress)
            if _site_step(summary, ingestor, "read", ingestor.read_pending) is _FAILED:
                continue
            wave.append(ingestor)
            wave_rows += sum(len(f) for p in ingestor.pending for f in p.output.frames.values())
            if wave_rows >= settings.ingest_rows_per_wave or n == len(sites):
                _ingest_wave(summary, wave, progress)
                wave, wave_rows = [], 0
        if wave:
            _ingest_wave(summary, wave, progress)
    return summary


_FAILED = object()


def _site_step(summary: IngestSummary, ingestor: SiteIngestor, step: str, action: Callable, *args):
    """``action(*args)`` for one site; a failure is recorded against that site only (returns _FAILED)."""
    site_id = ingestor.site.site_id
    if site_id in summary.site_errors:
        return _FAILED
    try:
        return action(*args)
    except Exception as exc:
        log.exception("site %s failed (%s)", site_id, step)
        summary.site_errors[site_id] = f"{type(exc).__name__}: {exc}"
        ingestor.progress(f"  {site_id}: FAILED: {exc}")
        return _FAILED


def _ingest_wave(summary: IngestSummary, wave: list[SiteIngestor], progress: Callable[[str], None]) -> None:
    """Validate a wave of sites together (entity by entity, parents first), then commit site by site."""
    from poem_registry.quality.delivery import validate_deliveries

    for entity_name in ENTITY_ORDER:
        prepared = {i: _site_step(summary, i, f"prepare {entity_name}", i.prepare, entity_name) for i in wave}
        ready = {i: p for i, p in prepared.items() if p is not None and p is not _FAILED}
        if not ready:
            continue
        progress(f"validating {entity_name}: {sum(len(p.frame) for p in ready.values()):,} rows from "
                 f"{len(ready)} site(s)")
        try:
            validations = dict(zip(ready, validate_deliveries(list(ready.values())), strict=True))
        except Exception:  # one site's data must not fail the others: validate each site alone
            log.exception("validating %s for %d sites together failed; validating each site alone",
                          entity_name, len(ready))
            validations = {i: _site_step(summary, i, f"validate {entity_name}", _validate_alone, p)
                           for i, p in ready.items()}
        for ingestor, validation in validations.items():
            if validation is not _FAILED:
                _site_step(summary, ingestor, f"absorb {entity_name}", ingestor.absorb, entity_name, validation)
    for ingestor in wave:
        site_id = ingestor.site.site_id
        outcomes = _site_step(summary, ingestor, "commit", ingestor.commit)
        if outcomes is _FAILED:
            continue
        summary.outcomes += outcomes
        summary.checks_passed += sum(c.status == "pass" for c in ingestor.checks)
        summary.checks_failed += sum(c.status in ("fail", "error") for c in ingestor.checks)
        for o in outcomes:
            progress(f"  {site_id}/{o.extract_id}: {o.status}: {o.message}")


def _validate_alone(prepared):
    from poem_registry.quality.delivery import validate_deliveries

    return validate_deliveries([prepared])[0]
