"""What every adapter returns, whatever the site delivers.

An adapter only changes *layout*: file kinds, column names, code spellings, date
formats, units, booleans. It returns exchange-format column names with values as
exchange-format strings (ISO dates, ``true``/``false``, codes) so that one shared
validator (``poem_registry.ingest``) applies every rule once, for all sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Every adapter frame carries these two columns so problems are reported by file and row.
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"  # 1-based data row in the delivered file (header is row 0)


class DeliveryError(Exception):
    """A delivery that cannot be read at all (broken file, missing required file, bad manifest).

    The whole batch is quarantined with this message, so it must say which file,
    what is wrong and what the site should change.
    """

    def __init__(self, message: str, *, file_name: str | None = None, rule: str = "delivery_readable"):
        super().__init__(message)
        self.file_name = file_name
        self.rule = rule


@dataclass
class Finding:
    """Something about the delivery worth reporting that does not stop the load."""

    rule: str  # e.g. unknown_column, direct_identifier_column, unmapped_code
    category: str  # conformance | completeness | plausibility | privacy
    severity: str  # critical | warning | info
    message: str
    file_name: str | None = None
    column_name: str | None = None
    source_row: int | None = None
    value: str | None = None


@dataclass
class Delivery:
    """One extract from one site: a folder, a zip, a workbook or a pull from a database."""

    site_id: str
    extract_id: str
    path: Path  # folder, zip file or (sql) the site's database URL setting name
    extracted_at: str | None = None  # ISO timestamp when known (manifest, folder name or source)


@dataclass
class AdapterOutput:
    """Exchange-format frames for one delivery, plus findings and the files it read."""

    frames: dict[str, pd.DataFrame]  # entity name -> frame (exchange columns as str + _source_file/_source_row)
    findings: list[Finding] = field(default_factory=list)
    files: dict[str, bytes | None] = field(default_factory=dict)  # file name -> raw bytes (for the ledger hash)
    extracted_at: str | None = None
    #: Columns present in a frame that are not in the exchange format (kept out of the load, reported).
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
