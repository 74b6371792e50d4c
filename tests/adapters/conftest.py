"""Shared helpers for the site-layout adapter tests (csv_layout, xlsx, sql).

Sites are written as real YAML files and loaded with ``load_site`` so the tests
exercise exactly what an operator writes (including PyYAML reading ``Yes`` as a
boolean). Large and awkward deliveries are generated here rather than
committed, so their encoding and line ends cannot be changed by git.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from poem_registry.adapters.base import AdapterOutput, Finding
from poem_registry.sites import SiteConfig, load_site

DATA_DIR = Path(__file__).with_name("data")
POSTGRES_URL = os.environ.get("POEM_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")

#: The northbay-style mapping used by generated deliveries (same shape as tests/adapters/data/sites/northbay.yml).
LAYOUT_MAPPING: dict = {
    "files": {"procedures": "poem_cases*.csv", "followups": "poem_followup*.csv"},
    "delimiter": ";",
    "encoding": "cp1252",
    "date_format": "%m/%d/%Y",
    "timestamp_format": "%m/%d/%Y %H:%M",
    "decimal": ",",
    "booleans": {"true": ["Y", "Yes", "1"], "false": ["N", "No", "0"]},
    "columns": {
        "procedures": {
            "Case No": "procedure_id",
            "MRN": "patient_id",
            "Endoscopist": "operator_id",
            "Procedure Date": "procedure_date",
            "Procedure": "procedure_type",
            "Sex": "sex",
            "Age": "age_at_procedure",
            "Diagnosis": "diagnosis",
            "Tunnel (mm)": "tunnel_length_cm",
            "IRP": "baseline_irp_mmhg",
            "Completed": "technical_success",
        },
        "followups": {
            "Visit ID": "assessment_id",
            "Case No": "procedure_id",
            "Visit Date": "assessment_date",
        },
    },
    "codes": {
        "diagnosis": {
            "Type I": "achalasia_type_1",
            "Type II": "achalasia_type_2",
            "Type III": "achalasia_type_3",
            "III": "achalasia_type_3",
            "spastic achalasia": "achalasia_type_3",
        },
        "procedure_type": {"POEM": "poem", "POEM+F": "poem_f"},
        "sex": {"F": "female", "M": "male"},
    },
    "units": {"procedures": {"tunnel_length_cm": 0.1}},
}

PROCEDURE_HEADER = [*LAYOUT_MAPPING["columns"]["procedures"], "Comments"]


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., SiteConfig]:
    """Write ``sites/<site_id>.yml`` from keyword settings and load it like the pipeline does."""

    def _make(site_id: str = "northbay", adapter: str = "csv_layout", **settings: object) -> SiteConfig:
        folder = tmp_path / "sites"
        folder.mkdir(exist_ok=True)
        body = {"site_id": site_id, "name": f"{site_id.title()} Hospital", "adapter": adapter, **settings}
        path = folder / f"{site_id}.yml"
        path.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return load_site(path)

    return _make


def procedure_rows(n: int, *, start: int = 1) -> list[list[str]]:
    """``n`` realistic site rows in the LAYOUT_MAPPING layout (cycling through every spelling variant)."""
    diagnoses = ["Type I", "Type II", "Type III", "III", "spastic achalasia", " type ii ", "EGJOO"]
    rows = []
    for i in range(start, start + n):
        month, day = 1 + i % 12, 1 + i % 28
        rows.append(
            [
                f"NB-{i:06d}",
                f"{400000 + i}",
                f"DR-{i % 9:02d}",
                f"{month:02d}/{day:02d}/2024",
                "POEM+F" if i % 10 == 0 else "POEM",
                "F" if i % 2 else "M",
                str(30 + i % 50),
                diagnoses[i % len(diagnoses)],
                str(80 + i % 90),
                f"{10 + i % 30},{i % 10}",
                "Y" if i % 17 else "N",
                "",
            ]
        )
    return rows


def csv_bytes(
    header: list[str],
    rows: list[list[str]],
    *,
    delimiter: str = ";",
    encoding: str = "cp1252",
    eol: str = "\r\n",
) -> bytes:
    """A delimited file as a site's export tool would write it (quoting only where needed)."""

    def cell(v: str) -> str:
        if any(ch in v for ch in (delimiter, '"', "\n", "\r")):
            return '"' + v.replace('"', '""') + '"'
        return v

    lines = [delimiter.join(cell(v) for v in r) for r in [header, *rows]]
    return (eol.join(lines) + eol).encode(encoding)


def findings_of(output: AdapterOutput, rule: str) -> list[Finding]:
    return [f for f in output.findings if f.rule == rule]


def rows_reported_as_empty(output: AdapterOutput) -> int:
    """Number of blank rows the adapter skipped (from the empty_row findings' messages)."""
    total = 0
    for f in findings_of(output, "empty_row"):
        total += int(f.message.split(" has ")[1].split(" empty")[0])
    return total


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[sa.Engine]:
    """The local PostgreSQL server, or a skip that says why."""
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL} ({str(exc.orig).strip()[:120]})")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(postgres_engine: sa.Engine) -> Iterator[str]:
    """A fresh schema per test, dropped afterwards, so tests can run in parallel on one database."""
    schema = f"poem_adapter_{uuid.uuid4().hex[:12]}"
    with postgres_engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    yield schema
    with postgres_engine.begin() as conn:
        conn.execute(sa.schema.DropSchema(schema, cascade=True))
