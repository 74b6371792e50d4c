"""Named fault-injection points for the reliability tests.

Setting ``POEM_FAULT=<point>`` makes the process raise (or, with
``POEM_FAULT_MODE=kill``, exit hard without cleanup) when it reaches that point,
so tests can prove that a crash there loses nothing and leaves no partial state.
Unset in normal operation, where this is a dictionary lookup.
"""

from __future__ import annotations

import os


class InjectedFault(RuntimeError):
    pass


def fault_point(name: str) -> None:
    if os.environ.get("POEM_FAULT") != name:
        return
    if os.environ.get("POEM_FAULT_MODE") == "kill":
        os._exit(137)
    raise InjectedFault(f"fault injected at {name}")
