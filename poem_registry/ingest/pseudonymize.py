"""Keyed pseudonyms for patient and operator identifiers (HMAC-SHA256).

The secret never lives in the repository. It comes from ``POEM_PSEUDONYM_KEY``
or from the secret file (``POEM_SECRET_FILE``, default ``$POEM_HOME/secrets/``).
Only demo mode creates a secret on first use; otherwise a missing secret is an
error, because pseudonyms made with a throw-away key could never be linked to
later deliveries.

Patient keys are scoped to the site (the same MRN at two hospitals is two
people); operator keys are registry-wide so one operator's learning curve can
span hospitals (clinical-spec §11.6).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

SECRET_ENV = "POEM_PSEUDONYM_KEY"
MIN_SECRET_BYTES = 32
KEY_HEX_CHARS = 32  # 128 bits of the HMAC: collision-free at registry scale, short in reports


class MissingSecretError(RuntimeError):
    pass


def load_secret(secret_file: Path, *, demo: bool) -> bytes:
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        secret = from_env.encode()
    elif Path(secret_file).exists():
        secret = Path(secret_file).read_bytes().strip()
    elif demo:
        secret_file = Path(secret_file)
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(32).encode()
        secret_file.write_bytes(secret + b"\n")
        secret_file.chmod(0o600)
    else:
        raise MissingSecretError(
            f"No pseudonymization secret: set {SECRET_ENV} or create the file {secret_file} "
            f"(at least {MIN_SECRET_BYTES} random bytes, e.g. `python -c \"import secrets; "
            f"print(secrets.token_hex(32))\" > {secret_file}`), kept outside the repository and "
            f"backed up: losing it breaks linkage with every earlier delivery. "
            f"For a local demo, run with --demo (or POEM_DEMO=1)."
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise MissingSecretError(f"The pseudonymization secret is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


class Pseudonymizer:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _digest(self, message: str) -> str:
        return hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).hexdigest()[:KEY_HEX_CHARS]

    def patient_key(self, site_id: str, patient_id: str) -> str:
        return "p_" + self._digest(f"patient\x1f{site_id}\x1f{patient_id.strip()}")

    def operator_key(self, operator_id: str) -> str:
        return "o_" + self._digest(f"operator\x1f{operator_id.strip()}")

    def keys_for(self, kind: str, values: pd.Series, site_id: str) -> pd.Series:
        """Vectorised over unique values; missing stays missing."""
        uniques = values.dropna().unique()
        if kind == "patient":
            mapping = {v: self.patient_key(site_id, str(v)) for v in uniques}
        elif kind == "operator":
            mapping = {v: self.operator_key(str(v)) for v in uniques}
        else:
            raise ValueError(f"unknown identifier kind {kind!r}")
        return values.map(mapping).astype("string")
