from __future__ import annotations

from pathlib import Path

import pytest

from poem_registry.synth import generate


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Path, object]:
    """The default demo (6 sites, 4 years, seed 42) written once for the session."""
    root = tmp_path_factory.mktemp("demo")
    summary = generate(root / "landing", seed=42, sites_dir=root / "sites")
    return root, summary
