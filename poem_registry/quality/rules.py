"""Cross-field row rules of the exchange format, each implemented once.

The rule names are the ones listed under ``row_rules`` in
``poem_registry/contract/exchange_v1.yml``; the delivery suites assert them with
Great Expectations (the rule's column must hold only ``True``), the quarantine
report quotes them, and the warehouse uses the same names for its exclusions.

A rule is a vectorised function of the *typed* frame (exchange columns cast to
pandas nullable dtypes) and a :class:`RuleContext`. It returns a nullable boolean
Series aligned to the frame: ``True`` = the row passes, ``False`` = it breaks the
rule, ``NA`` = the rule does not apply to the row (for example a follow-up
whose procedure date is unknown). Each rule also explains a failing row in
words, so the quarantine message says what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from poem_registry.contract import load_contract

#: Days a baseline Eckardt score may precede the procedure (clinical-spec §1.4 rule 2;
#: the same value as ``baseline_eckardt_max_days_before`` in dbt's cfg_thresholds seed).
BASELINE_ECKARDT_MAX_DAYS_BEFORE = 180

ECKARDT_ITEMS = ("dysphagia", "regurgitation", "chest_pain", "weight_loss")


@dataclass(frozen=True)
class RuleContext:
    """What a rule may need beyond the row itself."""

    today: date
    #: procedure_id -> procedure date of the parent procedure (this delivery or earlier ones).
    parent_dates: Mapping[str, object] | None = None

    def parent_date_of(self, procedure_id: pd.Series) -> pd.Series:
        """The parent procedure's date for each row (NaT when unknown)."""
        if not self.parent_dates:
            return pd.Series(pd.NaT, index=procedure_id.index, dtype="datetime64[ns]")
        lookup = pd.Series(self.parent_dates, dtype=object)
        lookup = pd.to_datetime(lookup, errors="coerce").astype("datetime64[ns]")
        return procedure_id.map(lookup).astype("datetime64[ns]")


RuleFunction = Callable[[pd.DataFrame, RuleContext], pd.Series]
ExplainFunction = Callable[[pd.DataFrame, RuleContext], list[str]]


@dataclass(frozen=True)
class RowRule:
    """One cross-field rule: its check, its explanation and the fix to suggest."""

    name: str
    entity: str
    #: Columns the rule reads; the first is the one a failure is reported on.
    columns: tuple[str, ...]
    check: RuleFunction
    explain: ExplainFunction
    fix: str
    needs_parent_dates: bool = False
    description: str = ""


@dataclass(frozen=True)
class DerivedColumn:
    """A per-row boolean used by a hand-written check of a suite (for example completeness of a score)."""

    name: str
    entity: str
    compute: RuleFunction
    description: str = ""
    columns: tuple[str, ...] = field(default_factory=tuple)


def fmt(value: object) -> str:
    """A value as it should read in a message (dates as YYYY-MM-DD, whole floats without .0)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "(empty)"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp):
        if pd.isna(value):
            return "(empty)"
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rule_result(passes: pd.Series, applicable: pd.Series) -> pd.Series:
    """Combine "passes" and "applies" into a nullable boolean (NA where the rule does not apply)."""
    out = passes.astype("boolean").copy()
    out[~applicable.fillna(False).astype(bool)] = pd.NA
    return out


def _as_bool(series: pd.Series) -> pd.Series:
    return series.astype("boolean")


# -- procedures -----------------------------------------------------------------


def _age_group_columns() -> list[str]:
    return load_contract().entities["procedures"].required_groups["age"]


def age_or_birth_year_present(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    """At least one column of the contract's ``age`` group (birth_year, age_at_procedure) is given."""
    present = df[_age_group_columns()].notna().any(axis=1)
    return present.astype("boolean")


def _explain_age(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    cols = " and ".join(_age_group_columns())
    return [f"{cols} are both empty"] * len(df)


def birth_year_not_after_procedure_year(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    year = df["procedure_date"].dt.year.astype("Int64")
    return _rule_result(df["birth_year"] <= year, df["birth_year"].notna() & year.notna())


def _explain_birth_year(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    return [
        f"birth_year {fmt(b)} is after the year of procedure_date {fmt(d)}"
        for b, d in zip(df["birth_year"], df["procedure_date"], strict=True)
    ]


def prior_poem_implies_redo(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    prior = _as_bool(df["prior_poem"]).fillna(False).astype(bool)
    return _rule_result(df["procedure_type"] == "redo_poem", prior)


def _explain_prior_poem(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    return [f"prior_poem is true but procedure_type is {fmt(t)}, not redo_poem" for t in df["procedure_type"]]


def baseline_eckardt_within_180_days_before(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    gap_days = (df["procedure_date"] - df["baseline_eckardt_date"]).dt.days
    ok = (gap_days >= 0) & (gap_days <= BASELINE_ECKARDT_MAX_DAYS_BEFORE)
    return _rule_result(ok, gap_days.notna())


def _explain_baseline(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    out = []
    for b, d in zip(df["baseline_eckardt_date"], df["procedure_date"], strict=True):
        where = "after" if b > d else f"more than {BASELINE_ECKARDT_MAX_DAYS_BEFORE} days before"
        out.append(f"baseline_eckardt_date {fmt(b)} is {where} the procedure_date {fmt(d)}")
    return out


def technical_failure_has_reason(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    failed = _as_bool(df["technical_success"]).eq(False).fillna(False).astype(bool)
    return _rule_result(df["aborted_reason"].notna(), failed)


def _explain_technical_failure(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    return ["technical_success is false but aborted_reason is empty"] * len(df)


def needle_decompression_implies_capnoperitoneum(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    needle = _as_bool(df["needle_decompression"]).eq(True).fillna(False).astype(bool)
    return _rule_result(_as_bool(df["capnoperitoneum"]).eq(True).fillna(False), needle)


def _explain_needle(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    return [
        f"needle_decompression is true but capnoperitoneum is {fmt(c)}, not true"
        for c in df["capnoperitoneum"]
    ]


def discharge_not_before_procedure(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return _rule_result(
        df["discharge_date"] >= df["procedure_date"],
        df["discharge_date"].notna() & df["procedure_date"].notna(),
    )


def _explain_discharge(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    return [
        f"discharge_date {fmt(a)} is before the procedure_date {fmt(b)}"
        for a, b in zip(df["discharge_date"], df["procedure_date"], strict=True)
    ]


# -- follow-ups -------------------------------------------------------------------


def eckardt_total_equals_items(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    items = df[[f"eckardt_{i}" for i in ECKARDT_ITEMS]]
    applicable = items.notna().all(axis=1) & df["eckardt_total"].notna()
    return _rule_result(df["eckardt_total"] == items.sum(axis=1, min_count=4), applicable)


def _explain_eckardt(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    sums = df[[f"eckardt_{i}" for i in ECKARDT_ITEMS]].sum(axis=1)
    return [
        f"eckardt_total {fmt(t)} differs from the sum of its four items ({fmt(s)})"
        for t, s in zip(df["eckardt_total"], sums, strict=True)
    ]


def _after_parent(date_column: str, *, strict: bool) -> RuleFunction:
    def check(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        parent = ctx.parent_date_of(df["procedure_id"])
        child = df[date_column]
        ok = child > parent if strict else child >= parent
        return _rule_result(ok, child.notna() & parent.notna())

    return check


def _explain_after_parent(date_column: str, *, strict: bool) -> ExplainFunction:
    relation = "on or before" if strict else "before"

    def explain(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
        parent = ctx.parent_date_of(df["procedure_id"])
        return [
            f"{date_column} {fmt(c)} is {relation} the procedure date {fmt(p)}"
            for c, p in zip(df[date_column], parent, strict=True)
        ]

    return explain


def ph_on_ppi_given_with_aet(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return _rule_result(df["ph_on_ppi"].notna(), df["aet_percent"].notna())


def _explain_ph_on_ppi(df: pd.DataFrame, ctx: RuleContext) -> list[str]:
    return [f"aet_percent {fmt(a)} is given but ph_on_ppi is empty" for a in df["aet_percent"]]


_FIX_PARENT_DATE = "correct the date or the procedure_id"

ROW_RULES: dict[str, RowRule] = {
    r.name: r
    for r in (
        RowRule(
            "age_or_birth_year_present",
            "procedures",
            ("age_at_procedure", "birth_year"),
            age_or_birth_year_present,
            _explain_age,
            "give the age at the procedure or the birth year",
        ),
        RowRule(
            "birth_year_not_after_procedure_year",
            "procedures",
            ("birth_year", "procedure_date"),
            birth_year_not_after_procedure_year,
            _explain_birth_year,
            "correct the birth year or the procedure date",
        ),
        RowRule(
            "prior_poem_implies_redo",
            "procedures",
            ("procedure_type", "prior_poem"),
            prior_poem_implies_redo,
            _explain_prior_poem,
            "code a POEM after an earlier POEM as redo_poem, or correct prior_poem",
        ),
        RowRule(
            "baseline_eckardt_within_180_days_before",
            "procedures",
            ("baseline_eckardt_date", "procedure_date"),
            baseline_eckardt_within_180_days_before,
            _explain_baseline,
            "correct the date; a baseline score taken after the POEM or long before it is not a baseline",
        ),
        RowRule(
            "technical_failure_has_reason",
            "procedures",
            ("aborted_reason", "technical_success"),
            technical_failure_has_reason,
            _explain_technical_failure,
            "give the aborted_reason (fibrosis, ae, anatomy, equipment, other)",
        ),
        RowRule(
            "needle_decompression_implies_capnoperitoneum",
            "procedures",
            ("capnoperitoneum", "needle_decompression"),
            needle_decompression_implies_capnoperitoneum,
            _explain_needle,
            "set capnoperitoneum to true, or correct needle_decompression",
        ),
        RowRule(
            "discharge_not_before_procedure",
            "procedures",
            ("discharge_date", "procedure_date"),
            discharge_not_before_procedure,
            _explain_discharge,
            "correct the discharge date or the procedure date",
        ),
        RowRule(
            "eckardt_total_equals_items",
            "followups",
            (
                "eckardt_total",
                *(f"eckardt_{i}" for i in ECKARDT_ITEMS),
            ),
            eckardt_total_equals_items,
            _explain_eckardt,
            "correct the total or the items (or leave the total empty and let the registry sum them)",
        ),
        RowRule(
            "assessment_after_procedure",
            "followups",
            ("assessment_date", "procedure_id"),
            _after_parent("assessment_date", strict=True),
            _explain_after_parent("assessment_date", strict=True),
            _FIX_PARENT_DATE,
            needs_parent_dates=True,
        ),
        RowRule(
            "ph_on_ppi_given_with_aet",
            "followups",
            ("ph_on_ppi", "aet_percent"),
            ph_on_ppi_given_with_aet,
            _explain_ph_on_ppi,
            "say whether the pH study was done on PPI (true/false)",
        ),
        RowRule(
            "onset_not_before_procedure",
            "adverse_events",
            ("onset_date", "procedure_id"),
            _after_parent("onset_date", strict=False),
            _explain_after_parent("onset_date", strict=False),
            _FIX_PARENT_DATE,
            needs_parent_dates=True,
        ),
        RowRule(
            "reintervention_after_procedure",
            "reinterventions",
            ("reintervention_date", "procedure_id"),
            _after_parent("reintervention_date", strict=True),
            _explain_after_parent("reintervention_date", strict=True),
            _FIX_PARENT_DATE,
            needs_parent_dates=True,
        ),
    )
}


# -- derived columns for hand-written checks -------------------------------------------


def followup_eckardt_available(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    """An Eckardt score can be computed: the total, or all four items, is given."""
    items = df[[f"eckardt_{i}" for i in ECKARDT_ITEMS]].notna().all(axis=1)
    return (df["eckardt_total"].notna() | items).astype("boolean")


def baseline_eckardt_available(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    """All four baseline Eckardt items are given (the baseline score needs all of them)."""
    return df[[f"baseline_eckardt_{i}" for i in ECKARDT_ITEMS]].notna().all(axis=1).astype("boolean")


DERIVED_COLUMNS: dict[str, DerivedColumn] = {
    d.name: d
    for d in (
        DerivedColumn(
            "followup_eckardt_available",
            "followups",
            followup_eckardt_available,
            followup_eckardt_available.__doc__ or "",
            ("eckardt_total", *(f"eckardt_{i}" for i in ECKARDT_ITEMS)),
        ),
        DerivedColumn(
            "baseline_eckardt_available",
            "procedures",
            baseline_eckardt_available,
            baseline_eckardt_available.__doc__ or "",
            tuple(f"baseline_eckardt_{i}" for i in ECKARDT_ITEMS),
        ),
    )
}


def check_rules_match_contract() -> None:
    """Fail loudly when the contract names a rule that is not implemented here (or the reverse)."""
    contract = load_contract()
    named = {(e.name, r.name) for e in contract.entities.values() for r in e.row_rules}
    implemented = {(r.entity, r.name) for r in ROW_RULES.values()}
    if named != implemented:
        missing = sorted(f"{e}.{n}" for e, n in named - implemented)
        extra = sorted(f"{e}.{n}" for e, n in implemented - named)
        raise ValueError(
            f"row rules in exchange_v1.yml and poem_registry/quality/rules.py differ: "
            f"not implemented {missing}, not in the contract {extra}"
        )
