"""Render ``tests/reliability/scoreboard.json`` (written by the reliability suite) as ``docs/scoreboard.md``.

    uv run --frozen pytest tests/reliability      # measures, writes scoreboard.json
    uv run --frozen python -m tests.reliability.scoreboard   # writes docs/scoreboard.md

``tests/reliability/test_zz_scoreboard.py`` fails when the committed markdown no longer
matches what the suite measured, so the README's scoreboard cannot drift from the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
JSON_PATH = HERE / "scoreboard.json"
MD_PATH = HERE.parents[1] / "docs" / "scoreboard.md"


def render(board: dict) -> str:
    leak = board.get("leak_scan") or {}
    iso = board.get("isolation") or {}
    fuzz = board.get("fuzz_examples") or {}
    hits = leak.get("hits")
    lines = [
        "# Reliability scoreboard",
        "",
        "Produced by the reliability suite (`tests/reliability`, run by `make test`); regenerate with",
        "`uv run --frozen pytest tests/reliability && uv run --frozen python -m tests.reliability.scoreboard`.",
        "A test fails when this page disagrees with what the suite measured.",
        "",
        "| | |",
        "|---|---|",
        f"| Faults injected and survived | **{board.get('faults_survived', 0)}** |",
        f"| Bad inputs tried | **{board.get('bad_inputs_tried', 0)}** "
        f"({board.get('crafted_bad_inputs', 0)} crafted + {sum(fuzz.values())} fuzzed) |",
        f"| Leak scan hits | **{hits if hits is not None else 'not run'}** "
        # file and table counts stay in scoreboard.json: they change whenever a report page or mart is added
        f"({leak.get('identifiers', 0)} identifiers and the secret, over every file and warehouse table "
        f"the run wrote) |",
        f"| Site isolation | {iso.get('sites', 0)} site reports checked, "
        f"{iso.get('violations', 'not run')} violations |",
        "",
        "## Faults survived",
        "",
    ]
    lines += [f"- `{f}`" for f in board.get("faults", [])]
    lines += ["", "## Crafted bad inputs", ""]
    lines += [f"- `{b}`" for b in board.get("bad_inputs", [])]
    lines += ["", "## Property-based fuzzing (hypothesis, examples per adapter)", ""]
    lines += [f"- {a}: {n}" for a, n in fuzz.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    if not JSON_PATH.exists():
        print(
            f"{JSON_PATH} does not exist: run `uv run --frozen pytest tests/reliability` first",
            file=sys.stderr,
        )
        return 1
    MD_PATH.write_text(render(json.loads(JSON_PATH.read_text(encoding="utf-8"))), encoding="utf-8")
    print(f"wrote {MD_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
