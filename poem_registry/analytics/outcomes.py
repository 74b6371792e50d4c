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
    comp = bool_series(w["success_composite"], missing=None).tolist()
    eck = bool_series(w["success_eckardt"], missing=None).tolist()
    closed = bool_series(w["window_closed"], missing=True).tolist()
    assessed = [
        a if a is not None else e is not None
        for a, e in zip(bool_series(w["assessed"], missing=None).tolist(), eck, strict=True)
    ]
    eligible = [
        e if e is not None else a
        for e, a in zip(bool_series(w["eligible"], missing=None).tolist(), assessed, strict=True)
    ]
    known = [
        k if k is not None else (cl and c is not None)
        for k, cl, c in zip(
            bool_series(w["composite_pp_denominator"], missing=None).tolist(), closed, comp, strict=True
        )
    ]
    out = pd.DataFrame(
        {
            "procedure_sk": w["procedure_sk"].to_numpy(),
            "assessed": pd.Series(
                [a and cl for a, cl in zip(assessed, closed, strict=True)], dtype=bool
            ).to_numpy(),
            "eligible": pd.Series(eligible, dtype=bool).to_numpy(),
            "composite_known": pd.Series(known, dtype=bool).to_numpy(),
            "success_composite": pd.Series(
                [c if k else None for c, k in zip(comp, known, strict=True)], dtype=object
            ).to_numpy(),
            "success_eckardt": pd.Series(
                [c if a else None for c, a in zip(eck, assessed, strict=True)], dtype=object
            ).to_numpy(),
        }
    )
    return out.set_index("procedure_sk")


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
        wo = window_outcomes(windows, code)
        sk = p["procedure_sk"]
        p[f"assessed_{code}"] = is_true(sk.map(wo["assessed"])).to_numpy()
        p[f"eligible_{code}"] = is_true(sk.map(wo["eligible"])).to_numpy()
        p[f"composite_known_{code}"] = is_true(sk.map(wo["composite_known"])).to_numpy()
        p[f"success_composite_{code}"] = bool_series(sk.map(wo["success_composite"]), missing=None).to_numpy()
        p[f"success_eckardt_{code}"] = bool_series(sk.map(wo["success_eckardt"]), missing=None).to_numpy()
        p[f"clinical_failure_{code}"] = negate(bool_series(p[f"success_composite_{code}"], missing=None))

    cf = p[f"clinical_failure_{cfg.composite_clinical_window}"]
    p["composite_failure"] = is_true(p["technical_failure"]) | p["ae_composite_30d"] | is_true(cf)
    return p.sort_values("procedure_sk", kind="mergesort").reset_index(drop=True)


def _pooling_windows() -> tuple[str, ...]:
    from .pooling import STRATUM_MEASURES

    return tuple(sorted({d.window for d in STRATUM_MEASURES.values() if d.window}))
