"""Typed internal columns -> exchange-format strings (the wire format of exchange-format.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from poem_registry.contract import load_contract
from poem_registry.synth.clinical import INT_NA

_SMALL_INTS = np.array([str(i) for i in range(10000)], dtype=object)
_DIGITS = np.array([str(i) for i in range(10)], dtype=object)


def _int_strings(a: np.ndarray) -> np.ndarray:
    """str() of int64 values, by table lookup for the usual small values."""
    small = (a >= 0) & (a < len(_SMALL_INTS))
    if small.all():
        return _SMALL_INTS[a]
    out = np.empty(len(a), dtype=object)
    out[small] = _SMALL_INTS[a[small]]
    out[~small] = a[~small].astype(str).astype(object)
    return out


_DATE_LO = int(np.datetime64("1990-01-01", "D").astype(np.int64))
_DATE_TABLE = np.datetime_as_string(
    np.arange(_DATE_LO, _DATE_LO + 45000).astype("datetime64[D]"), unit="D"
).astype(object)


def _dates(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    ok = a != INT_NA
    out = np.full(len(a), "", dtype=object)
    pos = a - _DATE_LO
    table = ok & (pos >= 0) & (pos < len(_DATE_TABLE))
    out[table] = _DATE_TABLE[pos[table]]
    other = ok & ~table
    if other.any():
        out[other] = np.datetime_as_string(a[other].astype("datetime64[D]"), unit="D").astype(object)
    return out


def _timestamps(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    s = np.datetime_as_string(a.astype("datetime64[m]"), unit="s")
    return np.where(a == INT_NA, "", s).astype(object)


def _ints(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    ok = a != INT_NA
    out = np.full(len(a), "", dtype=object)
    out[ok] = _int_strings(a[ok])
    return out


def _decimals(a: np.ndarray) -> np.ndarray:
    """One decimal, without a trailing .0 (20.0 -> 20), as the adapters render numbers."""
    a = np.asarray(a, dtype=float)
    ok = ~np.isnan(a)
    out = np.full(len(a), "", dtype=object)
    q = np.rint(a[ok] * 10).astype(np.int64)
    neg = q < 0
    q = np.abs(q)
    ip, dp = _int_strings(q // 10), _DIGITS[q % 10]
    s = np.where(q % 10 == 0, ip, ip + "." + dp)
    out[ok] = np.where(neg, "-" + s, s)
    return out


def _bools(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int8)
    return np.where(a < 0, "", np.where(a == 1, "true", "false")).astype(object)


def _text(a) -> np.ndarray:
    out = np.asarray(a, dtype=object).copy()
    out[pd.isna(out)] = ""
    return out


FORMATTERS = {
    "date": _dates,
    "timestamp": _timestamps,
    "int": _ints,
    "decimal": _decimals,
    "bool": _bools,
    "text": _text,
    "code": _text,
}


def to_exchange_strings(df: pd.DataFrame, entity: str, *, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Exchange columns of ``entity`` as strings ("" = missing), in contract order, plus ``keep``."""
    ent = load_contract().entities[entity]
    out = {}
    for col in ent.columns:
        if col.name in df.columns:
            out[col.name] = FORMATTERS[col.type](df[col.name].to_numpy())
        else:
            out[col.name] = np.full(len(df), "", dtype=object)
    for k in keep:
        out[k] = df[k].to_numpy()
    return pd.DataFrame(out, index=df.index, dtype=object)
