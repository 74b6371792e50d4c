"""Fixtures and hooks of the reliability suite; their code lives in :mod:`tests.reliability.helpers`.

Test modules import helpers from ``tests.reliability.helpers`` (one module instance), never from this
conftest, which pytest loads under its own name: state such as the session secret and the scoreboard
must exist once.
"""

from tests.reliability.helpers import (  # noqa: F401  (fixtures and hooks are found by name)
    e2e,
    pytest_collection_modifyitems,
    pytest_deselected,
    pytest_sessionfinish,
    scoreboard,
)
