"""Shared fixtures: the labelled corpora (when present) and one triage engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_or_skip(*parts: str) -> Path:
    """A path under ../shared; skip (visibly) when the corpora are absent.
    In CI (CI=true) the corpora are always there, so absence is a failure."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing in CI")
        pytest.skip(f"corpus not present: {path} (clone next to ../shared to run this test)")
    return path


@pytest.fixture(scope="session")
def engine():
    from mailbot.rulefiles import load_rulebook
    from mailbot.triage import Engine

    return Engine(load_rulebook())


@pytest.fixture(scope="session")
def triage_file(engine):
    from mailbot.parsing import parse_message

    def run(path: Path):
        return engine.triage(parse_message(Path(path).read_bytes()))

    return run
