"""Validating many sites' files in one stacked GX pass gives each file exactly its own pass's results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from poem_registry.quality.bench import BENCH_TODAY as TODAY
from poem_registry.quality.bench import clean_followups, clean_procedures, parent_dates_of
from poem_registry.quality.delivery import prepare_delivery, validate_deliveries


def _two_parts(frame: pd.DataFrame) -> pd.DataFrame:
    """Two deliveries of one site stacked as ingest stacks them (partition column ``_part``)."""
    half = len(frame) // 2
    return frame.assign(_part=np.where(np.arange(len(frame)) < half, "0", "1"))


def _site_frames() -> dict[str, dict[str, pd.DataFrame]]:
    """Three sites with different defects; site_b reuses site_a's procedure ids (ids are per site)."""
    sites = {}
    for n, site in enumerate(("site_a", "site_b", "site_c")):
        procedures = clean_procedures(60 + 20 * n, seed=10 + n)
        followups = clean_followups(procedures, seed=20 + n)
        sites[site] = {"procedures": procedures, "followups": followups, "parents": procedures.copy()}
    a, b, c = (sites[s]["procedures"] for s in ("site_a", "site_b", "site_c"))
    a.loc[3, "sex"] = "unknown-code"
    a.loc[5, "procedure_date"] = "2031-02-30"
    b.loc[:, "procedure_id"] = a["procedure_id"].iloc[: len(b)].tolist() + [
        f"B{i}" for i in range(len(b) - min(len(a), len(b)))
    ]
    a.loc[7, "procedure_id"] = a.loc[8, "procedure_id"]  # duplicate key within one delivery
    b.loc[2, "age_at_procedure"] = "250"
    b.loc[4, "diagnosis"] = None
    c.loc[:, "sex"] = "nonsense"  # a whole site's column wrong: its own batch error, no one else's
    fu = sites["site_a"]["followups"]
    fu.loc[1, "procedure_id"] = "NO-SUCH-PROCEDURE"
    return sites


def _prepare(site: str, entity: str, frame: pd.DataFrame, parents: pd.DataFrame):
    return prepare_delivery(
        entity, _two_parts(frame), site_id=site, extract_id="x1",
        known_parent_ids=set(parents["procedure_id"]), parent_dates=parent_dates_of(parents),
        today=TODAY, partition_column="_part",
    )  # fmt: skip


def _comparable(validation):
    checks = [dataclasses.asdict(c) for c in validation.checks]
    return checks, validation.row_failures.reset_index(drop=True), validation.rejected_mask.to_numpy()


@pytest.mark.parametrize("entity", ["procedures", "followups"])
@pytest.mark.parametrize("max_rows", [10_000, 150])
def test_stacked_pass_equals_one_pass_per_site(entity, max_rows):
    sites = _site_frames()
    prepared = [_prepare(s, entity, f[entity], f["parents"]) for s, f in sites.items()]
    stacked = validate_deliveries(prepared, max_rows_per_pass=max_rows)
    alone = [validate_deliveries([p])[0] for p in prepared]
    for together, own in zip(stacked, alone, strict=True):
        checks_t, failures_t, rejected_t = _comparable(together)
        checks_o, failures_o, rejected_o = _comparable(own)
        assert checks_t == checks_o
        pd.testing.assert_frame_equal(failures_t, failures_o)
        assert (rejected_t == rejected_o).all()
        assert together.batch_errors == own.batch_errors


def test_stacked_pass_keeps_defects_with_their_site():
    sites = _site_frames()
    prepared = [_prepare(s, "procedures", f["procedures"], f["parents"]) for s, f in sites.items()]
    a, b, c = validate_deliveries(prepared)
    failed = {v.site_id: {cid for cid in (x.check_id for x in v.checks if x.status == "fail")} for v in (a, b, c)}
    assert any("unique" in cid for cid in failed["site_a"])  # the duplicate inside site_a's delivery
    assert not any("unique" in cid for cid in failed["site_b"])  # the same ids at another site are fine
    assert set(a.row_failures["source_row"]) >= {4, 6, 8, 9}
    assert b.rejected_mask.sum() >= 2 and a.rejected_mask.sum() >= 3
    assert c.batch_errors and not a.batch_errors and not b.batch_errors
    assert set(c.batch_errors) == {"0", "1"}  # both of site_c's deliveries, each named by its own partition
