"""Great Expectations plumbing: one ephemeral context per process, suites built from the catalog.

GX is imported lazily (it takes ~10 s) and only here. GX has no DuckDB dialect,
so every table is validated as a pandas DataFrame through GX's pandas
datasource. The frames handed to GX use numpy dtypes (float64, datetime64[ns],
object), because GX's pandas ``between`` check is vectorised only for those
(on nullable dtypes it falls back to a per-value Python loop, ~100x slower).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from poem_registry.quality.catalog import ROW_LEVEL_EXPECTATIONS, CheckSpec

_LOCK = threading.RLock()
CHUNK_SIZE = 20
_STATE: dict[str, Any] = {}


@dataclass
class GxOutcome:
    """What GX said about one expectation, reduced to what the results need."""

    success: bool | None
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    missing_count: int | None = None
    unexpected_index_list: list[Any] = field(default_factory=list)
    observed_value: Any = None
    exception: str | None = None


def gx_modules() -> tuple[Any, Any]:
    """``(great_expectations, great_expectations.expectations)``, imported on first use, offline."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def context() -> Any:
    """The process-wide ephemeral GX context (validation only; Data Docs use a file context)."""
    with _LOCK:
        if "context" not in _STATE:
            gx, _ = gx_modules()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            _STATE["context"] = ctx
            _STATE["datasource"] = ctx.data_sources.add_pandas("poem_quality")
            _STATE["batch_definitions"] = {}
        return _STATE["context"]


def _batch_definition(asset_name: str) -> Any:
    context()
    definitions: dict[str, Any] = _STATE["batch_definitions"]
    if asset_name not in definitions:
        asset = _STATE["datasource"].add_dataframe_asset(asset_name)
        definitions[asset_name] = asset.add_batch_definition_whole_dataframe("whole_frame")
    return definitions[asset_name]


def expectation_class_name(expectation_type: str) -> str:
    """``expect_column_values_to_be_between`` -> ``ExpectColumnValuesToBeBetween``."""
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def mostly(spec: CheckSpec) -> float:
    """GX's ``mostly`` of a check: the share of rows that must pass (its tolerated-failure threshold)."""
    if spec.expectation in ROW_LEVEL_EXPECTATIONS and spec.threshold_percent > 0:
        return round(1 - spec.threshold_percent / 100, 6)
    return 1.0


def build_expectation(spec: CheckSpec) -> Any:
    _, gxe = gx_modules()
    from poem_registry.quality.gx_custom import CUSTOM_EXPECTATIONS

    cls = CUSTOM_EXPECTATIONS.get(spec.expectation) or getattr(gxe, expectation_class_name(spec.expectation))
    kwargs = dict(spec.kwargs)
    if mostly(spec) < 1:
        kwargs["mostly"] = mostly(spec)
    meta = {"check_id": spec.check_id, "category": spec.category, "severity": spec.severity,
            "identifier": spec.identifier}  # fmt: skip
    if spec.note:
        meta["notes"] = spec.note
    return cls(**kwargs, meta=meta)


def build_suite(name: str, specs: list[CheckSpec]) -> Any:
    """A GX ExpectationSuite of the given checks (cached per name and check list)."""
    gx, _ = gx_modules()
    key = (name, tuple(s.check_id for s in specs), tuple(repr(s.kwargs) for s in specs))
    with _LOCK:
        cache: dict[Any, Any] = _STATE.setdefault("suites", {})
        if key not in cache:
            cache[key] = gx.ExpectationSuite(name=name, expectations=[build_expectation(s) for s in specs])
        return cache[key]


def _columns_of(spec: CheckSpec) -> list[str]:
    kwargs = spec.kwargs
    named = [
        kwargs.get("column"),
        kwargs.get("column_A"),
        kwargs.get("column_B"),
        *kwargs.get("column_list", []),
    ]
    return [c for c in named if c]


def validate_frame(
    frame: pd.DataFrame, suite_name: str, specs: list[CheckSpec], parameters: dict[str, Any] | None = None
) -> tuple[dict[str, GxOutcome], list[Any]]:
    """Validate ``frame`` (RangeIndex) with the checks; check_id -> outcome, and the GX suite results.

    Checks run in chunks of :data:`CHUNK_SIZE`, grouped by column, each on a frame of
    only the columns it reads: GX's metric-graph resolution grows faster than linearly
    with the expectations of one validation, and GX copies the whole frame for every
    null filter it applies.
    """
    from great_expectations.validator.v1_validator import Validator

    ordered = sorted(specs, key=lambda s: (_columns_of(s) or [""])[0])
    results = []
    with _LOCK:
        for start in range(0, len(ordered), CHUNK_SIZE):
            chunk = ordered[start : start + CHUNK_SIZE]
            columns = list(dict.fromkeys(c for s in chunk for c in _columns_of(s) if c in frame.columns))
            validator = Validator(
                _batch_definition(suite_name),
                result_format={"result_format": "COMPLETE"},
                batch_parameters={"dataframe": frame[columns]},
            )
            suite = build_suite(suite_name, chunk)
            results.append(validator.validate_expectation_suite(suite, parameters or None))
    outcomes: dict[str, GxOutcome] = {}
    for res in (r for suite_result in results for r in suite_result.results):
        check_id = res.expectation_config.meta["check_id"]
        info = res.exception_info or {}
        raised = info.get("raised_exception") if "raised_exception" in info else None
        if raised is None:  # keyed by metric id when a metric failed to resolve
            nested = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
            exception = nested[0].get("exception_message") if nested else None
        else:
            exception = info.get("exception_message") if raised else None
        r = res.result or {}
        outcomes[check_id] = GxOutcome(
            success=res.success,
            element_count=r.get("element_count"),
            unexpected_count=r.get("unexpected_count"),
            unexpected_percent=r.get("unexpected_percent"),
            missing_count=r.get("missing_count"),
            unexpected_index_list=list(r.get("unexpected_index_list") or []),
            observed_value=r.get("observed_value"),
            exception=exception,
        )
    return outcomes, results


#: Row-local expectations: each row passes or fails on its own values, so one GX pass over
#: several files stacked together gives every file exactly the outcome of its own pass.
_ROW_LOCAL_EXPECTATIONS = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_match_regex_by_distinct",
    }
)


def splits_by_rows(spec: CheckSpec, partition_column: str | None) -> bool:
    """Whether a stacked pass can be split back into per-file outcomes for this check.

    True for row-local checks, for ``expect_column_to_exist`` (files stacked together
    have the same columns) and for compound uniqueness that includes the partition
    column (rows of different files never collide).
    """
    if spec.expectation in _ROW_LOCAL_EXPECTATIONS or spec.expectation == "expect_column_to_exist":
        return True
    return (
        spec.expectation == "expect_compound_columns_to_be_unique"
        and partition_column is not None
        and partition_column in spec.kwargs.get("column_list", [])
    )


def outcome_for_rows(spec: CheckSpec, outcome: GxOutcome, rows: pd.DataFrame, start: int) -> GxOutcome:
    """The outcome GX would give for ``rows`` alone (positions ``start``.. of the stacked frame).

    Counts follow GX's own definitions: missing values are excluded from the
    denominator of ``unexpected_percent`` except for not-null checks (where they are
    the unexpected values); compound uniqueness counts a row as missing only when
    every listed column is missing. ``success`` applies the check's ``mostly``.
    """
    if outcome.exception or spec.expectation == "expect_column_to_exist":
        return outcome
    n = len(rows)
    positions = np.asarray(outcome.unexpected_index_list, dtype=np.int64)
    mine = positions[(positions >= start) & (positions < start + n)] - start
    unexpected = len(mine)
    if spec.expectation == "expect_column_values_to_not_be_null":
        missing, evaluated = None, n
    else:
        columns = _columns_of(spec)
        nulls = rows[columns].isna().to_numpy()
        missing = int(nulls.all(axis=1).sum())
        evaluated = n - missing
    percent = 100.0 * unexpected / evaluated if evaluated else None
    success = (unexpected == 0) if not evaluated else (1 - unexpected / evaluated) >= mostly(spec)
    return GxOutcome(
        success=success,
        element_count=n,
        unexpected_count=unexpected,
        unexpected_percent=percent,
        missing_count=missing,
        unexpected_index_list=mine.tolist(),
        observed_value=None,
        exception=None,
    )
