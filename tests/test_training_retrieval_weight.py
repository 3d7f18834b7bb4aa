"""The retrieval weight of a fine-tuned model: chosen on validation turns, carried in its marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu import turn_format
from nlu.understanding import Evidence, combine
from tests.conftest import run_cli
from training.retrieval_weight import best_weight, write_weight
from training.task_examples import TurnExample, validation_split


def test_the_vote_outweighs_the_llm_only_as_far_as_its_weight() -> None:
    # The LLM is sure of out of scope; the nearest examples vote for a lost phone.
    evidence = Evidence({"out_of_scope": 0.9, "lost_or_stolen_device": 0.1},
                        {"out_of_scope": 0.001, "lost_or_stolen_device": 0.999})
    assert combine(evidence, 1.0).intent == "lost_or_stolen_device"
    assert combine(evidence, 0.25).intent == "out_of_scope"
    assert combine(evidence, 0.0).confidence == pytest.approx(0.9)


def test_the_most_accurate_weight_wins_and_ties_go_to_the_larger() -> None:
    assert best_weight({0.0: 0.8, 0.25: 0.9, 0.5: 0.85, 1.0: 0.7}) == 0.25
    assert best_weight({0.0: 0.9, 0.25: 0.9, 0.5: 0.9, 1.0: 0.7}) == 0.5


def test_validation_turns_are_a_fifth_of_each_intent_never_a_rare_one() -> None:
    turns = ([TurnExample(f"a{i}", "a") for i in range(10)]
             + [TurnExample(f"b{i}", "b") for i in range(2)])
    fit, validation = validation_split(turns)
    assert sorted(e.intent for e in validation) == ["a", "a"]
    assert len(fit) == 10 and not {e.text for e in fit} & {e.text for e in validation}
    assert validation_split(turns) == (fit, validation)  # stable


def test_the_weight_is_written_into_every_served_form(tmp_path: Path) -> None:
    for folder in ("hf", "ct2-int8"):
        (tmp_path / folder).mkdir()
        turn_format.write_marker(tmp_path / folder, trained_by="run-1")
    write_weight(tmp_path, 0.25, {0.25: 0.9, 1.0: 0.8}, 40)
    for folder in ("hf", "ct2-int8"):
        marker = turn_format.read_marker(tmp_path / folder)
        assert marker is not None
        assert marker["retrieval_weight"] == 0.25 and marker["trained_by"] == "run-1"
        assert marker["retrieval_weight_turns"] == 40


def test_an_untuned_model_takes_no_weight(tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    with pytest.raises(ValueError, match="no voicedesk_task.json"):
        write_weight(tmp_path, 0.5, {}, 0)


def test_train_finetune_chooses_the_weight_on_held_out_turns(home: Path) -> None:
    result = run_cli(["train", "finetune", "--domain", "--calibrate-retrieval", "--max-steps",
                      "1", "--batch-size", "2", "--no-variants", "--threads", "2"], home)
    assert result.returncode == 0, result.stderr
    assert "task turns to choose the retrieval weight on (not trained on)" in result.stderr
    assert "retrieval weight " in result.stdout
    [marker] = list((home / "runs").rglob("ct2-int8/voicedesk_task.json"))
    info = turn_format.read_marker(marker.parent)
    assert info is not None and info["retrieval_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert info["retrieval_weight_turns"] > 20
