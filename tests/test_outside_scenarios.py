"""Scripted calls written apart from the project's own suite, as an outside QA team would:
fresh customers, other wording, corrections, interruptions and tricks. Every call that
once failed here was a product defect; they run as regressions."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.scenarios import report, run_scenarios

FOLDER = Path(__file__).parent / "scenarios"


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_outside_call_passes_in_text_mode(assistant, path: Path) -> None:
    result = report(run_scenarios(path, assistant.dialogue))
    failed = {c["name"]: c["failures"] + [f for t in c["turns"] for f in t["failures"]]
              for c in result["calls"] if not c["passed"]}
    assert result["passed"] > 0 and not failed, failed
