"""The privacy guard: columns that look like direct identifiers never get loaded.

HIPAA Limited Data Set identifiers (clinical-spec §11.6) by column name. The
mapped ``patient_id``/``operator_id`` are the only identifiers allowed in, and
they are pseudonymized before load.
"""

from __future__ import annotations

import re

_IDENTIFIER_PATTERNS = {
    "name": r"(^|_)(first|last|given|family|sur|full|patient|middle|maiden)_?name$|^name$|^surname$",
    "address": r"address|street|(^|_)city$|postcode|post_code|zip(_?code)?$",
    "phone": r"phone|mobile|(^|_)tel(ephone)?($|_)|(^|_)fax($|_)|cell_?number",
    "email": r"e_?mail",
    "ssn": r"(^|_)ssn($|_)|social_?security|national_?(id|insurance)|(^|_)nhs_?(number|no)",
    "medical_record_number": r"(^|_)mrn($|_)|medical_?record|record_?number|hospital_?number|chart_?number",
    "date_of_birth": r"(^|_)dob($|_)|date_?of_?birth|birth_?date|birthdate|(^|_)born",
    "insurance_or_account": r"insurance|member_?id|policy_?(no|number)|account_?(no|number)|beneficiary",
    "ip_or_url": r"ip_?address|(^|_)url($|_)",
}
_COMPILED = {kind: re.compile(p) for kind, p in _IDENTIFIER_PATTERNS.items()}


def _normalise(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")


def identifier_kind(column: str) -> str | None:
    """The kind of direct identifier a column name suggests, or None."""
    norm = _normalise(column)
    for kind, pattern in _COMPILED.items():
        if pattern.search(norm):
            return kind
    return None
