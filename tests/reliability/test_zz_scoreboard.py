"""docs/scoreboard.md must say what this run of the suite measured (run last; see conftest)."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import SCOREBOARD_MD, full_run
from tests.reliability.scoreboard import render

pytestmark = pytest.mark.xdist_group("reliability")


def test_docs_scoreboard_is_current(scoreboard):
    if not full_run():
        pytest.skip("only part of tests/reliability was selected; the scoreboard needs the whole suite")
    expected = render(scoreboard.as_dict())
    actual = SCOREBOARD_MD.read_text(encoding="utf-8") if SCOREBOARD_MD.exists() else ""
    assert actual == expected, (
        "docs/scoreboard.md is stale: run `uv run --frozen pytest tests/reliability` then "
        "`uv run --frozen python -m tests.reliability.scoreboard` and commit the result"
    )
    # the README shows the same short table
    table = "\n".join(line for line in expected.split("\n## ")[0].splitlines() if line.startswith("|"))
    readme = (SCOREBOARD_MD.parents[1] / "README.md").read_text(encoding="utf-8")
    assert table in readme, f"README.md must show the scoreboard table from docs/scoreboard.md:\n{table}"
