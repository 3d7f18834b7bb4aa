"""Task data for training: the dataset folder format, the domain pack as data, balancing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlu.domain import load_domain
from training.task_examples import (
    DataError,
    TurnExample,
    balanced,
    catalogue_only,
    description_examples,
    spoken_variants,
    turn_examples,
)


def dataset(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_dataset_turns_are_read_with_slots_and_reply(tmp_path: Path) -> None:
    folder = dataset(tmp_path / "d", [
        {"id": "1", "call_id": "c", "source": "call", "text": "my account is 40019012",
         "intent": "check_balance", "slots": {"account_number": "40019012"}, "reply": None}])
    [turn] = turn_examples(folder, "train")
    assert (turn.text, turn.intent, turn.slots, turn.reply) == (
        "my account is 40019012", "check_balance", {"account_number": "40019012"}, None)


def test_a_turn_without_an_intent_is_an_error_naming_the_line(tmp_path: Path) -> None:
    folder = dataset(tmp_path / "d", [{"text": "hello", "intent": "goodbye"},
                                      {"text": "what", "intent": ""}])
    with pytest.raises(DataError, match=r"train\.jsonl:2: every turn needs"):
        turn_examples(folder, "train")


def test_a_folder_without_a_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no manifest.json"):
        turn_examples(tmp_path, "train")


def test_other_label_spaces_are_left_out_and_oos_is_out_of_scope() -> None:
    domain = load_domain("telecom")
    said: list[str] = []
    kept = catalogue_only([TurnExample("book a flight", "oos"),
                           TurnExample("card not arrived", "card_arrival"),
                           TurnExample("my internet is down", "report_outage")], domain,
                          said.append)
    assert [(e.text, e.intent) for e in kept] == [("book a flight", "out_of_scope"),
                                                  ("my internet is down", "report_outage")]
    assert "left out 1 of 3 turns" in said[0]


def test_descriptions_become_caller_sentences() -> None:
    by_intent = {e.intent: e.text for e in description_examples(load_domain("telecom"))}
    assert by_intent["cancel_service"] == "I want to cancel my contract, service or account"
    assert "out_of_scope" not in by_intent  # not said by a caller


def test_balancing_repeats_rarer_intents_up_to_the_commonest() -> None:
    examples = [TurnExample(f"a{i}", "a") for i in range(3)] + [TurnExample("b", "b")]
    counts: dict[str, int] = {}
    for e in balanced(examples):
        counts[e.intent] = counts.get(e.intent, 0) + 1
    assert counts == {"a": 3, "b": 3}


def test_spoken_variants_look_like_transcripts() -> None:
    texts = [v.text for v in spoken_variants(TurnExample("What's my balance?", "check_balance"))]
    assert texts[0] == "What's my balance?" and texts[1] == "what's my balance"
    assert texts[2].endswith("what's my balance") and len(texts) == 3
