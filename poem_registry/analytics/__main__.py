"""``python -m poem_registry.analytics [--full-refresh] [--as-of YYYY-MM-DD]``: compute the statistics.

Incremental by default (see :mod:`poem_registry.analytics.incremental`); ``--full-refresh``
recomputes every unit. Settings as everywhere (``POEM_*`` environment, settings file).
"""

from __future__ import annotations

import argparse
from datetime import date

from poem_registry.settings import load_settings

from . import compute_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poem_registry.analytics", description=__doc__)
    parser.add_argument("--full-refresh", action="store_true", help="ignore stored fingerprints")
    parser.add_argument(
        "--as-of", type=date.fromisoformat, default=None, help="as-of date (default: the marts')"
    )
    args = parser.parse_args(argv)
    summary = compute_all(load_settings(), as_of=args.as_of, progress=print, full=args.full_refresh)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
