"""Clinical model: the true exchange-format records of every site.

Vectorised with numpy over all procedures of all sites (one loop over sites for
volumes and operators only). Parameters come from clinical-spec §10; every
number used is a named constant below so tests can check calibration against
the same values.

Internal representation (until :mod:`poem_registry.synth.formatting` turns it
into exchange-format strings): dates are ``int64`` day numbers since 1970-01-01,
timestamps ``int64`` minutes since 1970-01-01, missing ints/dates are
:data:`INT_NA`, booleans are ``int8`` (1 true, 0 false, -1 missing), decimals
``float64`` (NaN missing), codes/text ``object`` (None missing). Columns whose
name starts with ``_`` are ground truth for tests and never delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from poem_registry.synth.sites import SiteSpec, shared_operator_pairs

INT_NA = np.iinfo(np.int64).min
EPOCH = np.datetime64("1970-01-01", "D")
MINUTES_PER_DAY = 1440

# ---- §10.1 patients -----------------------------------------------------------------
AGE_MEAN, AGE_SD, AGE_MIN, AGE_MAX = 48.0, 16.0, 18, 90
DIAGNOSIS_MIX = {
    "achalasia_type_1": 0.22,
    "achalasia_type_2": 0.55,
    "achalasia_type_3": 0.15,
    "distal_esophageal_spasm": 0.03,
    "hypercontractile_esophagus": 0.03,
    "egjoo": 0.01,
    "other": 0.01,
}
SIGMOID_RATE, ADVANCED_SIGMOID_RATE, MORPHOLOGY_UNKNOWN_RATE = 0.12, 0.04, 0.02
PRIOR_PD_RATE, PRIOR_BOTOX_RATE, PRIOR_HELLER_RATE = 0.35, 0.18, 0.05
BASELINE_ECKARDT_MEAN, BASELINE_ECKARDT_SD = 7.5, 2.2
OUT_OF_SCOPE_RATES = {"g_poem": 0.012, "z_poem": 0.008}
REDO_RATE = 0.02
POEM_F_FROM = date(2019, 1, 1)

# ---- §10.2 procedure ------------------------------------------------------------------
MINUTES_MEDIAN, MINUTES_SIGMA = 88.0, 0.45
LEARNING_EXTRA, LEARNING_LAMBDA = 0.75, 13.0  # ≈ +40% over an operator's first 20 cases
LEARNING_CASES = 20
TECH_SUCCESS_EXPERIENCED, TECH_SUCCESS_LEARNING = 0.98, 0.93
MUCOSOTOMY_FIRST10, MUCOSOTOMY_11_20, MUCOSOTOMY_EXPERIENCED = 0.15, 0.06, 0.03
CAPNOPERITONEUM_RATE, SC_EMPHYSEMA_RATE, CAPNOTHORAX_RATE, NEEDLE_GIVEN_CAPNO = 0.30, 0.30, 0.10, 0.35

# ---- §10.3 adverse events -------------------------------------------------------------
AE_BASE_RATE, AE_LEARNING_OR, AE_SIGMOID_OR = 0.075, 2.0, 2.3
#: Patient-level severity mix of AEs (mild, moderate, severe, fatal), ASGE derivation §2.1.
AE_SEVERITY_MIX = (0.735, 0.20, 0.055, 0.01)
AE_SECOND_EVENT_RATE = 0.10
SEVERITY_REPORTED_AGREEMENT = 0.90
GRADES = ("incident", "mild", "moderate", "severe", "fatal")

# ---- §10.4 outcomes -------------------------------------------------------------------
#: Base cumulative clinical failure (days -> P(failure by then)), primary failures at day 0.
PRIMARY_FAILURE_BASE = 0.025
LATE_FAILURE_KNOTS = np.array([90, 120, 365, 730, 1095, 1825, 3650], dtype=float)
LATE_FAILURE_CDF = np.array([0.0, 0.0104, 0.031, 0.052, 0.0625, 0.094, 0.125])
#: Extra primary failure probability by diagnosis (type III -4 points, jackhammer 72% ...).
EXTRA_PRIMARY_FAILURE = {
    "achalasia_type_3": 0.04,
    "distal_esophageal_spasm": 0.07,
    "hypercontractile_esophagus": 0.24,
    "egjoo": 0.05,
    "other": 0.08,
    "achalasia_unsubtyped": 0.01,
}
TYPE1_LATE_FAILURE_FACTOR = 1.3
REDO_EXTRA_PRIMARY, CHAGAS_EXTRA_PRIMARY = 0.05, 0.03
SUCCESS_ECKARDT_P = (0.33, 0.35, 0.20, 0.12)  # totals 0..3, mean 1.1 SD 1.0
FAILURE_ECKARDT_P = (0.30, 0.25, 0.18, 0.12, 0.08, 0.05, 0.02)  # totals 4..10
REINTERVENTION_WITHIN_6M, REINTERVENTION_6_24M = 0.50, 0.20
REINTERVENTION_TYPES = {
    "pneumatic_dilation": 0.40,
    "redo_poem": 0.25,
    "heller_myotomy": 0.15,
    "botulinum": 0.15,
    "other": 0.05,
}
GERD_REINTERVENTION_RATE = 0.01
ESOPHAGITIS_RATE, LA_MIX = 0.35, {"A": 0.50, "B": 0.35, "C": 0.12, "D": 0.03}
GERDQ_SYMPTOMATIC_RATE = 0.20
PPI_RATE = 0.27

# ---- §10.5 follow-up ------------------------------------------------------------------
WINDOWS = ("w_3_6m", "w_12m", "w_24m", "w_36m", "w_60m")
WINDOW_BOUNDS = ((60, 240), (241, 540), (541, 900), (901, 1260), (1620, 2100))
NOMINAL_DAYS = (91, 365, 730, 1095, 1825)
JITTER_SD = (14, 30, 45, 45, 60)
COMPLETENESS = (0.90, 0.85, 0.70, 0.60, 0.50)
FAILURE_RETURN_FACTOR = 1.3
MODE_MIX = {"in_person": 0.60, "telephone": 0.25, "questionnaire": 0.10, "chart_abstraction": 0.05}


def day_number(d: date) -> int:
    return int((np.datetime64(d, "D") - EPOCH).astype(np.int64))


def _choice(rng: np.random.Generator, mix: dict, n: int) -> np.ndarray:
    keys = np.array(list(mix), dtype=object)
    p = np.array(list(mix.values()), dtype=float)
    return keys[rng.choice(len(keys), size=n, p=p / p.sum())]


def _items_from_totals(rng: np.random.Generator, totals: np.ndarray, weights) -> np.ndarray:
    """Four Eckardt items (0..3 each) summing to ``totals`` (0..12)."""
    n = len(totals)
    items = np.zeros((n, 4), dtype=np.int64)
    rem = totals.astype(np.int64).copy()
    w = rng.gamma(np.asarray(weights, dtype=float) * 3.0, size=(n, 4)) + 1e-9
    for _ in range(12):
        active = rem > 0
        u = rng.random(n)
        if not active.any():
            continue
        ww = w * (items < 3)
        c = np.cumsum(ww, axis=1)
        pick = np.minimum((u[:, None] * c[:, -1:] >= c).sum(axis=1), 3)
        idx = np.nonzero(active)[0]
        items[idx, pick[idx]] += 1
        rem[idx] -= 1
    return items


def _luhn_npi(base9: str) -> str:
    digits = "80840" + base9
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return base9 + str((10 - total % 10) % 10)


@dataclass
class Operators:
    """Operator table (ground truth) and, per site, who operates there."""

    table: pd.DataFrame  # operator_id, prior_cases, home_site, sites
    per_site: dict[str, list[tuple[str, int, float]]]  # site -> [(operator_id, start_day, weight)]


def make_operators(specs: list[SiteSpec], start_day: int, end_day: int, seed: int) -> Operators:
    rng = np.random.default_rng([seed, 7])
    used: set[str] = set()

    def new_id() -> str:
        while True:
            base = "1" + f"{int(rng.integers(0, 10**8)):08d}"
            npi = _luhn_npi(base)
            if npi not in used:
                used.add(npi)
                return npi

    per_site: dict[str, list[tuple[str, int, float]]] = {}
    prior: dict[str, int] = {}
    home: dict[str, str] = {}
    site_start = {s.site_id: site_start_day(s, start_day, end_day) for s in specs}
    for s in specs:
        ops = []
        span = end_day - site_start[s.site_id]
        for k in range(s.n_operators):
            oid = new_id()
            if k == 0 and not s.new_program:
                prior[oid], start, weight = int(rng.integers(40, 200)), site_start[s.site_id], 2.0
            elif s.new_program or rng.random() < 0.5:
                prior[oid] = 0
                frac = 0.0 if (k == 0 or s.new_program) else float(rng.uniform(0.0, 0.6))
                start, weight = site_start[s.site_id] + int(frac * span), 1.0
            else:
                prior[oid], start, weight = int(rng.integers(5, 80)), site_start[s.site_id], 1.0
            home[oid] = s.site_id
            ops.append((oid, start, weight))
        per_site[s.site_id] = ops
    for a, b, kind in shared_operator_pairs(specs):
        oid = new_id()
        home[oid] = a
        if kind == "trainee":
            prior[oid] = 0
            a_start = site_start[a] + int(0.25 * (end_day - site_start[a]))
            per_site[a].append((oid, a_start, 1.5))
            per_site[b].append((oid, max(site_start[b], a_start), 2.0))
        else:
            prior[oid] = 60
            per_site[a].append((oid, site_start[a], 1.0))
            per_site[b].append((oid, site_start[b], 1.0))
    sites_of: dict[str, list[str]] = {}
    for sid, ops in per_site.items():
        for oid, _, _ in ops:
            sites_of.setdefault(oid, []).append(sid)
    ids = sorted(prior)
    table = pd.DataFrame(
        {
            "operator_id": ids,
            "prior_cases": [prior[i] for i in ids],
            "home_site": [home[i] for i in ids],
            "sites": [" ".join(sites_of.get(i, [])) for i in ids],
        }
    )
    return Operators(table=table, per_site=per_site)


def site_start_day(spec: SiteSpec, start_day: int, end_day: int) -> int:
    if spec.active_years is None:
        return start_day
    return max(start_day, end_day - round(spec.active_years * 365.25))


def expected_procedures(specs: list[SiteSpec], years: int, scale: float = 1.0) -> float:
    total = 0.0
    for s in specs:
        yrs = years if s.active_years is None else min(years, s.active_years)
        total += s.annual_volume * scale * yrs / (1 - sum(OUT_OF_SCOPE_RATES.values()))
    return total


@dataclass
class ClinicalData:
    procedures: pd.DataFrame
    followups: pd.DataFrame
    adverse_events: pd.DataFrame
    reinterventions: pd.DataFrame
    withdrawals: pd.DataFrame
    operators: pd.DataFrame
    start_day: int
    end_day: int


def _patient_ids(site_index: int, n: int, style: int) -> np.ndarray:
    """Unique site-local MRNs (an affine bijection, so no collisions and no big permutation)."""
    if n == 0:
        return np.array([], dtype=object)
    m = 10**8
    a, b = 48271 * 2 + 1 + 2 * site_index, 12_345_678 + 7919 * site_index
    if a % 5 == 0:  # keep a coprime to 10**8 so the map is a bijection
        a += 2
    vals = (a * np.arange(n, dtype=np.int64) + b) % m
    if style == 0:
        return np.char.zfill(vals.astype(str), 8).astype(object)  # leading zeros kept as text
    if style == 1:
        return np.char.add("MRN", vals.astype(str)).astype(object)
    return np.char.add("P-", np.char.zfill(vals.astype(str), 8)).astype(object)


def simulate(
    specs: list[SiteSpec], *, years: int, end_date: date, seed: int, scale: float = 1.0
) -> ClinicalData:
    end_day = day_number(end_date)
    start_day = end_day - round(years * 365.25) + 1
    operators = make_operators(specs, start_day, end_day, seed)
    len(specs)

    # ---------------- phase 1: per site volumes, dates, types, operators ----------------
    parts = []
    for si, s in enumerate(specs):
        rng = np.random.default_rng([seed, 1, si])
        s0 = site_start_day(s, start_day, end_day)
        span = end_day - s0 + 1
        expected = s.annual_volume * scale * span / 365.25 / (1 - sum(OUT_OF_SCOPE_RATES.values()))
        n = int(np.floor(expected)) + int(rng.random() < expected - np.floor(expected))
        u = rng.random(n)
        days = np.sort(s0 + np.floor(span * u ** (1.0 / (1.0 + s.growth))).astype(np.int64))
        ops = operators.per_site[s.site_id]
        starts = np.array([o[1] for o in ops])
        weights = np.array([o[2] for o in ops])
        avail = (starts[None, :] <= days[:, None]) * weights[None, :]
        first = np.argmin(starts)
        avail[avail.sum(axis=1) == 0, first] = 1.0
        c = np.cumsum(avail, axis=1)
        pick = np.minimum((rng.random(n)[:, None] * c[:, -1:] >= c).sum(axis=1), len(ops) - 1)
        op_ids = np.array([o[0] for o in ops], dtype=object)[pick]
        ut = rng.random(n)
        ptype = np.full(n, "poem", dtype=object)
        g, z = OUT_OF_SCOPE_RATES["g_poem"], OUT_OF_SCOPE_RATES["z_poem"]
        ptype[ut < g] = "g_poem"
        ptype[(ut >= g) & (ut < g + z)] = "z_poem"
        ptype[(ut >= g + z) & (ut < g + z + REDO_RATE)] = "redo_poem"
        poem_f = (ptype == "poem") & (days >= day_number(POEM_F_FROM)) & (rng.random(n) < s.poem_f_rate)
        ptype[poem_f] = "poem_f"
        code = site_code(s)
        parts.append(
            pd.DataFrame(
                {
                    "_si": np.full(n, si, dtype=np.int64),
                    "procedure_id": [f"{code}{k + 1:06d}" for k in range(n)],
                    "patient_id": _patient_ids(si, n, si % 3),
                    "operator_id": op_ids,
                    "procedure_date": days,
                    "procedure_type": ptype,
                }
            )
        )
    proc = pd.concat(parts, ignore_index=True)
    n = len(proc)
    rng = np.random.default_rng([seed, 2])
    si = proc["_si"].to_numpy()
    P = {  # site parameters broadcast to procedures
        f: np.array([getattr(s, f) for s in specs])[si] if n else np.array([])
        for f in (
            "chagas_rate",
            "anterior_rate",
            "full_thickness_rate",
            "male_rate",
            "cc_v3_rate",
            "unsubtyped_rate",
            "late_entry_rate",
        )
    }
    site_ids = np.array([s.site_id for s in specs], dtype=object)
    proc.insert(0, "_site", site_ids[si] if n else np.array([], dtype=object))
    day = proc["procedure_date"].to_numpy()
    ptype = proc["procedure_type"].to_numpy()

    # operator case number across all sites (prior experience + rank)
    prior_map = dict(zip(operators.table["operator_id"], operators.table["prior_cases"], strict=True))
    op = proc["operator_id"].to_numpy()
    op_code = pd.factorize(op)[0] if n else np.array([], np.int64)
    order = np.lexsort((np.arange(n), day, op_code))  # rows are in (site, id) order already
    op_sorted = op_code[order]
    new_group = np.r_[True, op_sorted[1:] != op_sorted[:-1]] if n else np.array([], bool)
    grp_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0)) if n else np.array([], int)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - grp_start + 1
    op_prior = np.array([prior_map[o] for o in pd.unique(op)], dtype=np.int64)
    case_no = rank + (op_prior[op_code] if n else rank)
    learning = case_no <= LEARNING_CASES
    proc["_operator_case_number"] = case_no

    in_scope = np.isin(ptype, ["poem", "poem_f", "redo_poem"])
    year = (day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970) if n else day

    # patients
    age = np.clip(np.round(rng.normal(AGE_MEAN, AGE_SD, n)), AGE_MIN, AGE_MAX).astype(np.int64)
    had_birthday = rng.random(n) < 0.5
    birth_year = year - age - (~had_birthday).astype(np.int64)
    sex = np.where(rng.random(n) < P["male_rate"], "male", "female").astype(object)
    age_fields = np.array([s.age_fields for s in specs], dtype=object)[si] if n else np.array([], object)
    proc["birth_year"] = np.where(age_fields == "age", INT_NA, birth_year)
    proc["age_at_procedure"] = np.where(age_fields == "birth_year", INT_NA, age)
    proc["sex"] = sex
    chagas = (rng.random(n) < P["chagas_rate"]) & in_scope
    dx = _choice(rng, DIAGNOSIS_MIX, n)
    dx[chagas] = np.where(rng.random(chagas.sum()) < 0.5, "achalasia_type_1", "achalasia_type_2")
    unsub = rng.random(n) < P["unsubtyped_rate"]
    dx[unsub & in_scope] = "achalasia_unsubtyped"
    dx[~in_scope] = "other"
    proc["diagnosis"] = dx
    ccv = np.where(rng.random(n) < P["cc_v3_rate"], "v3", "v4").astype(object)
    ccv[dx == "achalasia_unsubtyped"] = np.where(
        rng.random((dx == "achalasia_unsubtyped").sum()) < 0.6, "conventional", "none"
    )
    ccv[~in_scope] = None
    proc["cc_version"] = ccv
    um = rng.random(n)
    morph = np.full(n, "straight", dtype=object)
    morph[um < SIGMOID_RATE + ADVANCED_SIGMOID_RATE] = "sigmoid"
    morph[um < ADVANCED_SIGMOID_RATE] = "advanced_sigmoid"
    morph[um > 1 - MORPHOLOGY_UNKNOWN_RATE] = "unknown"
    morph[~in_scope] = None
    sigmoid = np.isin(morph, ["sigmoid", "advanced_sigmoid"])
    proc["esophageal_morphology"] = morph
    proc["_sigmoid"] = sigmoid
    hh = _choice(rng, {"none": 0.85, "small_lt2cm": 0.10, "ge2cm": 0.03, "unknown": 0.02}, n)
    hh[~in_scope] = None
    proc["hiatal_hernia"] = hh
    proc["chagas"] = np.where(in_scope, chagas.astype(np.int8), -1).astype(np.int8)
    pd_count = np.where(rng.random(n) < PRIOR_PD_RATE, rng.integers(1, 4, n), 0)
    botox = np.where(rng.random(n) < PRIOR_BOTOX_RATE, rng.integers(1, 3, n), 0)
    redo = ptype == "redo_poem"
    heller = (rng.random(n) < PRIOR_HELLER_RATE) | (redo & (rng.random(n) < 0.1))
    proc["prior_pneumatic_dilation"] = np.where(in_scope, pd_count, INT_NA)
    proc["prior_botulinum"] = np.where(in_scope, botox, INT_NA)
    proc["prior_heller"] = np.where(in_scope, heller, -1).astype(np.int8)
    proc["prior_poem"] = np.where(in_scope, redo, -1).astype(np.int8)

    # baseline Eckardt and physiology
    btot = np.clip(np.round(rng.normal(BASELINE_ECKARDT_MEAN, BASELINE_ECKARDT_SD, n)), 4, 12).astype(
        np.int64
    )
    bitems = _items_from_totals(rng, btot, (3.0, 2.0, 1.2, 1.5))
    has_baseline = in_scope & (rng.random(n) < 0.95)
    proc["baseline_eckardt_date"] = np.where(has_baseline, day - rng.integers(0, 120, n), INT_NA)
    for k, item in enumerate(("dysphagia", "regurgitation", "chest_pain", "weight_loss")):
        proc[f"baseline_eckardt_{item}"] = np.where(has_baseline, bitems[:, k], INT_NA)
    proc["_baseline_eckardt_total"] = np.where(has_baseline, btot, INT_NA)
    has_hrm = in_scope & (rng.random(n) < 0.8) & (proc["cc_version"].to_numpy() != "none")
    proc["baseline_irp_mmhg"] = np.where(has_hrm, np.round(np.clip(rng.normal(30, 10, n), 12, 80), 1), np.nan)
    proc["baseline_les_pressure_mmhg"] = np.where(
        has_hrm & (rng.random(n) < 0.8), np.round(np.clip(rng.normal(42, 12, n), 15, 120), 1), np.nan
    )
    has_tbe = in_scope & (rng.random(n) < 0.6)
    proc["baseline_tbe_5min_cm"] = np.where(has_tbe, np.round(np.clip(rng.normal(9, 4, n), 0, 30), 1), np.nan)

    # technique
    approach = np.where(rng.random(n) < P["anterior_rate"], "anterior", "posterior").astype(object)
    approach[rng.random(n) < 0.01] = "other"
    approach[~in_scope] = None
    proc["approach"] = approach
    depth = np.where(rng.random(n) < P["full_thickness_rate"], "full_thickness", "circular_selective").astype(
        object
    )
    depth[~in_scope] = None
    proc["myotomy_depth"] = depth
    spastic = np.isin(dx, ["achalasia_type_3", "distal_esophageal_spasm", "hypercontractile_esophagus"])
    eso = np.where(spastic, rng.normal(14, 3, n), rng.normal(9, 2.5, n))
    eso = np.where(~spastic & (rng.random(n) < 0.10), rng.normal(3, 0.5, n), eso)
    eso = np.round(np.clip(eso, 2, 25), 1)
    gas = np.round(np.clip(rng.normal(2.7, 0.6, n), 1, 6), 1)
    tunnel = np.round(np.clip(eso + gas + np.abs(rng.normal(2, 0.7, n)), 3, 33), 1)

    # technical success, learning curve
    p_tech = np.where(learning | chagas, TECH_SUCCESS_LEARNING, TECH_SUCCESS_EXPERIENCED)
    tech = rng.random(n) < p_tech
    tech[~in_scope] = rng.random((~in_scope).sum()) < 0.98
    reason = _choice(rng, {"fibrosis": 0.5, "ae": 0.1, "anatomy": 0.2, "equipment": 0.08, "other": 0.12}, n)
    reason[tech] = None
    length_given = in_scope & tech
    proc["tunnel_length_cm"] = np.where(length_given, tunnel, np.nan)
    proc["myotomy_esophageal_length_cm"] = np.where(length_given, eso, np.nan)
    proc["myotomy_gastric_length_cm"] = np.where(length_given, gas, np.nan)
    mult = 1 + LEARNING_EXTRA * np.exp(-(case_no - 1) / LEARNING_LAMBDA)
    mult *= np.where(chagas, 1.15, 1.0) * np.where(spastic, 1.1, 1.0) * np.where(ptype == "poem_f", 1.25, 1.0)
    mult *= np.where(sigmoid, 1.1, 1.0)
    base = np.where(in_scope, MINUTES_MEDIAN, 60.0)
    minutes = np.clip(np.round(base * mult * np.exp(rng.normal(0, MINUTES_SIGMA, n))), 20, 480).astype(
        np.int64
    )
    proc["procedure_minutes"] = minutes
    proc["_learning"] = learning

    p_muc = np.where(
        case_no <= 10, MUCOSOTOMY_FIRST10, np.where(learning, MUCOSOTOMY_11_20, MUCOSOTOMY_EXPERIENCED)
    )
    muc = rng.random(n) < p_muc
    capno = rng.random(n) < CAPNOPERITONEUM_RATE
    needle = capno & (rng.random(n) < NEEDLE_GIVEN_CAPNO)
    capnothorax = rng.random(n) < CAPNOTHORAX_RATE
    sce = rng.random(n) < SC_EMPHYSEMA_RATE
    proc["fundoplication"] = np.where(in_scope, ptype == "poem_f", -1).astype(np.int8)
    proc["mucosotomy_intraop"] = muc.astype(np.int8)
    proc["capnoperitoneum"] = capno.astype(np.int8)
    proc["needle_decompression"] = needle.astype(np.int8)
    proc["capnothorax"] = capnothorax.astype(np.int8)
    proc["subcutaneous_emphysema"] = sce.astype(np.int8)
    los_p = np.array([s.planned_los for s in specs])[si] if n else np.zeros((0, 4))
    planned = (rng.random(n)[:, None] >= np.cumsum(los_p, axis=1)).sum(axis=1).clip(0, 3).astype(np.int64)
    proc["planned_los_nights"] = planned

    # ---------------- adverse events (§10.3) -------------------------------------------
    p_ae = AE_BASE_RATE * np.where(learning, AE_LEARNING_OR, 1.0) * np.where(sigmoid, AE_SIGMOID_OR, 1.0)
    has_ae = in_scope & (rng.random(n) < p_ae)
    proc["_ae_probability"] = np.where(in_scope, p_ae, 0.0)
    ae_proc = np.nonzero(has_ae)[0]
    grade1 = 1 + rng.choice(4, size=len(ae_proc), p=np.array(AE_SEVERITY_MIX) / sum(AE_SEVERITY_MIX))
    second = rng.random(len(ae_proc)) < AE_SECOND_EVENT_RATE
    ev_proc = np.r_[ae_proc, ae_proc[second]]
    ev_grade = np.r_[grade1, np.ones(second.sum(), dtype=np.int64)]
    ev_order = np.r_[np.zeros(len(ae_proc), np.int64), np.ones(second.sum(), np.int64)]
    ae = _adverse_event_facts(rng, ev_grade)
    ae["_proc_row"] = ev_proc
    ae["_grade"] = ev_grade
    ae["_order"] = ev_order
    # abort because of an AE -> technical failure with reason "ae"
    aborted_rows = ev_proc[ae["procedure_aborted"] == 1]
    tech[aborted_rows] = False
    reason[aborted_rows] = "ae"
    proc["technical_success"] = tech.astype(np.int8)
    proc["aborted_reason"] = reason
    # onset, discharge
    onset_off = ae.pop("_onset_offset")
    ev_day = day[ev_proc] + onset_off
    ae["onset_date"] = ev_day
    prolong = np.where(onset_off <= planned[ev_proc], ae["unplanned_nights"], 0)
    extra = np.zeros(n, dtype=np.int64)
    np.add.at(extra, ev_proc, prolong)
    proc["discharge_date"] = np.where(in_scope | (rng.random(n) < 0.5), day + planned + extra, INT_NA)
    death_day = np.full(n, INT_NA, dtype=np.int64)
    fatal = ae["death"] == 1
    death_day[ev_proc[fatal]] = ev_day[fatal] + ae["icu_nights"][fatal]
    proc["_death_date"] = death_day
    # site grade: agrees ~90% of the time, otherwise an adjacent grade
    reported = ev_grade.copy()
    dis = rng.random(len(ev_grade)) >= SEVERITY_REPORTED_AGREEMENT
    shift = np.where(rng.random(len(ev_grade)) < 0.5, -1, 1)
    reported[dis] = np.clip(reported[dis] + shift[dis], 1, 4)
    reported[dis & (reported == ev_grade)] = np.where(ev_grade[dis & (reported == ev_grade)] == 1, 2, 3)
    ae["severity_reported"] = np.array(GRADES, dtype=object)[reported]
    ae_df = pd.DataFrame(ae)
    # incidents sent as AE rows by sites that do so
    inc_site = np.array([s.incident_rows for s in specs])[si] if n else np.array([], bool)
    inc_rows = []
    for flag, code in ((needle, "capnoperitoneum"), (muc, "mucosotomy_intraop")):
        rows = np.nonzero(inc_site & flag & in_scope)[0]
        if len(rows):
            d = {c: np.zeros(len(rows), np.int8) for c in _AE_BOOLS}
            d.update(
                ae_type=np.full(len(rows), code, dtype=object),
                unplanned_nights=np.zeros(len(rows), np.int64),
                icu_nights=np.zeros(len(rows), np.int64),
                severity_reported=np.full(len(rows), "incident", dtype=object),
                onset_date=day[rows],
                _proc_row=rows,
                _grade=np.zeros(len(rows), np.int64),
                _order=np.full(len(rows), 2 if code == "capnoperitoneum" else 3, np.int64),
            )
            inc_rows.append(pd.DataFrame(d))
    ae_df = pd.concat([ae_df, *inc_rows], ignore_index=True)

    # ---------------- clinical failure (§10.4) ------------------------------------------
    extra_primary = np.zeros(n)
    for code, val in EXTRA_PRIMARY_FAILURE.items():
        extra_primary[dx == code] += val
    extra_primary += np.where(redo, REDO_EXTRA_PRIMARY, 0) + np.where(chagas, CHAGAS_EXTRA_PRIMARY, 0)
    primary = in_scope & ((rng.random(n) < PRIMARY_FAILURE_BASE + extra_primary) | ~tech)
    u2 = rng.random(n)
    cdf = (
        LATE_FAILURE_CDF[None, :]
        * np.where(dx == "achalasia_type_1", TYPE1_LATE_FAILURE_FACTOR, 1.0)[:, None]
    )
    late_fail = in_scope & ~primary & (u2 < cdf[:, -1])
    t_late = np.full(n, INT_NA, dtype=np.int64)
    factor = np.where(dx == "achalasia_type_1", TYPE1_LATE_FAILURE_FACTOR, 1.0)
    t_late[late_fail] = np.interp(
        u2[late_fail] / factor[late_fail], LATE_FAILURE_CDF, LATE_FAILURE_KNOTS
    ).astype(np.int64)
    t_primary = np.where(~tech, rng.integers(3, 45, n), rng.integers(30, 150, n))
    fail_day = np.where(primary, t_primary, np.where(late_fail, t_late, INT_NA))
    proc["_primary_failure"] = primary
    proc["_failure_day"] = fail_day  # days after the procedure when failure became apparent

    # ---------------- follow-ups (§10.4, §10.5) ------------------------------------------
    fu = _followups(rng, proc, specs, in_scope, primary, fail_day, death_day, end_day)
    # ---------------- re-interventions ----------------------------------------------------
    ri = _reinterventions(rng, proc, in_scope, fail_day, death_day, end_day, ae_df)
    # ---------------- withdrawals --------------------------------------------------------
    wd = _withdrawals(rng, proc, specs, end_day)

    # finish AE frame: ids, procedure ids, drop events after the end
    ae_df = ae_df[ae_df["onset_date"] <= end_day]
    ae_df = ae_df.iloc[np.lexsort((ae_df["_order"].to_numpy(), ae_df["_proc_row"].to_numpy()))].reset_index(
        drop=True
    )
    ae_df["procedure_id"] = proc["procedure_id"].to_numpy()[ae_df["_proc_row"].to_numpy()]
    ae_df["_site"] = proc["_site"].to_numpy()[ae_df["_proc_row"].to_numpy()]
    ae_df["_si"] = si[ae_df["_proc_row"].to_numpy()]
    codes = np.array([site_code(sp) for sp in specs], dtype=object)
    ae_df["event_id"] = _ids_per_site(ae_df, "AE", codes)
    ri["event_id"] = _ids_per_site(ri, "RI", codes)
    fu["assessment_id"] = _ids_per_site(fu, "FU", codes)
    return ClinicalData(
        procedures=proc,
        followups=fu,
        adverse_events=ae_df,
        reinterventions=ri,
        withdrawals=wd,
        operators=operators.table,
        start_day=start_day,
        end_day=end_day,
    )


def site_code(spec: SiteSpec) -> str:
    """Id prefix of a site: two letters for the demo sites, S007... for generic ones (unique)."""
    if spec.site_id.startswith("site_"):
        return "S" + spec.site_id.split("_", 1)[1]
    return spec.site_id[:2].upper()


def _ids_per_site(df: pd.DataFrame, prefix: str, codes: np.ndarray) -> np.ndarray:
    """Sequential ids per site in the frame's (site-grouped) row order: ``RIAE0000001``."""
    site = df["_si"].to_numpy(dtype=np.int64)
    if len(site) == 0:
        return np.array([], dtype=object)
    new = np.r_[True, site[1:] != site[:-1]]
    start = np.maximum.accumulate(np.where(new, np.arange(len(site)), 0))
    num = np.arange(len(site)) - start + 1
    head = np.char.add(codes[site].astype(str), prefix)
    return np.char.add(head, np.char.zfill(num.astype(str), 7)).astype(object)


_AE_BOOLS = (
    "transfusion",
    "repeat_endoscopy",
    "interventional_radiology",
    "surgery",
    "permanent_disability",
    "death",
    "procedure_aborted",
    "unplanned_airway_support",
    "post_procedure_consultation",
)


def _adverse_event_facts(rng: np.random.Generator, grade: np.ndarray) -> dict:
    """Facts of each AE such that the ASGE derivation (clinical-spec §2.1) gives ``grade``."""
    m = len(grade)
    f = {c: np.zeros(m, np.int8) for c in _AE_BOOLS}
    nights = np.zeros(m, np.int64)
    icu = np.zeros(m, np.int64)
    ae_type = np.full(m, "other", dtype=object)
    onset = np.where(rng.random(m) < 0.6, rng.integers(0, 3, m), rng.integers(3, 15, m))
    onset = np.where(rng.random(m) < 0.05, rng.integers(15, 31, m), onset)
    pattern = rng.random(m)
    r = rng.random(m)

    def pick(mask, mix):
        k = int(mask.sum())
        if k:
            ae_type[mask] = _choice(rng, mix, k)

    g1, g2, g3, g4 = (grade == 1), (grade == 2), (grade == 3), (grade == 4)
    # mild
    a = g1 & (pattern < 0.60)
    nights[a] = rng.integers(1, 4, m)[a]
    pick(
        a,
        {
            "pain_requiring_admission": 4,
            "pneumonia_aspiration": 1.5,
            "cardiopulmonary": 1.5,
            "capnothorax": 1,
            "subcutaneous_emphysema": 1,
            "other": 1,
        },
    )
    b = g1 & (pattern >= 0.60) & (pattern < 0.97)
    f["post_procedure_consultation"][b] = 1
    pick(b, {"pain_requiring_admission": 3, "pneumonia_aspiration": 2, "bleeding_delayed": 1, "other": 3})
    c = g1 & (pattern >= 0.97)
    f["procedure_aborted"][c] = 1
    onset[c] = 0
    pick(c, {"bleeding_intraop": 1, "cardiopulmonary": 1})
    # moderate
    a = g2 & (pattern < 0.30)
    nights[a] = rng.integers(4, 11, m)[a]
    pick(
        a,
        {
            "leak_mucosal": 1,
            "pneumonia_aspiration": 2,
            "pain_requiring_admission": 1,
            "pleural_effusion_hemothorax": 1,
        },
    )
    b = g2 & (pattern >= 0.30) & (pattern < 0.55)
    f["repeat_endoscopy"][b] = 1
    nights[b] = rng.integers(0, 4, m)[b]
    pick(b, {"bleeding_delayed": 2, "leak_mucosal": 1})
    c = g2 & (pattern >= 0.55) & (pattern < 0.65)
    f["transfusion"][c] = 1
    f["repeat_endoscopy"][c] = (r[c] < 0.5).astype(np.int8)
    nights[c] = rng.integers(1, 4, m)[c]
    ae_type[c] = "bleeding_delayed"
    d = g2 & (pattern >= 0.65) & (pattern < 0.85)
    f["interventional_radiology"][d] = 1
    nights[d] = rng.integers(1, 7, m)[d]
    pick(d, {"capnothorax": 2, "pleural_effusion_hemothorax": 1})
    e = g2 & (pattern >= 0.85) & (pattern < 0.95)
    icu[e] = 1
    nights[e] = rng.integers(1, 5, m)[e]
    ae_type[e] = "cardiopulmonary"
    e2 = g2 & (pattern >= 0.95)
    f["unplanned_airway_support"][e2] = 1
    onset[e2] = 0
    ae_type[e2] = "cardiopulmonary"
    # severe
    a = g3 & (pattern < 0.40)
    f["surgery"][a] = 1
    nights[a] = rng.integers(5, 21, m)[a]
    pick(a, {"perforation_delayed": 2, "leak_mucosal": 1, "pleural_effusion_hemothorax": 1})
    b = g3 & (pattern >= 0.40) & (pattern < 0.75)
    nights[b] = rng.integers(11, 31, m)[b]
    f["interventional_radiology"][b] = (r[b] < 0.6).astype(np.int8)
    pick(b, {"empyema_mediastinitis": 2, "leak_mucosal": 1})
    c = g3 & (pattern >= 0.75) & (pattern < 0.95)
    icu[c] = rng.integers(2, 7, m)[c]
    nights[c] = rng.integers(4, 16, m)[c]
    pick(c, {"cardiopulmonary": 1, "pneumonia_aspiration": 1})
    d = g3 & (pattern >= 0.95)
    f["permanent_disability"][d] = 1
    nights[d] = rng.integers(2, 9, m)[d]
    pick(d, {"cardiopulmonary": 1, "other": 1})
    # fatal
    f["death"][g4] = 1
    icu[g4] = rng.integers(1, 11, m)[g4]
    nights[g4] = rng.integers(2, 21, m)[g4]
    pick(g4, {"empyema_mediastinitis": 2, "perforation_delayed": 1, "cardiopulmonary": 1, "death": 1})
    out = {"ae_type": ae_type, "unplanned_nights": nights, "icu_nights": icu}
    out.update(f)
    out["_onset_offset"] = onset.astype(np.int64)
    return out


def _followups(rng, proc, specs, in_scope, primary, fail_day, death_day, end_day) -> pd.DataFrame:
    n = len(proc)
    k = len(WINDOWS)
    day = proc["procedure_date"].to_numpy()
    rows = np.repeat(np.arange(n), k)
    w = np.tile(np.arange(k), n)
    nominal = np.array(NOMINAL_DAYS)[w]
    lo = np.array([b[0] for b in WINDOW_BOUNDS])[w]
    hi = np.array([b[1] for b in WINDOW_BOUNDS])[w]
    off = np.clip(np.round(nominal + rng.normal(0, 1, len(w)) * np.array(JITTER_SD)[w]), lo, hi).astype(
        np.int64
    )
    adate = day[rows] + off
    fd = fail_day[rows]
    failed = primary[rows] | ((fd != INT_NA) & (off >= fd))
    p = np.array(COMPLETENESS)[w]
    p = np.where(failed, np.minimum(0.99, p * FAILURE_RETURN_FACTOR), p)
    dd = death_day[rows]
    keep = in_scope[rows] & (rng.random(len(w)) < p) & (adate <= end_day) & ((dd == INT_NA) | (adate < dd))
    rows, w, off, adate, failed = rows[keep], w[keep], off[keep], adate[keep], failed[keep]
    m = len(rows)
    tot = np.where(
        failed,
        4 + rng.choice(len(FAILURE_ECKARDT_P), size=m, p=FAILURE_ECKARDT_P),
        rng.choice(len(SUCCESS_ECKARDT_P), size=m, p=SUCCESS_ECKARDT_P),
    ).astype(np.int64)
    items = _items_from_totals(rng, tot, (3.0, 2.0, 1.2, 1.0))
    si = proc["_site"].to_numpy()[rows]
    spec_by_id = {s.site_id: s for s in specs}
    ph_rate = np.array([spec_by_id[s].ph_rate for s in si]) if m else np.zeros(0)
    egd_rate = np.array([spec_by_id[s].egd_rate for s in si]) if m else np.zeros(0)
    early = w <= 1
    fu = {
        "_site": si,
        "procedure_id": proc["procedure_id"].to_numpy()[rows],
        "assessment_date": adate,
        "_window": np.array(WINDOWS, dtype=object)[w],
        "_days_after": off,
        "_failed": failed,
        "mode": _choice(rng, MODE_MIX, m),
    }
    for j, item in enumerate(("dysphagia", "regurgitation", "chest_pain", "weight_loss")):
        fu[f"eckardt_{item}"] = items[:, j]
    fu["eckardt_total"] = tot
    fu["ppi_use"] = np.where(rng.random(m) < 0.85, (rng.random(m) < PPI_RATE).astype(np.int8), -1).astype(
        np.int8
    )
    gerdq = np.where(rng.random(m) < GERDQ_SYMPTOMATIC_RATE, rng.integers(8, 15, m), rng.integers(0, 8, m))
    fu["gerdq_score"] = np.where(rng.random(m) < 0.7, gerdq, INT_NA)
    egd = np.where(early, rng.random(m) < egd_rate, rng.random(m) < 0.1)
    esoph = rng.random(m) < ESOPHAGITIS_RATE
    la = np.where(esoph, _choice(rng, LA_MIX, m), "none").astype(object)
    la[~egd] = None
    fu["la_grade"] = la
    ph = early & (rng.random(m) < ph_rate)
    aet = np.round(np.clip(np.exp(rng.normal(np.log(5.2), 1.0, m)), 0, 60), 1)
    fu["aet_percent"] = np.where(ph, aet, np.nan)
    fu["ph_on_ppi"] = np.where(ph, (rng.random(m) < 0.15).astype(np.int8), -1).astype(np.int8)
    man = (w == 0) & (rng.random(m) < 0.4)
    fu["irp_mmhg"] = np.where(man, np.round(np.clip(rng.normal(10, 4, m) + 8 * failed, 0, 60), 1), np.nan)
    fu["les_pressure_mmhg"] = np.where(
        man, np.round(np.clip(rng.normal(14, 5, m) + 8 * failed, 0, 80), 1), np.nan
    )
    tbe = early & (rng.random(m) < 0.5)
    fu["tbe_5min_cm"] = np.where(
        tbe, np.round(np.clip(rng.normal(1.5, 1.5, m) + 5 * failed, 0, 30), 1), np.nan
    )
    fu["_proc_row"] = rows
    fu["_si"] = proc["_si"].to_numpy()[rows]
    df = pd.DataFrame(fu)
    return df.iloc[np.lexsort((adate, rows))].reset_index(drop=True)


def _reinterventions(rng, proc, in_scope, fail_day, death_day, end_day, ae_df) -> pd.DataFrame:
    n = len(proc)
    day = proc["procedure_date"].to_numpy()
    tech = proc["technical_success"].to_numpy() == 1
    primary = proc["_primary_failure"].to_numpy()
    failed = in_scope & (fail_day != INT_NA)
    u = rng.random(n)
    p_within = np.where(~tech, 0.8, REINTERVENTION_WITHIN_6M)
    soon = failed & (u < p_within)
    later = failed & ~soon & (u < p_within + REINTERVENTION_6_24M)
    delay = np.where(soon, rng.integers(14, 181, n), rng.integers(181, 721, n))
    rdate = day + np.where(failed, fail_day, 0) + delay
    rtype = _choice(rng, REINTERVENTION_TYPES, n)
    rtype[~tech & (rtype == "redo_poem")] = "heller_myotomy"
    ind = np.where(primary, "persistent_symptoms", "recurrence").astype(object)
    sel = (soon | later) & (rdate <= end_day) & ((death_day == INT_NA) | (rdate < death_day))
    parts = [
        pd.DataFrame(
            {
                "_proc_row": np.nonzero(sel)[0],
                "reintervention_date": rdate[sel],
                "reintervention_type": rtype[sel],
                "indication": ind[sel],
            }
        )
    ]
    # GERD treatment (not a clinical failure)
    gerd = in_scope & ~failed & (rng.random(n) < GERD_REINTERVENTION_RATE)
    gdate = day + rng.integers(365, 1100, n)
    gsel = gerd & (gdate <= end_day) & (death_day == INT_NA)
    parts.append(
        pd.DataFrame(
            {
                "_proc_row": np.nonzero(gsel)[0],
                "reintervention_date": gdate[gsel],
                "reintervention_type": np.full(gsel.sum(), "other", dtype=object),
                "indication": np.full(gsel.sum(), "gerd", dtype=object),
            }
        )
    )
    # treatment of an AE (stent for a leak/perforation treated endoscopically)
    leak = ae_df["ae_type"].isin(["leak_mucosal", "perforation_delayed"]).to_numpy() & (
        ae_df["repeat_endoscopy"].to_numpy() == 1
    )
    lrows = ae_df["_proc_row"].to_numpy()[leak]
    ldate = np.maximum(ae_df["onset_date"].to_numpy()[leak] + 1, day[lrows] + 1)
    take = (rng.random(len(lrows)) < 0.4) & (ldate <= end_day)
    parts.append(
        pd.DataFrame(
            {
                "_proc_row": lrows[take],
                "reintervention_date": ldate[take],
                "reintervention_type": np.full(take.sum(), "stent", dtype=object),
                "indication": np.full(take.sum(), "adverse_event", dtype=object),
            }
        )
    )
    ri = pd.concat(parts, ignore_index=True)
    r = ri["_proc_row"].to_numpy()
    ri["procedure_id"] = proc["procedure_id"].to_numpy()[r]
    ri["_site"] = proc["_site"].to_numpy()[r]
    ri["_si"] = proc["_si"].to_numpy()[r]
    ri = ri.iloc[np.lexsort((ri["reintervention_date"].to_numpy(), r))].reset_index(drop=True)
    return ri


def _withdrawals(rng, proc, specs, end_day) -> pd.DataFrame:
    out = []
    for k, s in enumerate(specs):
        if not s.withdrawals:
            continue
        sub = proc[(proc["_site"] == s.site_id) & (proc["procedure_date"] < end_day - 400)]
        if sub.empty:
            continue
        take = np.sort(rng.choice(len(sub), size=min(s.withdrawals, len(sub)), replace=False))
        pday = sub["procedure_date"].to_numpy()[take]
        wdate = pday + 200 + (rng.random(len(take)) * (end_day - 60 - pday - 200)).astype(np.int64)
        out.append(
            pd.DataFrame(
                {
                    "_site": s.site_id,
                    "_si": k,
                    "patient_id": sub["patient_id"].to_numpy()[take],
                    "withdrawn_at": wdate,
                }
            )
        )
    if not out:
        return pd.DataFrame(
            {
                "_site": pd.Series(dtype=object),
                "_si": pd.Series(dtype=np.int64),
                "patient_id": pd.Series(dtype=object),
                "withdrawn_at": pd.Series(dtype=np.int64),
            }
        )
    return pd.concat(out, ignore_index=True)
