"""Small helpers shared by the statistics submodules (not part of the public API)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats


def to_plain(value: Any) -> Any:
    """Convert numpy containers/scalars (recursively) into plain Python objects."""
    if isinstance(value, np.ndarray):
        return [to_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


class AsDictMixin:
    """Adds ``as_dict()`` returning JSON-friendly plain Python values."""

    def as_dict(self) -> dict[str, Any]:
        return to_plain(self)


def check_confidence(confidence: float) -> float:
    """Validate a two-sided confidence level in (0, 1) and return it as float."""
    conf = float(confidence)
    if not (0.0 < conf < 1.0) or math.isnan(conf):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return conf


def z_for(confidence: float) -> float:
    """Two-sided standard-normal quantile z_{1-alpha/2} for a confidence level."""
    conf = check_confidence(confidence)
    return float(stats.norm.ppf(0.5 + conf / 2.0))
