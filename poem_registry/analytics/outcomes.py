"""One row per procedure with the outcome flags and case-mix features the statistics use.

Built from ``marts.fct_procedure``, ``marts.fct_adverse_event`` and
``marts.mart_outcome_windows``. Definitions (clinical spec §7.3, §11.5):

* ``technical_failure``: ``not technical_success`` (None when not recorded).
* ``ae_composite_30d``: an AE with ASGE rank >= ``composite_ae_min_severity_rank``
  (moderate+) with onset within 30 days; ``ae_oe_30d`` the same with
  ``oe_ae_min_severity_rank`` (mild+).
* ``clinical_failure_<window>``: the composite clinical outcome in the window is known
  (assessed, or re-intervened before the window) and is not a success; None when unknown.
* ``composite_failure`` (learning curves): technical failure OR ``ae_composite_30d``
  OR clinical failure in ``composite_clinical_window``. A missing piece (no technical
  outcome recorded, no assessment in the window) counts as *not* a failure.
"""

from __future__ import annotations

import pandas as pd

from .config import StatisticsConfig
from .marts import ASGE_RANK, bool_series, is_true, negate, severity_rank


def window_outcomes(windows: pd.DataFrame, window_code: str) -> pd.DataFrame:
    """Per procedure for one window (``marts.mart_outcome_windows``).

    ``assessed`` (closed window with a usable Eckardt), ``eligible`` (ITT),
    ``composite_known`` (= ``composite_pp_denominator``: assessed or re-intervened before
    the window), ``success_composite`` (None unless known) and ``success_eckardt`` (None
    unless assessed). Absent mart columns are derived from the others.
    """
    w = windows[windows["window_code"] == window_code].drop_duplicates("procedure_sk", keep="first")
    comp = bool_series(w["success_composite"], missing=None)
    eck = bool_series(w["success_eckardt"], missing=None)
    closed = bool_series(w["window_closed"], missing=True)
    assessed = _fill(bool_series(w["assessed"], missing=None), eck.notna())
    eligible = _fill(bool_series(w["eligible"], missing=None), assessed)
    known = _fill(bool_series(w["composite_pp_denominator"], missing=None), closed & comp.notna())
    out = pd.DataFrame(
        {
            "procedure_sk": w["procedure_sk"].to_numpy(),
            "assessed": (assessed & closed).to_numpy(),
            "eligible": eligible.to_numpy(),
            "composite_known": known.to_numpy(),
            "success_composite": comp.where(known, None).to_numpy(dtype=object),
            "success_eckardt": eck.where(assessed, None).to_numpy(dtype=object),
        }
    )
    return out.set_index("procedure_sk")


def _fill(values: pd.Series, fallback: pd.Series) -> pd.Series:
    """``bool`` series: ``values`` (True/False/None objects) with None replaced by ``fallback``."""
    return values.where(values.notna(), fallback).astype(bool)


def build_procedure_frame(
    procedures: pd.DataFrame, adverse_events: pd.DataFrame, windows: pd.DataFrame, cfg: StatisticsConfig
) -> pd.DataFrame:
    """Procedure-level frame (in-scope procedures only), sorted by ``procedure_sk``."""
    p = procedures.copy()
    in_scope = bool_series(p["procedure_type_in_scope"], missing=True)
    p = p[in_scope].copy()
    p["is_index_poem"] = bool_series(p["is_index_poem"], missing=False)
    tech = bool_series(p["technical_success"], missing=None)
    p["technical_success_flag"] = tech.astype(object)
    p["technical_failure"] = negate(tech)
    p["procedure_minutes"] = pd.to_numeric(p["procedure_minutes"], errors="coerce")
    p["procedure_date"] = pd.to_datetime(p["procedure_date"]).dt.date

    ae = adverse_events.copy()
    ae["rank"] = severity_rank(ae)
    ae["within_30_days"] = bool_series(ae["within_30_days"], missing=False)
    ae = ae[ae["within_30_days"]]
    worst = ae.groupby("procedure_sk")["rank"].max()
    rank = p["procedure_sk"].map(worst).fillna(0)
    p["ae_composite_30d"] = (rank >= cfg.composite_ae_min_severity_rank).to_numpy()
    p["ae_oe_30d"] = (rank >= cfg.oe_ae_min_severity_rank).to_numpy()
    p["ae_mild_plus_30d"] = (rank >= ASGE_RANK["mild"]).to_numpy()  # measure P5 definition
    p["ae_moderate_plus_30d"] = (rank >= ASGE_RANK["moderate"]).to_numpy()  # measure P6M definition

    for code in sorted({cfg.composite_clinical_window, cfg.oe_clinical_window, *_pooling_windows()}):
        wo = window_outcomes(windows, code).reindex(p["procedure_sk"])  # one lookup per window
        p[f"assessed_{code}"] = is_true(wo["assessed"]).to_numpy()
        p[f"eligible_{code}"] = is_true(wo["eligible"]).to_numpy()
        p[f"composite_known_{code}"] = is_true(wo["composite_known"]).to_numpy()
        p[f"success_composite_{code}"] = bool_series(wo["success_composite"], missing=None).to_numpy()
        p[f"success_eckardt_{code}"] = bool_series(wo["success_eckardt"], missing=None).to_numpy()
        p[f"clinical_failure_{code}"] = negate(bool_series(p[f"success_composite_{code}"], missing=None))

    cf = p[f"clinical_failure_{cfg.composite_clinical_window}"]
    p["composite_failure"] = is_true(p["technical_failure"]) | p["ae_composite_30d"] | is_true(cf)
    return p.sort_values("procedure_sk", kind="mergesort").reset_index(drop=True)


def _pooling_windows() -> tuple[str, ...]:
    from .pooling import STRATUM_MEASURES

    return tuple(sorted({d.window for d in STRATUM_MEASURES.values() if d.window}))
