"""Delivery history: when each record version reaches the site's extracts.

Every record gets a first version (keyed in some time after the event) and a
few get a corrected second version later (same key, later ``record_updated_at``,
one value changed). Each version belongs to the first extract whose cut-off is
at or after its ``record_updated_at``. Incremental sites send the versions of
an extract; cumulative sites send, per extract, the latest version of every
record seen so far. Records keyed in after the last extract are not delivered
and are not part of the ground truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from poem_registry.synth.clinical import INT_NA, MINUTES_PER_DAY, ClinicalData, site_start_day
from poem_registry.synth.sites import SiteSpec

KEYS = {
    "procedures": "procedure_id",
    "followups": "assessment_id",
    "adverse_events": "event_id",
    "reinterventions": "event_id",
    "withdrawals": "patient_id",
}
ENTITIES = tuple(KEYS)

CORRECTION_RATES = {"procedures": 0.03, "followups": 0.02, "adverse_events": 0.08}


@dataclass(frozen=True)
class Extract:
    site_id: str
    index: int
    extract_id: str
    cutoff_day: int
    extracted_at: str  # ISO timestamp

    @property
    def cutoff_end_minute(self) -> int:
        return (self.cutoff_day + 1) * MINUTES_PER_DAY - 1


def _month_ends(first_day: int, last_day: int) -> list[int]:
    start = np.datetime64(int(first_day), "D").astype("datetime64[M]")
    end = np.datetime64(int(last_day), "D").astype("datetime64[M]")
    months = np.arange(start, end + 1)
    ends = ((months + 1).astype("datetime64[D]") - 1).astype(np.int64)
    return [int(d) for d in ends]


def schedule(spec: SiteSpec, site_index: int, start_day: int, end_day: int) -> list[Extract]:
    s0 = site_start_day(spec, start_day, end_day)
    cutoffs = _month_ends(s0 + 30, end_day)
    if spec.cadence == "quarterly":
        cutoffs = [d for d in cutoffs if int(str(np.datetime64(d, "D"))[5:7]) % 3 == 0]
    cutoffs = [d for d in cutoffs if d < end_day] + [end_day]
    out = []
    for k, d in enumerate(cutoffs):
        eid = f"ext_{k + 1:03d}" if spec.extract_ids == "seq" else str(np.datetime64(d, "D"))
        minute = 90 + 7 * (site_index % 40)
        ts = f"{np.datetime64(d + 1, 'D')}T{minute // 60:02d}:{minute % 60:02d}:00"
        out.append(Extract(spec.site_id, k, eid, d, ts))
    return out


def _entry_minutes(rng: np.random.Generator, day: np.ndarray, mean_lag: float, max_lag: int) -> np.ndarray:
    lag = np.minimum(np.floor(rng.exponential(mean_lag, len(day))), max_lag).astype(np.int64)
    minute = rng.integers(8 * 60, 19 * 60, len(day))
    return (day + lag) * MINUTES_PER_DAY + minute


@dataclass
class History:
    """All record versions with the extract each belongs to, and the delivered truth."""

    versions: dict[
        str, pd.DataFrame
    ]  # entity -> typed rows, one per version, with _si, _t, _ext, _rec, _final

    def truth(self, entity: str) -> pd.DataFrame:
        """Final (true) version of every delivered record, in (site, key) order."""
        v = self.versions[entity]
        return v[v["_final"].to_numpy(dtype=bool)].reset_index(drop=True)

    schedules: dict[str, list[Extract]]


def build_history(data: ClinicalData, specs: list[SiteSpec], seed: int) -> History:
    rng = np.random.default_rng([seed, 3])
    schedules = {s.site_id: schedule(s, i, data.start_day, data.end_day) for i, s in enumerate(specs)}
    ends = _SiteCutoffs([schedules[s.site_id] for s in specs])
    late_rate = np.array([s.late_entry_rate for s in specs])

    proc = data.procedures.copy()
    psi = proc["_si"].to_numpy()
    t = _entry_minutes(rng, proc["procedure_date"].to_numpy(), 5.0, 30)
    late = rng.random(len(proc)) < late_rate[psi]
    late_t = t + rng.integers(120, 241, len(proc)) * MINUTES_PER_DAY
    t = np.where(late, np.minimum(late_t, (data.end_day - 1) * MINUTES_PER_DAY + 600), t)
    proc["_t"] = t
    proc["_late_entry"] = late

    fu = data.followups.copy()
    ft = _entry_minutes(rng, fu["assessment_date"].to_numpy(), 7.0, 60)
    parent = t[fu["_proc_row"].to_numpy()]
    may_precede = late_rate[fu["_si"].to_numpy()] > 0  # the held-and-attached-later site
    fu["_t"] = np.where(may_precede, ft, np.maximum(ft, parent + 1))
    ae = data.adverse_events.copy()
    ae["_t"] = np.maximum(
        _entry_minutes(rng, ae["onset_date"].to_numpy(), 10.0, 60), t[ae["_proc_row"].to_numpy()] + 1
    )
    ri = data.reinterventions.copy()
    ri["_t"] = np.maximum(
        _entry_minutes(rng, ri["reintervention_date"].to_numpy(), 14.0, 90), t[ri["_proc_row"].to_numpy()] + 1
    )
    wd = data.withdrawals.copy()
    wd["_t"] = _entry_minutes(rng, wd["withdrawn_at"].to_numpy(), 3.0, 10)

    frames = {
        "procedures": proc,
        "followups": fu,
        "adverse_events": ae,
        "reinterventions": ri,
        "withdrawals": wd,
    }
    versions: dict[str, pd.DataFrame] = {}
    for ent, df in frames.items():
        # frames are in (site, key) order; _rec numbers the records in that order
        df = df.copy()
        df["_ext"] = ends.assign(df["_si"].to_numpy(), df["_t"].to_numpy())
        df = df[df["_ext"] >= 0].reset_index(drop=True)
        df["_rec"] = np.arange(len(df))
        rate = CORRECTION_RATES.get(ent, 0.0)
        final = df.copy()
        orig = df.iloc[0:0].copy()
        if rate and len(df):
            corr_t = df["_t"].to_numpy() + rng.integers(20, 200, len(df)) * MINUTES_PER_DAY
            lim = ends.last_end[df["_si"].to_numpy()]
            pick = (rng.random(len(df)) < rate) & (corr_t <= lim)
            orig = df[pick].copy()
            final.loc[pick, "_t"] = corr_t[pick]
            _perturb(ent, orig, rng)
            final["_ext"] = ends.assign(final["_si"].to_numpy(), final["_t"].to_numpy())
        orig["_final"] = False
        final["_final"] = True
        final["record_updated_at"] = final["_t"]
        orig["record_updated_at"] = orig["_t"]
        v = pd.concat([orig, final], ignore_index=True)
        v = v.iloc[np.lexsort((v["_t"].to_numpy(), v["_rec"].to_numpy()))].reset_index(drop=True)
        versions[ent] = v
    return History(versions=versions, schedules=schedules)


class _SiteCutoffs:
    """Extract cut-offs of all sites, for a vectorised 'first extract at or after t'."""

    BIG = np.int64(1) << np.int64(40)

    def __init__(self, schedules: list[list[Extract]]):
        self.first = np.cumsum([0] + [len(s) for s in schedules])[:-1]
        self.count = np.array([len(s) for s in schedules])
        self.glob = np.concatenate(
            [[si * self.BIG + e.cutoff_end_minute for e in sch] for si, sch in enumerate(schedules)]
        ).astype(np.int64)
        self.last_end = np.array([sch[-1].cutoff_end_minute for sch in schedules], dtype=np.int64)

    def assign(self, si: np.ndarray, t: np.ndarray) -> np.ndarray:
        si = np.asarray(si, dtype=np.int64)
        pos = np.searchsorted(self.glob, si * self.BIG + np.asarray(t, dtype=np.int64), side="left")
        idx = pos - self.first[si]
        return np.where(idx < self.count[si], idx, -1)


def _perturb(ent: str, orig: pd.DataFrame, rng: np.random.Generator) -> None:
    """Make the earlier (superseded) version differ from the true one."""
    n = len(orig)
    if not n:
        return
    if ent == "procedures":
        m = orig["procedure_minutes"].to_numpy(dtype=np.int64)
        delta = rng.integers(5, 31, n) * np.where(rng.random(n) < 0.5, -1, 1)
        orig["procedure_minutes"] = np.clip(m + delta, 20, 480)
    elif ent == "followups":
        d = orig["eckardt_dysphagia"].to_numpy(dtype=np.int64)
        nd = np.where(d >= 3, d - 1, d + 1)
        orig["eckardt_dysphagia"] = nd
        orig["eckardt_total"] = orig["eckardt_total"].to_numpy(dtype=np.int64) + (nd - d)
    elif ent == "adverse_events":
        nights = orig["unplanned_nights"].to_numpy(dtype=np.int64)
        orig["unplanned_nights"] = np.where(nights > 0, np.maximum(nights - rng.integers(1, 3, n), 0), 1)


# --------------------------------------------------------------------------------------
# Deliberate defects (the rest of the data is clean)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DefectSpec:
    """One deliberate defect. ``extract_index`` is the 0-based position in the site's
    extract list (the first later extract holding a suitable row is used when that
    one has none); the row chosen is the first suitable one in key order. The
    resolved extract id and row key of a run are in ``GenerationSummary.defects``."""

    defect_id: str
    site_id: str
    extract_index: int
    file: str  # exchange file name (the site's own file/sheet/table carries it)
    entity: str
    rule: str  # rule name in exchange_v1.yml / ingest (range:<col>, code_set:<col>, duplicate_key, ...)
    description: str


DELIBERATE_DEFECTS: tuple[DefectSpec, ...] = (
    DefectSpec(
        "out_of_range_minutes",
        "riverside",
        6,
        "procedures.csv",
        "procedures",
        "range:procedure_minutes",
        "procedure_minutes set to 900 (allowed 5..600)",
    ),
    DefectSpec(
        "followup_before_procedure",
        "northbay",
        3,
        "followups.csv",
        "followups",
        "assessment_after_procedure",
        "assessment_date set 10 days before the procedure_date (cumulative site: the next extract re-sends it clean)",
    ),
    DefectSpec(
        "duplicate_procedure_id",
        "lakeshore",
        2,
        "procedures.csv",
        "procedures",
        "duplicate_key",
        "a procedure row appears twice in the Procedures sheet, the copy with procedure_minutes + 17",
    ),
    DefectSpec(
        "unknown_approach_code",
        "harbor",
        4,
        "procedures.csv",
        "procedures",
        "code_set:approach",
        "approach 'lateral' (not in code set approach)",
    ),
    DefectSpec(
        "eckardt_total_mismatch",
        "valley",
        10,
        "followups.csv",
        "followups",
        "eckardt_total_equals_items",
        "eckardt_total = sum of items + 2",
    ),
    DefectSpec(
        "technical_failure_without_reason",
        "riverside",
        12,
        "procedures.csv",
        "procedures",
        "technical_failure_has_reason",
        "aborted_reason blank on a procedure with technical_success false",
    ),
    DefectSpec(
        "direct_identifier_columns",
        "riverside",
        4,
        "procedures.csv",
        "procedures",
        "direct_identifier_column",
        "extra columns patient_name, phone, email with planted fake values on every row of the file",
    ),
)

_FIRST = (
    "Zebulon",
    "Ottilie",
    "Thaddeus",
    "Winifred",
    "Barnaby",
    "Philippa",
    "Leopold",
    "Marigold",
    "Cornelius",
    "Henrietta",
)
_LAST = (
    "Quillfeather",
    "Pemberbrook",
    "Fiddlewick",
    "Thistlewood",
    "Crumbleton",
    "Marchbanks",
    "Bramblecote",
    "Winterbourne",
)


def defect_suitable(defect: DefectSpec, df: pd.DataFrame) -> pd.Series:
    """Rows of an extract's exchange-string frame that the defect can be planted on."""
    if defect.defect_id == "technical_failure_without_reason":
        return (df["technical_success"] == "false") & (df["aborted_reason"] != "")
    if defect.defect_id == "unknown_approach_code":
        return df["approach"] != ""
    if defect.defect_id == "eckardt_total_mismatch":
        return (df["eckardt_total"] != "") & (df["eckardt_dysphagia"] != "")
    if defect.defect_id == "out_of_range_minutes":
        return df["procedure_minutes"] != ""
    return pd.Series(True, index=df.index)


def plant_defect(
    defect: DefectSpec,
    df: pd.DataFrame,
    key_value: str,
    *,
    procedure_dates: dict[str, str],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    """Return the frame with the defect planted on ``key_value`` and details for the summary."""
    key = KEYS[defect.entity]
    df = df.copy()
    row = df.index[df[key] == key_value][0]
    detail: dict = {}
    if defect.defect_id == "out_of_range_minutes":
        detail["original"], detail["planted"] = df.at[row, "procedure_minutes"], "900"
        df.at[row, "procedure_minutes"] = "900"
    elif defect.defect_id == "followup_before_procedure":
        pdate = np.datetime64(procedure_dates[df.at[row, "procedure_id"]], "D")
        planted = str(pdate - np.timedelta64(10, "D"))
        detail["original"], detail["planted"] = df.at[row, "assessment_date"], planted
        df.at[row, "assessment_date"] = planted
    elif defect.defect_id == "duplicate_procedure_id":
        copy = df.loc[[row]].copy()
        m = copy.at[row, "procedure_minutes"]
        copy.loc[row, "procedure_minutes"] = str(int(m) + 17) if m else "60"
        detail["original"], detail["planted"] = m, copy.at[row, "procedure_minutes"]
        pos = df.index.get_loc(row) + 1
        df = pd.concat([df.iloc[:pos], copy, df.iloc[pos:]], ignore_index=True)
    elif defect.defect_id == "unknown_approach_code":
        detail["original"], detail["planted"] = df.at[row, "approach"], "lateral"
        df.at[row, "approach"] = "lateral"
    elif defect.defect_id == "eckardt_total_mismatch":
        tot = int(df.at[row, "eckardt_total"])
        planted = str(min(tot + 2, 12) if tot <= 10 else tot - 2)
        detail["original"], detail["planted"] = str(tot), planted
        df.at[row, "eckardt_total"] = planted
    elif defect.defect_id == "technical_failure_without_reason":
        detail["original"], detail["planted"] = df.at[row, "aborted_reason"], ""
        df.at[row, "aborted_reason"] = ""
    elif defect.defect_id == "direct_identifier_columns":
        n = len(df)
        first = np.array(_FIRST, dtype=object)[rng.integers(0, len(_FIRST), n)]
        last = np.array(_LAST, dtype=object)[rng.integers(0, len(_LAST), n)]
        num = rng.permutation(100)[np.arange(n) % 100]
        names = [f"{f} {ln}" for f, ln in zip(first, last, strict=True)]
        phones = [f"+1-202-555-01{k:02d}" for k in num]
        emails = [
            f"{f.lower()}.{ln.lower()}{k:02d}@example.org" for f, ln, k in zip(first, last, num, strict=True)
        ]
        df["patient_name"], df["phone"], df["email"] = names, phones, emails
        detail["planted"] = {
            "patient_name": sorted(set(names)),
            "phone": sorted(set(phones)),
            "email": sorted(set(emails)),
        }
    return df, detail


def defect_record(defect: DefectSpec) -> dict:
    return asdict(defect)


__all__ = [
    "DELIBERATE_DEFECTS",
    "ENTITIES",
    "INT_NA",
    "KEYS",
    "DefectSpec",
    "Extract",
    "History",
    "build_history",
    "schedule",
]
